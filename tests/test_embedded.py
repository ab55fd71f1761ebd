"""The embedded PostgreSQL + PostGIS cluster: lifecycle, URL, state and root relocation."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from registry import embedded
from registry.embedded import EmbeddedCluster
from registry.settings import RegistryError

FAST = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def new_cluster(home: Path, request: pytest.FixtureRequest) -> EmbeddedCluster:
    """A cluster that is destroyed when the test (or module) finishes."""
    cluster = EmbeddedCluster(home, server_settings=FAST)
    request.addfinalizer(cluster.destroy)
    return cluster


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[EmbeddedCluster]:
    c = new_cluster(tmp_path_factory.mktemp("embedded") / ".registry", request)
    c.up()
    yield c


def test_up_is_idempotent_and_fast_when_running(cluster: EmbeddedCluster) -> None:
    url = cluster.up()
    started = time.perf_counter()
    assert cluster.up() == url
    assert time.perf_counter() - started < 0.5
    assert url.startswith("postgresql+psycopg://registry:")
    assert url.endswith("/registry")


def test_url_connects_and_postgis_answers(cluster: EmbeddedCluster) -> None:
    with psycopg.connect(libpq_url(cluster.up())) as conn:
        row = conn.execute("SELECT PostGIS_Version()").fetchone()
        assert row is not None
        assert row[0].startswith("3.")
        encoding = conn.execute("SHOW server_encoding").fetchone()
        assert encoding == ("UTF8",)


def test_state_file_is_private(cluster: EmbeddedCluster) -> None:
    state_file = cluster.home / "cluster.json"
    assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
    state = json.loads(state_file.read_text())
    assert {"data_dir", "port", "os_user", "database", "role", "password"} <= state.keys()
    assert state["role"] == state["database"] == "registry"


def test_status_fields(cluster: EmbeddedCluster) -> None:
    status = cluster.status()
    assert status.initialised and status.running
    assert status.url == cluster.running_url()
    assert status.port is not None and f":{status.port}/" in status.url
    assert status.data_dir is not None and (status.data_dir / "PG_VERSION").is_file()
    assert status.server_version and status.server_version.startswith("1")
    assert status.postgis_version and status.postgis_version.startswith("3.")


def test_running_url_is_fast(cluster: EmbeddedCluster) -> None:
    started = time.perf_counter()
    for _ in range(10):
        assert cluster.running_url() is not None
    assert (time.perf_counter() - started) / 10 < 0.1


def test_down_then_up_keeps_data(cluster: EmbeddedCluster) -> None:
    with psycopg.connect(libpq_url(cluster.up()), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (id int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    cluster.down()
    assert cluster.running_url() is None
    status = cluster.status()
    assert status.initialised and not status.running and status.server_version is None
    cluster.down()  # stopping a stopped cluster is fine
    with psycopg.connect(libpq_url(cluster.up())) as conn:
        assert conn.execute("SELECT id FROM kept").fetchall() == [(42,)]


def test_taken_port_is_replaced_and_recorded(cluster: EmbeddedCluster) -> None:
    old_port = cluster.status().port
    assert old_port is not None
    cluster.down()
    with socket.socket() as blocker:
        # the stopped server's connections may linger in TIME_WAIT on this port
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", old_port))
        blocker.listen()
        url = cluster.up()
    new_port = cluster.status().port
    assert new_port != old_port and f":{new_port}/" in url
    assert json.loads((cluster.home / "cluster.json").read_text())["port"] == new_port


@pytest.mark.skipif(os.geteuid() != 0, reason="relocation only happens when running as root")
def test_home_under_private_dir_is_relocated_as_root(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    private = tmp_path / "mktemp-like"
    private.mkdir(mode=0o700)
    os.chmod(private, 0o700)
    c = new_cluster(private / "clone" / ".registry", request)
    url = c.up()
    link = c.home / "pg"
    target = link.resolve()
    assert link.is_symlink() and target.is_relative_to(embedded.RELOCATED_ROOT)
    assert stat.S_IMODE(target.stat().st_mode) == 0o700
    assert target.stat().st_uid != 0
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o755
    with psycopg.connect(libpq_url(url)) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    c.destroy()
    assert not target.exists() and not link.exists() and c.running_url() is None


def test_reachable_home_keeps_data_in_place(request: pytest.FixtureRequest) -> None:
    parent = Path(tempfile.mkdtemp(prefix="registry-embedded-test-"))
    request.addfinalizer(lambda: shutil.rmtree(parent, ignore_errors=True))
    os.chmod(parent, 0o755)
    c = new_cluster(parent / ".registry", request)
    c.up()
    data_dir = c.home / "pg"
    assert data_dir.is_dir() and not data_dir.is_symlink()
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert c.status().data_dir == data_dir


def test_down_and_status_without_cluster(tmp_path: Path) -> None:
    c = EmbeddedCluster(tmp_path / "nothing")
    c.down()
    assert c.running_url() is None
    assert c.status() == embedded.ClusterStatus(False, False, None, None, None, None, None)


def test_missing_binaries_points_at_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_PG_BINDIR", str(tmp_path))
    with pytest.raises(RegistryError, match=r"scripts/setup\.sh"):
        EmbeddedCluster(tmp_path / "home").up()


def test_missing_postgis_names_the_package(tmp_path: Path) -> None:
    binaries = embedded._Binaries(tmp_path, tmp_path, "15")
    with pytest.raises(RegistryError, match="postgresql-15-postgis-3"):
        embedded._check_postgis(binaries)
