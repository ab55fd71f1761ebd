"""Test fixtures: a real PostGIS (the embedded cluster, or DATABASE_URL), a migrated
template database, and a fresh database cloned from it for each test that writes."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner, Result

from registry import migrate
from registry.cli import SAMPLE_BUNDLE, app
from registry.db import make_engine
from registry.embedded import EmbeddedCluster
from registry.settings import sqlalchemy_url
from registry.vault import IdentityVault, create_key_file, load_vault

TEMPLATE = "registry_test_template"
API_PASSWORD = "registry-test-api-password"  # the API role's, in the test cluster only
FAST_SERVER = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI=true a skipped test is a failed test: nothing may silently not run."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which counts as a failure: {report.longrepr}"


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An admin URL of a PostGIS server: DATABASE_URL if set, else a private embedded one."""
    external = os.environ.get("DATABASE_URL")
    if external:
        yield sqlalchemy_url(external)
        return
    cluster = EmbeddedCluster(tmp_path_factory.mktemp("pg-home"), server_settings=FAST_SERVER)
    url = cluster.up()
    try:
        yield url
    finally:
        cluster.destroy()


def libpq(url: str, database: str | None = None) -> str:
    parsed = make_url(url)
    if database:
        parsed = parsed.set(database=database)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def admin_execute(server_url: str, statement: str) -> None:
    with psycopg.connect(libpq(server_url), autocommit=True) as conn:
        conn.execute(statement)


@pytest.fixture(scope="session")
def template_url(server_url: str) -> str:
    """A database migrated to head once per session; each test clones it."""
    admin_execute(server_url, f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
    admin_execute(server_url, f'CREATE DATABASE "{TEMPLATE}"')
    url = make_url(server_url).set(database=TEMPLATE).render_as_string(hide_password=False)
    engine = make_engine(url)
    migrate.upgrade(engine)
    with engine.begin() as conn:  # the API signs in as registry_api (migration 0006)
        conn.execute(text("SELECT registry_set_api_password(:p)"), {"p": API_PASSWORD})
    engine.dispose()
    return url


def api_settings_for(database_url: str, home: Path, **overrides):
    """API settings over ``database_url``, connecting as the API role, checking every
    token on every request (no credential cache), so revocation tests see it at once."""
    from api.settings import ApiSettings

    return ApiSettings(
        **{
            "database_url": database_url,
            "home": home,
            "api_password": API_PASSWORD,
            "auth_cache_seconds": 0,
            **overrides,
        }
    )


def grant(
    database_url: str,
    name: str = "tester",
    role: str = "admin",
    jurisdiction: tuple[str, ...] = (),
    password: str | None = None,
) -> str:
    """A bearer token for an account (created if new), written as the owner would."""
    from registry.auth import add_account, create_token
    from registry.db import transaction
    from registry.models import Account

    engine = make_engine(database_url)
    try:
        with transaction(engine) as session:
            if session.get(Account, name) is None:
                add_account(session, name, role, list(jurisdiction), password)
            return create_token(session, name)
    finally:
        engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_database(server_url: str, template: str | None) -> str:
    name = f"registry_test_{uuid.uuid4().hex[:12]}"
    template_clause = f' TEMPLATE "{template}"' if template else ""
    admin_execute(server_url, f'CREATE DATABASE "{name}"{template_clause}')
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(server_url: str, url: str) -> None:
    admin_execute(server_url, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


@pytest.fixture
def db_url(server_url: str, template_url: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    url = create_database(server_url, TEMPLATE)
    yield url
    drop_database(server_url, url)


@pytest.fixture
def empty_db_url(server_url: str) -> Iterator[str]:
    """A fresh database with nothing in it, for migration tests."""
    url = create_database(server_url, None)
    yield url
    drop_database(server_url, url)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with sessionmaker(engine)() as session:
        yield session


@pytest.fixture
def registry_env(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment under which the CLI uses this test's database and its own key file."""
    home = tmp_path / "home"
    key_file = home / "keys.json"
    create_key_file(key_file)
    env = {
        "DATABASE_URL": db_url,
        "REGISTRY_HOME": str(home),
        "REGISTRY_KEY_FILE": str(key_file),
        # the API role is shared by the cluster: every test gives it the same password
        "REGISTRY_API_PASSWORD": API_PASSWORD,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def vault(registry_env: dict[str, str]) -> IdentityVault:
    return load_vault(Path(registry_env["REGISTRY_KEY_FILE"]))


class Cli:
    """Runs ``registry`` in-process with the test's environment."""

    def __init__(self) -> None:
        self.runner = CliRunner()

    def __call__(self, *args: str | Path) -> Result:
        result = self.runner.invoke(app, [str(a) for a in args], catch_exceptions=True)
        if result.exception and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result


@pytest.fixture
def cli(registry_env: dict[str, str]) -> Cli:
    return Cli()


@pytest.fixture
def sample(session: Session, vault: IdentityVault) -> Session:
    """This test's database with the 光谷 sample bundle loaded and committed."""
    from registry.bundle.load import load_bundle

    report = load_bundle(session, SAMPLE_BUNDLE, vault)
    assert report.written, report.errors
    session.commit()
    return session


# ---------------------------------------------------------------- the API over the sample


@pytest.fixture(scope="session")
def sample_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The key file the sample database's identity numbers are stored with (mode 600)."""
    key_file = tmp_path_factory.mktemp("sample-keys") / "keys.json"
    create_key_file(key_file)
    return key_file


def sample_database(server_url: str, key_file: Path) -> str:
    """A new database (dropped by the caller) with the 光谷 sample bundle loaded."""
    from registry.bundle.load import load_bundle
    from registry.cli import SAMPLE_BUNDLE
    from registry.db import transaction

    url = create_database(server_url, TEMPLATE)
    engine = make_engine(url)
    try:
        with transaction(engine) as session:
            report = load_bundle(session, SAMPLE_BUNDLE, load_vault(key_file))
            assert report.written, report.errors
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def sample_db_url(server_url: str, template_url: str, sample_key_file: Path):
    """One database with the 光谷 sample bundle loaded, shared read-only by the API tests.

    Tests that write must use ``db_url``, or a :func:`sample_database` of their own.
    """
    url = sample_database(server_url, sample_key_file)
    yield url
    drop_database(server_url, url)


@pytest.fixture(scope="session")
def api_settings(
    sample_db_url: str, sample_key_file: Path, tmp_path_factory: pytest.TempPathFactory
):
    return api_settings_for(
        sample_db_url,
        tmp_path_factory.mktemp("api-home"),
        statement_timeout_ms=20_000,
        key_file=sample_key_file,
    )


@pytest.fixture(scope="session")
def admin_token(sample_db_url: str) -> str:
    """A token of an ``admin`` of the sample database: sees every building and address."""
    return grant(sample_db_url, "sample-admin", "admin")


@pytest.fixture(scope="session")
def api_client(api_settings, admin_token):
    """An in-process client of the API over the sample database (lifespan run once),
    signed in as an admin."""
    from fastapi.testclient import TestClient

    from api import create_app

    with TestClient(create_app(api_settings), headers=bearer(admin_token)) as client:
        yield client


class LiveServer:
    """The API served by a real uvicorn on a free loopback port, in a background thread."""

    def __init__(self, app) -> None:
        import socket
        import threading

        import uvicorn

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture(scope="session")
def live_server(api_settings) -> Iterator[LiveServer]:
    """The API over the sample database on a real HTTP port, for GDAL, OWSLib and schemathesis."""
    from api import create_app

    with LiveServer(create_app(api_settings)) as server:
        yield server
