"""The listening socket ``registry serve`` binds for uvicorn (api/listening.py).

uvicorn with several workers leaves Nagle's algorithm on for accepted connections, which
costs a kept-alive client ~40 ms per small response (bench/results/fieldwork-*.md). The
fix relies on Linux handing the listener's TCP_NODELAY on to accepted sockets: checked
here on real sockets, and ``registry serve --workers 2`` is run for real on one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.listening import listening_socket

REGISTRY = Path(sys.executable).with_name("registry")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_accepted_connections_inherit_tcp_nodelay():
    with listening_socket("127.0.0.1", 0) as listener:
        listener.listen()
        assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        assert listener.get_inheritable()
        with socket.create_connection(listener.getsockname()) as client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
                client.sendall(b"ping")
                assert accepted.recv(4) == b"ping"


def test_a_port_in_use_is_a_message_not_a_traceback(cli):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("serve", "--port", port)
    assert result.exit_code != 0
    assert f"cannot listen on 127.0.0.1:{port}" in result.output
    assert "Traceback" not in result.output


def test_registry_serve_with_two_workers_answers_on_kept_alive_connections(registry_env):
    if not REGISTRY.exists():
        pytest.skip(f"{REGISTRY} is not installed (pip install -e .)")
    port = free_port()
    server = subprocess.Popen(
        [str(REGISTRY), "serve", "--port", str(port), "--workers", "2"],
        env={**os.environ, **registry_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "registry serve did not start"
            time.sleep(0.2)
        with httpx.Client(base_url=base) as client:  # one kept-alive connection
            answers = [client.get("/healthz") for _ in range(10)]
        assert [a.status_code for a in answers] == [200] * 10
        assert [a.json() for a in answers] == [{"status": "ok"}] * 10
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0]
    assert f"listening on http://127.0.0.1:{port} (2 worker(s))" in output
