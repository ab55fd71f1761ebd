"""The server's listening socket, bound before uvicorn starts its workers.

uvicorn with more than one worker leaves Nagle's algorithm on for the connections it
accepts (Kludex/uvicorn#3149), so on a kept-alive connection every small response after
the first waits for the client's delayed ACK: about 40 ms per tile, page or API answer
(measured: bench/results/fieldwork-district.md). Linux hands a listening socket's
TCP_NODELAY on to the connections it accepts, so binding the socket here with it set
fixes every worker at once.
"""

from __future__ import annotations

import socket


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for ``host``:``port`` with TCP_NODELAY, inheritable by workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock
