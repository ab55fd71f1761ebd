"""The deployment files, checked without a Docker engine.

docker/compose.yml is resolved by a real Compose implementation (`docker compose`, else
Debian's `docker-compose`); docker/Dockerfile is parsed, and what it relies on is run
here: the files it copies build a wheel, its command's `registry` subcommands exist, and
its health check passes against a healthy server and fails against an unhealthy one.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

import pytest

from api import create_app
from api.settings import ApiSettings

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE_FILE = ROOT / "docker" / "compose.yml"
DOCKERIGNORE = ROOT / ".dockerignore"
REGISTRY = str(Path(sys.executable).with_name("registry"))  # the installed console script
HEALTH_URL = "http://127.0.0.1:8000/healthz"
# variables the compose file interpolates: unset, so its defaults are what is checked
COMPOSE_VARIABLES = ("POSTGRES_", "REGISTRY_", "API_", "DATABASE_URL", "COMPOSE_")


# ---------------------------------------------------------------- compose


def compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=60)
        if probe.returncode == 0:
            return [docker, "compose"]
    docker_compose = shutil.which("docker-compose")
    return [docker_compose] if docker_compose else None


def resolved_config(**variables: str) -> dict:
    command = compose_command()
    if command is None:
        pytest.skip(
            "no Compose implementation: neither `docker compose` nor `docker-compose` "
            "(bash scripts/setup.sh --dev installs Debian's docker-compose)"
        )
    yaml = pytest.importorskip("yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(COMPOSE_VARIABLES)}
    env.update(variables)
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def environment(service: dict) -> dict[str, str | None]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # KEY=VALUE list form
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: None if v is None else str(v) for k, v in env.items()}


def volume_mounts(service: dict) -> dict[str, str]:
    """target -> source of each mount, from the short or the long syntax."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target = volume.split(":")[:2]
        else:
            source, target = volume.get("source"), volume["target"]
        mounts[target] = source
    return mounts


def published_ports(service: dict) -> list[tuple[str, str, str]]:
    """(host ip, published, target) of each port, from the short or the long syntax."""
    ports = []
    for port in service.get("ports", []):
        if isinstance(port, str):
            host_ip, published, target = port.split("/")[0].rsplit(":", 2)
        else:
            host_ip, published, target = port.get("host_ip", ""), port["published"], port["target"]
        ports.append((host_ip, str(published), str(target)))
    return ports


def test_compose_file_resolves_to_db_and_api():
    config = resolved_config()
    services = config["services"]
    assert set(services) == {"db", "api"}

    db = services["db"]
    assert db["image"].split(":")[0] == "postgis/postgis"
    db_test = db["healthcheck"]["test"]
    assert db_test[0] in {"CMD", "CMD-SHELL"} and "pg_isready" in " ".join(db_test)
    assert volume_mounts(db)["/var/lib/postgresql/data"] in config["volumes"]

    api = services["api"]
    assert Path(api["build"]["context"]).resolve() == ROOT
    assert (ROOT / api["build"]["dockerfile"]).resolve() == DOCKERFILE
    depends = api["depends_on"]
    assert depends["db"]["condition"] == "service_healthy"
    assert api["restart"] in {"always", "unless-stopped", "on-failure"}
    assert api["healthcheck"]["test"] == ["CMD", *dockerfile_health_command()]
    assert published_ports(api) == [("127.0.0.1", "8000", "8000")]


def test_compose_database_url_targets_the_db_service():
    for variables in ({}, {"POSTGRES_USER": "u", "POSTGRES_PASSWORD": "pw", "POSTGRES_DB": "d"}):
        services = resolved_config(**variables)["services"]
        db_env = environment(services["db"])
        url = urlsplit(environment(services["api"])["DATABASE_URL"])
        assert url.scheme == "postgresql"
        assert url.hostname == "db" and url.port == 5432
        assert url.username == db_env["POSTGRES_USER"]
        assert url.password == db_env["POSTGRES_PASSWORD"]
        assert url.path == "/" + db_env["POSTGRES_DB"]
        if variables:
            assert (url.username, url.password, url.path) == ("u", "pw", "/d")


def test_compose_sets_only_settings_the_application_reads(monkeypatch):
    """Every variable given to the api container is a field of ApiSettings, and the
    resolved values load into it."""
    config = resolved_config(REGISTRY_BASEMAP_URL="https://tiles.example/{z}/{x}/{y}.png")
    api = config["services"]["api"]
    env = environment(api)
    fields = ApiSettings.model_fields
    for name in env:
        assert name == "DATABASE_URL" or (
            name.startswith("REGISTRY_") and name.removeprefix("REGISTRY_").lower() in fields
        ), f"{name} is not read by the application"
    for name in [n for n in os.environ if n.startswith(COMPOSE_VARIABLES)]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if value is not None:
            monkeypatch.setenv(name, value)
    settings = ApiSettings()
    assert settings.database_url == env["DATABASE_URL"]
    assert settings.statement_timeout_ms == int(env["REGISTRY_STATEMENT_TIMEOUT_MS"])
    assert settings.basemap_url == "https://tiles.example/{z}/{x}/{y}.png"
    # the key file lives on the named volume mounted where the image declares VOLUME
    key_file = PurePosixPath(dockerfile_env()["REGISTRY_KEY_FILE"])
    mounts = volume_mounts(api)
    volume_dir = next(PurePosixPath(t) for t in mounts if key_file.is_relative_to(t))
    assert mounts[str(volume_dir)] in config["volumes"]
    assert str(volume_dir) in dockerfile_volumes()


# ---------------------------------------------------------------- Dockerfile


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    result, pending = [], ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        result.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def dockerfile_env() -> dict[str, str]:
    env = {}
    for keyword, arguments in final_stage():
        if keyword == "ENV":
            env.update(pair.split("=", 1) for pair in shlex.split(arguments))
    return env


def dockerfile_volumes() -> list[str]:
    volumes = []
    for keyword, arguments in final_stage():
        if keyword == "VOLUME":
            parsed = json.loads(arguments) if arguments.startswith("[") else arguments.split()
            volumes.extend(parsed)
    return volumes


def dockerfile_health_command() -> list[str]:
    (arguments,) = [a for k, a in final_stage() if k == "HEALTHCHECK"]
    _, _, command = arguments.partition(" CMD ")
    return json.loads(command)


def test_dockerfile_image_shape():
    steps = instructions()
    bases = [arguments.split()[0] for keyword, arguments in steps if keyword == "FROM"]
    assert bases and all(base == "python:3.11-slim-bookworm" for base in bases)
    stages = {a.split()[-1] for k, a in steps if k == "FROM" and " AS " in a.upper()}
    for keyword, arguments in steps:
        if keyword == "COPY" and arguments.startswith("--from="):
            assert arguments.split()[0].removeprefix("--from=") in stages
    final = final_stage()
    users = [arguments for keyword, arguments in final if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert ("EXPOSE", "8000") in final
    env = dockerfile_env()
    assert "DATABASE_URL" not in env  # a deployment secret: given at run time
    for name in env:
        if name.startswith("REGISTRY_"):
            assert name.removeprefix("REGISTRY_").lower() in ApiSettings.model_fields, name


def test_dockerfile_copies_only_existing_files_the_context_sends():
    patterns = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    copied = copy_sources()
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert not dockerignored(source, patterns), f"COPY {source}: excluded by .dockerignore"


def copy_sources() -> list[str]:
    sources = []
    for keyword, arguments in instructions():
        if keyword in {"COPY", "ADD"} and not arguments.startswith("--from="):
            words = [w for w in shlex.split(arguments) if not w.startswith("--")]
            sources.extend(w.rstrip("/") for w in words[:-1])
    return sources


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents wins."""
    parts = PurePosixPath(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        if any(fnmatch(c, pattern) or fnmatch(c, pattern.removeprefix("**/")) for c in candidates):
            ignored = not negated
    return ignored


def test_the_copied_files_build_a_complete_wheel(tmp_path):
    """`pip install .` in the image sees only what COPY brings: build a wheel from exactly
    that and check it carries the package data the API and migrations need."""
    patterns = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    context = tmp_path / "context"
    for source in copy_sources():
        origin = ROOT / source
        if origin.is_dir():
            shutil.copytree(
                origin,
                context / source,
                ignore=lambda d, names: [
                    n
                    for n in names
                    if dockerignored(str((Path(d) / n).relative_to(ROOT)), patterns)
                    or n.endswith(".egg-info")
                ],
            )
        else:
            context.mkdir(exist_ok=True)
            shutil.copy2(origin, context / source)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), context],
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = [
        path.relative_to(ROOT).as_posix()
        for folder in ("api/static", "registry/sql", "registry/data", "registry/migrations")
        for path in (ROOT / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    ]
    assert expected
    assert [name for name in expected if name not in names] == []
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "registry = registry.cli:app" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_dockerfile_command_uses_existing_registry_subcommands():
    """CMD is `sh -c "registry db migrate && exec registry serve ..."`: every command in
    it is a `registry` subcommand accepting the options given, and the server is exec'd."""
    (arguments,) = [a for k, a in final_stage() if k == "CMD"]
    shell, flag, script = json.loads(arguments)
    assert (shell, flag) == ("/bin/sh", "-c")
    commands = [shlex.split(part) for part in script.split("&&")]
    expected = [["registry", "db", "migrate"], ["exec", "registry", "serve"]]
    assert [c[:3] for c in commands] == expected
    env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}
    for command in commands:
        words = command[1:] if command[0] == "exec" else command
        assert words[0] == "registry"
        subcommand = [w for w in words[1:] if not w.startswith("-")][: 2 if words[1] == "db" else 1]
        options = [w for w in words if w.startswith("--")]
        result = subprocess.run(
            [REGISTRY, *subcommand, "--help"], capture_output=True, text=True, env=env, timeout=120
        )
        assert result.returncode == 0, f"registry {' '.join(subcommand)}: {result.stderr}"
        for option in options:
            assert option in result.stdout, f"registry {' '.join(subcommand)} has no {option}"
    assert script.split("&&")[-1].split()[0] == "exec"


class Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == "/healthz" else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def stub_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def run_health_check(port: int) -> int:
    command = dockerfile_health_command()
    assert command[:2] == ["python", "-c"] and HEALTH_URL in command[2]
    code = command[2].replace(HEALTH_URL, f"http://127.0.0.1:{port}/healthz")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode


def test_health_check_passes_on_healthy_and_fails_otherwise(stub_server):
    port = stub_server.server_address[1]
    Health.status = 200
    assert run_health_check(port) == 0
    Health.status = 503
    assert run_health_check(port) != 0
    stub_server.shutdown()
    stub_server.server_close()
    assert run_health_check(port) != 0  # nothing listening


def test_the_api_answers_the_health_check_path():
    from fastapi.testclient import TestClient

    settings = ApiSettings(database_url="postgresql://u:p@db:5432/registry")
    response = TestClient(create_app(settings)).get(urlsplit(HEALTH_URL).path)
    assert response.status_code == 200


def test_the_image_carries_the_notebooks_where_its_setting_says():
    copies = [
        shlex.split(arguments)
        for keyword, arguments in final_stage()
        if keyword == "COPY" and not arguments.startswith("--from=")
    ]
    assert ["notebooks", dockerfile_env()["REGISTRY_NOTEBOOK_DIR"]] in copies
