"""The servers the benchmark compares: our API, tipg and pygeoapi over one PostGIS table.

Each peer lives in its own virtual environment under the work directory (default
``.bench/`` at the repository root, which gets a ``.gitignore`` of ``*``), next to its
configuration files and logs. A :class:`Server` starts one as a subprocess in its own
process group, waits for its health URL (and, with several workers, for every worker to
report ready), and stops the whole group; ``pid`` is the supervisor, whose process tree
:mod:`bench.procmem` measures. :meth:`Server.describe` is the full configuration
(command, environment, files, request headers; passwords and tokens replaced by ``***``).

What the peers do with connections, read from their 1.6 / 0.24 sources:

- **tipg** 1.6: one asyncpg pool per uvicorn worker, ``DB_MIN_CONN_SIZE`` ..
  ``DB_MAX_CONN_SIZE`` connections (no ``TIPG_`` prefix; opened lazily above the
  minimum). Settings are read from the environment and from a ``.env`` file in the
  working directory, so it runs in the work directory. ``TIPG_DB_TABLES`` wants
  schema-qualified names; the collection id is ``public.building``. Statement timeout:
  asyncpg passes unknown DSN query parameters on as server settings, so it is
  ``?statement_timeout=...`` on ``DATABASE_URL``. Responses carry ``Cache-Control:
  public, max-age=3600`` and are compressed only when the request accepts it.
- **pygeoapi** 0.24: the PostgreSQL provider builds a synchronous SQLAlchemy engine with
  psycopg2 through ``get_engine``, cached per process (``functools.cache``) on the
  connection parameters and ``options``, so the feature and the MVT provider share one
  QueuePool per gunicorn worker when their options are equal. Since 0.24 the provider's
  ``options`` take ``pool_size``, ``max_overflow``, ``pool_recycle``, ``pool_timeout``
  and ``pool_pre_ping`` (defaults 5, 10, -1, 30, true); every other scalar option is a
  DBAPI connect argument, so ``options: "-c statement_timeout=N"`` sets the timeout.
  With gunicorn's default sync workers a worker serves one request at a time, so it
  never holds more than one connection: ``pool_size`` above 1 is never reached.
  Geometry: pygeoapi filters a bbox with ``ST_MakeEnvelope(..., srid of storage_crs)``,
  so the default CRS84 storage fails on ``footprint`` (EPSG:4490, "mixed SRID"), and
  ``storage_crs`` EPSG:4490 swaps the bbox axes (geopython/pygeoapi#2102: no results)
  and builds two pyproj CRS84<->CGCS2000 transformers per request (~0.4 s each). The
  stored Web Mercator copy ``footprint_3857`` (EPSG:3857, x/y order, GiST-indexed) gives
  correct answers at a few ms of transformer set-up, so both providers use it, and the
  feature provider lists the non-geometry ``properties`` (an unlisted geometry column
  fails JSON encoding). The MVT provider (``MVT-postgresql``) ignores ``properties``:
  its tiles carry every other column, including ``footprint`` as hex WKB. It renders
  WebMercatorQuad tiles with ``ST_AsMVT``, answers 204 for an empty tile, and its path
  is ``/collections/{id}/tiles/{tms}/{z}/{row=y}/{col=x}?f=mvt``. Its ``options`` must
  not hold lists (``schemes``): they would reach the cached ``get_engine`` unhashable.
- **our API**: ``registry serve`` (uvicorn, async psycopg, SQLAlchemy QueuePool of
  ``REGISTRY_POOL_SIZE`` with ``REGISTRY_MAX_OVERFLOW`` per worker). It connects as
  ``registry_api`` (``REGISTRY_API_PASSWORD``), so row-level security applies, and every
  request but the health check carries ``Authorization: Bearer <token>``
  (:attr:`Server.headers`). The peers connect as the tables' owner and need no token.

Both uvicorn-based servers run with uvicorn's defaults (log level info, access log on).
"""

from __future__ import annotations

import contextlib
import copy
import glob
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import httpx
import psycopg
import yaml

from bench.database import libpq

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_WORKDIR = REPO_ROOT / ".bench"
HOST = "127.0.0.1"
MARKER = "bench-venv.json"
REDACTED = "***"

TIPG_REQUIREMENTS = ("tipg==1.6.*", "uvicorn")
TIPG_PACKAGES = ("tipg", "uvicorn", "asyncpg", "fastapi", "starlette")
PYGEOAPI_REQUIREMENTS = (
    "pygeoapi==0.24.*",
    "psycopg2-binary",
    "pygeofilter[backend-sqlalchemy]",
    "gunicorn",
)
PYGEOAPI_PACKAGES = (
    "pygeoapi",
    "gunicorn",
    "flask",
    "sqlalchemy",
    "geoalchemy2",
    "psycopg2-binary",
    "pygeofilter",
)
REGISTRY_PACKAGES = ("yibiao-sanshi-registry", "uvicorn", "fastapi", "sqlalchemy", "psycopg")

TIPG_COLLECTION = "public.building"
PYGEOAPI_COLLECTION = "buildings"
REGISTRY_COLLECTION = "buildings"
TMS = "WebMercatorQuad"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
MVT_MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
MERCATOR_COLUMN = "footprint_3857"  # building's stored Web Mercator copy (migration 0004)
PYGEOAPI_GEOMETRY = (MERCATOR_COLUMN, "footprint")  # the first the table has
FEATURE_CAP = 10_000  # items per request, as our API's MAX_LIMIT
TILE_FEATURE_CAP = 15_000  # our API caps a buildings tile at this many features

# Variables that would change a server's configuration behind our back.
INHERITED_PREFIXES = ("REGISTRY_", "TIPG_", "PYGEOAPI_", "DB_", "PG", "GUNICORN_")
INHERITED_NAMES = ("DATABASE_URL", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "WEB_CONCURRENCY")


# ---------------------------------------------------------------- work directory, venvs


def prepare_workdir(workdir: Path = DEFAULT_WORKDIR) -> Path:
    """Create ``workdir`` with ``venvs/`` and ``logs/``; git ignores all of it."""
    workdir = Path(workdir).resolve()
    (workdir / "venvs").mkdir(parents=True, exist_ok=True)
    (workdir / "logs").mkdir(exist_ok=True)
    ignore = workdir / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    return workdir


def installed_versions(python: Path | str, packages: Sequence[str]) -> dict[str, str]:
    """Distribution versions as seen by ``python`` (``None`` for one not installed)."""
    code = (
        "import importlib.metadata as m, json, sys\n"
        "def v(n):\n"
        "    try: return m.version(n)\n"
        "    except m.PackageNotFoundError: return None\n"
        "print(json.dumps({'python': sys.version.split()[0], "
        "**{n: v(n) for n in sys.argv[1:]}}))"
    )
    done = subprocess.run(
        [str(python), "-c", code, *packages], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout)


def venv_versions(venv: Path) -> dict[str, str]:
    """The versions recorded when :func:`ensure_venv` installed ``venv``."""
    return json.loads((venv / MARKER).read_text())["versions"]


def ensure_venv(
    workdir: Path,
    name: str,
    python: str,
    requirements: Sequence[str],
    packages: Sequence[str],
    expect: tuple[str, str],
) -> Path:
    """``workdir/venvs/name`` with ``requirements`` installed, reused when already done.

    ``expect`` is (package, version prefix): pip can settle on an older release when the
    newest does not fit the interpreter, so the installed version is checked.
    """
    venv = prepare_workdir(workdir) / "venvs" / name
    marker = venv / MARKER
    if marker.exists() and json.loads(marker.read_text())["requirements"] == list(requirements):
        versions = venv_versions(venv)
        print(f"bench: {name} venv reused: {versions}", file=sys.stderr)
        return venv
    if not (venv / "bin" / "python").exists():
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
    log = venv.parent.parent / "logs" / f"pip-{name}.log"
    with log.open("w") as out:
        done = subprocess.run(
            [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
             *requirements],
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(requirements)} failed: see {log}\n{tail(log)}")
    versions = installed_versions(venv / "bin" / "python", packages)
    package, prefix = expect
    if not (versions.get(package) or "").startswith(prefix):
        raise RuntimeError(
            f"{package} {versions.get(package)} installed in {venv}, wanted {prefix}*: check {log}"
        )
    marker.write_text(json.dumps({"requirements": list(requirements), "versions": versions}))
    print(f"bench: {name} venv installed: {versions}", file=sys.stderr)
    return venv


def ensure_tipg_venv(workdir: Path = DEFAULT_WORKDIR) -> Path:
    """tipg 1.6 with uvicorn, on the interpreter running this (Python 3.11 here)."""
    return ensure_venv(
        workdir, "tipg", sys.executable, TIPG_REQUIREMENTS, TIPG_PACKAGES, ("tipg", "1.6.")
    )


def runs(python: str) -> bool:
    """Whether ``python`` really starts (a pyenv shim for another version does not)."""
    try:
        done = subprocess.run([python, "-c", "import sys"], capture_output=True, timeout=30)
    except OSError:
        return False
    return done.returncode == 0


def pyenv_root() -> Path:
    """``pyenv root`` when pyenv is on PATH, else ``$PYENV_ROOT`` or ``~/.pyenv``."""
    if shutil.which("pyenv"):
        done = subprocess.run(["pyenv", "root"], capture_output=True, text=True)
        if done.returncode == 0 and done.stdout.strip():
            return Path(done.stdout.strip())
    return Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))


def find_python312() -> str:
    """A working ``python3.12``: on PATH, else the newest 3.12 under pyenv."""
    candidates = [shutil.which("python3.12")]
    pattern = str(pyenv_root() / "versions" / "3.12*" / "bin" / "python3.12")
    candidates += sorted(glob.glob(pattern), key=version_key, reverse=True)
    for candidate in candidates:
        if candidate and runs(candidate):
            return candidate
    raise RuntimeError(
        "pygeoapi 0.24 needs Python 3.12: no working python3.12 on PATH and none matching "
        f"{pattern}; install one (e.g. `pyenv install 3.12`)"
    )


def version_key(path: str) -> tuple[int, ...]:
    """(3, 12, 1) from ``.../versions/3.12.1/bin/python3.12``, for sorting."""
    name = Path(path).parent.parent.name
    return tuple(int(part) if part.isdigit() else -1 for part in name.split("."))


def ensure_pygeoapi_venv(workdir: Path = DEFAULT_WORKDIR) -> Path:
    """pygeoapi 0.24 (which needs Python 3.12) with psycopg2, pygeofilter and gunicorn."""
    return ensure_venv(
        workdir,
        "pygeoapi",
        find_python312(),
        PYGEOAPI_REQUIREMENTS,
        PYGEOAPI_PACKAGES,
        ("pygeoapi", "0.24."),
    )


# ---------------------------------------------------------------- database URLs


def with_query(url: str, **params: Any) -> str:
    """``url`` with ``params`` appended to its query string."""
    parts = urlsplit(url)
    extra = "&".join(f"{k}={quote(str(v))}" for k, v in params.items())
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))


def password_of(url: str) -> str | None:
    return unquote(urlsplit(url).password) if urlsplit(url).password else None


def connection_dict(url: str, schema: str = "public") -> dict[str, Any]:
    """pygeoapi's ``data`` block for a PostgreSQL URL."""
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "localhost",
        "port": parts.port or 5432,
        "dbname": unquote(parts.path.lstrip("/")),
        "user": unquote(parts.username or ""),
        "password": unquote(parts.password or ""),
        "search_path": [schema],
    }


def redact(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` with each secret string replaced by ``***``, through dicts and lists."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
            value = value.replace(quote(secret, safe=""), REDACTED)
        return value
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v, secrets) for v in value]
    return value


# ---------------------------------------------------------------- servers


def tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ('' if there is none)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def clean_environment() -> dict[str, str]:
    """This process's environment without what configures any of the servers."""
    return {
        k: v
        for k, v in os.environ.items()
        if k not in INHERITED_NAMES and not k.startswith(INHERITED_PREFIXES)
    }


@dataclass
class Server:
    """One server process group. ``ready`` is (log text, count): started when the log
    holds the text that many times (one per worker) and the health URL answers 200."""

    name: str
    base_url: str
    health_url: str
    command: list[str]
    env: dict[str, str]
    cwd: Path
    log_path: Path
    ready: tuple[str, int] | None = None
    versions: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)  # sent with every benchmark request
    start_timeout_s: float = 120.0
    process: subprocess.Popen | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.process.pid

    @property
    def port(self) -> int:
        return urlsplit(self.base_url).port or 80

    def start(self) -> Server:
        """Launch and wait until ready; on failure stop it and raise with the log tail."""
        if not port_is_free(self.port):
            raise RuntimeError(f"{self.name}: port {self.port} is already in use")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("w") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env={**clean_environment(), **self.env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode} before it was ready; "
                    f"{self.log_path}:\n{tail(self.log_path)}"
                )
            if self.workers_ready() and self.healthy():
                return
            time.sleep(0.25)
        raise TimeoutError(
            f"{self.name} not ready at {self.health_url} after {self.start_timeout_s:.0f} s; "
            f"{self.log_path}:\n{tail(self.log_path)}"
        )

    def workers_ready(self) -> bool:
        if self.ready is None:
            return True
        text, count = self.ready
        return self.log_path.read_text(errors="replace").count(text) >= count

    def healthy(self) -> bool:
        try:
            return httpx.get(self.health_url, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM to the process group, SIGKILL after ``grace_s``."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue
        self.kill_leftovers(process.pid)

    @staticmethod
    def kill_leftovers(pgid: int) -> None:
        """Workers that outlive their supervisor still hold the group id: kill them."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def describe(self) -> dict[str, Any]:
        """Everything needed to start this server again by hand, secrets redacted."""
        document = {
            "name": self.name,
            "versions": self.versions,
            "base_url": self.base_url,
            "health_url": self.health_url,
            "settings": self.settings,
            "cwd": str(self.cwd),
            "command": shlex.join(self.command),
            "env": self.env,
            "headers": self.headers,
            "files": {name: path.read_text() for name, path in self.files.items()},
        }
        return redact(document, self.secrets)


def log_path(workdir: Path, name: str, port: int) -> Path:
    return prepare_workdir(workdir) / "logs" / f"{name}-{port}.log"


# ---------------------------------------------------------------- tipg


def tipg_server(
    workdir: Path,
    database_url: str,
    port: int,
    workers: int,
    pool_size: int,
    schema: str = "public",
    tables: Sequence[str] = ("building",),
    *,
    min_pool_size: int = 1,
    statement_timeout_ms: int | None = 10_000,
    geometry_column: str = "footprint",
    id_column: str = "id",
) -> Server:
    """tipg under uvicorn, serving ``schema.tables`` (collection ids ``schema.table``)."""
    workdir = prepare_workdir(workdir)
    venv = ensure_tipg_venv(workdir)
    url = libpq(database_url)
    if statement_timeout_ms is not None:
        url = with_query(url, statement_timeout=statement_timeout_ms)
    env = {
        "DATABASE_URL": url,
        "DB_MIN_CONN_SIZE": str(min(min_pool_size, pool_size)),
        "DB_MAX_CONN_SIZE": str(pool_size),
        "TIPG_DB_SCHEMAS": json.dumps([schema]),
        "TIPG_DB_TABLES": json.dumps([f"{schema}.{table}" for table in tables]),
        "TIPG_DB_EXCLUDE_FUNCTION_SCHEMAS": json.dumps([schema]),
        "TIPG_MAX_FEATURES_PER_QUERY": str(FEATURE_CAP),
        "TIPG_MAX_FEATURES_PER_TILE": str(TILE_FEATURE_CAP),
    }
    for table in tables:
        prefix = f"TIPG_TABLE_CONFIG__{schema}_{table}__"
        env[prefix + "GEOMCOL"] = geometry_column
        env[prefix + "PK"] = id_column
    base = f"http://{HOST}:{port}"
    command = [str(venv / "bin" / "uvicorn"), "tipg.main:app", "--host", HOST]
    command += ["--port", str(port), "--workers", str(workers)]
    return Server(
        name="tipg",
        base_url=base,
        health_url=f"{base}/collections/{schema}.{tables[0]}",
        command=command,
        env=env,
        cwd=workdir,
        log_path=log_path(workdir, "tipg", port),
        ready=("Application startup complete.", workers),
        versions=venv_versions(venv),
        settings=server_settings(workers, pool_size, statement_timeout_ms, min_pool_size),
        secrets=secrets_of(database_url),
    )


def tipg_tile_url(
    base: str,
    z: int,
    x: int,
    y: int,
    collection: str = TIPG_COLLECTION,
    geom_column: str | None = MERCATOR_COLUMN,
) -> str:
    """tipg's MVT tile, ``/collections/{id}/tiles/{tms}/{z}/{x}/{y}``, read from
    ``geom_column`` (default the stored Web Mercator copy, as our API's tiles are)."""
    url = f"{base}/collections/{collection}/tiles/{TMS}/{z}/{x}/{y}"
    return f"{url}?geom-column={geom_column}" if geom_column else url


def tipg_items_url(
    base: str, bbox: Sequence[float], limit: int, collection: str = TIPG_COLLECTION
) -> str:
    return f"{base}/collections/{collection}/items?bbox={bbox_param(bbox)}&limit={limit}"


# ---------------------------------------------------------------- pygeoapi


def table_columns(
    database_url: str, schema: str = "public", table: str = "building"
) -> dict[str, int | None]:
    """Column name -> SRID for geometry columns, ``None`` for the others, in table order."""
    with psycopg.connect(libpq(database_url)) as conn:
        names = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, table),
        ).fetchall()
        srids = conn.execute(
            "SELECT f_geometry_column, srid FROM geometry_columns"
            " WHERE f_table_schema = %s AND f_table_name = %s",
            (schema, table),
        ).fetchall()
    if not names:
        raise RuntimeError(f"no table {schema}.{table} in the database")
    geometry = dict(srids)
    return {name: geometry.get(name) for (name,) in names}


def crs_uri(srid: int) -> str:
    """pygeoapi's CRS URI for an SRID; 4326 is CRS84 (PostGIS stores longitude first)."""
    return CRS84 if srid == 4326 else f"http://www.opengis.net/def/crs/EPSG/0/{srid}"


def pygeoapi_providers(
    database_url: str,
    pool_size: int,
    statement_timeout_ms: int | None,
    tiles: bool,
    geometry_column: str | None = None,
) -> list[dict[str, Any]]:
    """The feature (and MVT) provider over ``public.building``: see the module docstring
    for why the geometry is the Web Mercator copy and the properties are listed."""
    columns = table_columns(database_url)
    geometry = geometry_column or next(c for c in PYGEOAPI_GEOMETRY if c in columns)
    srid = columns[geometry]
    if srid is None:
        raise RuntimeError(f"building.{geometry} is not a geometry column")
    options: dict[str, Any] = {"pool_size": pool_size, "max_overflow": 0}
    if statement_timeout_ms is not None:
        options["options"] = f"-c statement_timeout={statement_timeout_ms}"
    table = {
        "data": connection_dict(database_url),
        "id_field": "id",
        "table": "building",
        "geom_field": geometry,
        "storage_crs": crs_uri(srid),
        "properties": [name for name, srid in columns.items() if srid is None],
    }
    providers: list[dict[str, Any]] = [
        {"type": "feature", "name": "PostgreSQL", **table, "options": options}
    ]
    if tiles:
        providers.append(
            {
                "type": "tile",
                "name": "MVT-postgresql",
                **copy.deepcopy(table),  # no YAML anchors in the written file
                "options": {**options, "zoom": {"min": 0, "max": 22}},
                "format": {"name": "pbf", "mimetype": MVT_MEDIA_TYPE},
            }
        )
    return providers


def pygeoapi_config(base: str, port: int, providers: list[dict[str, Any]]) -> dict[str, Any]:
    """A minimal pygeoapi configuration with one collection, ``buildings``."""
    return {
        "server": {
            "bind": {"host": HOST, "port": port},
            "url": base,
            "mimetype": "application/json; charset=UTF-8",
            "encoding": "utf-8",
            "language": "en-US",
            "gzip": False,
            "cors": False,
            "pretty_print": False,
            "limits": {"default_items": 10, "max_items": FEATURE_CAP, "on_exceed": "throttle"},
            "map": {"url": "https://tile.openstreetmap.org/{z}/{x}/{y}.png", "attribution": "OSM"},
        },
        "logging": {"level": "ERROR"},
        "metadata": {
            "identification": {
                "title": "benchmark peer",
                "description": "pygeoapi serving the registry's building table",
                "keywords": ["buildings"],
                "keywords_type": "theme",
                "terms_of_service": "none",
                "url": base,
            },
            "license": {"name": "none", "url": base},
            "provider": {"name": "benchmark", "url": base},
            "contact": {"name": "benchmark", "url": base},
        },
        "resources": {
            PYGEOAPI_COLLECTION: {
                "type": "collection",
                "title": "Buildings",
                "description": "public.building",
                "keywords": ["buildings"],
                "extents": {
                    "spatial": {
                        "bbox": [-180, -90, 180, 90],
                        "crs": CRS84,
                    }
                },
                "providers": providers,
            }
        },
    }


GUNICORN_HOOKS = '''"""Log once a worker has loaded the app, so readiness can count workers."""


def post_worker_init(worker):
    worker.log.info("bench: worker %s ready", worker.pid)
'''


def pygeoapi_server(
    workdir: Path,
    database_url: str,
    port: int,
    workers: int,
    pool_size: int,
    statement_timeout_ms: int | None = 10_000,
    *,
    tiles: bool = True,
    geometry_column: str | None = None,
    worker_class: str = "sync",
    timeout_s: int = 60,
) -> Server:
    """pygeoapi under gunicorn, one collection ``buildings`` with features and MVT tiles."""
    workdir = prepare_workdir(workdir)
    venv = ensure_pygeoapi_venv(workdir)
    base = f"http://{HOST}:{port}"
    config_path = workdir / f"pygeoapi-{port}.yml"
    openapi_path = workdir / f"pygeoapi-{port}-openapi.yml"
    hooks_path = workdir / "gunicorn_hooks.py"
    providers = pygeoapi_providers(
        database_url, pool_size, statement_timeout_ms, tiles, geometry_column
    )
    config = pygeoapi_config(base, port, providers)
    config_path.write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    hooks_path.write_text(GUNICORN_HOOKS)
    env = {"PYGEOAPI_CONFIG": str(config_path), "PYGEOAPI_OPENAPI": str(openapi_path)}
    generate_openapi(venv, config_path, openapi_path, env)
    command = [str(venv / "bin" / "gunicorn"), "-c", str(hooks_path), "-w", str(workers)]
    command += ["-k", worker_class, "-b", f"{HOST}:{port}", "--timeout", str(timeout_s)]
    command += ["pygeoapi.flask_app:APP"]
    return Server(
        name="pygeoapi",
        base_url=base,
        health_url=f"{base}/collections/{PYGEOAPI_COLLECTION}?f=json",
        command=command,
        env=env,
        cwd=workdir,
        log_path=log_path(workdir, "pygeoapi", port),
        ready=("bench: worker", workers),
        versions=venv_versions(venv),
        settings={
            **server_settings(workers, pool_size, statement_timeout_ms),
            "worker_class": worker_class,
            "tiles": tiles,
            "geometry_column": providers[0]["geom_field"],
            "storage_crs": providers[0]["storage_crs"],
            "openapi": f"pygeoapi openapi generate {config_path} --output-file {openapi_path}",
        },
        files={"pygeoapi.yml": config_path, "gunicorn_hooks.py": hooks_path},
        secrets=secrets_of(database_url),
    )


def generate_openapi(venv: Path, config: Path, output: Path, env: Mapping[str, str]) -> None:
    """``pygeoapi openapi generate``; it fails on a collection it cannot open."""
    done = subprocess.run(
        [str(venv / "bin" / "pygeoapi"), "openapi", "generate", str(config),
         "--fail-on-invalid-collection", "--output-file", str(output)],
        env={**clean_environment(), **env},
        capture_output=True,
        text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"pygeoapi openapi generate failed:\n{done.stderr[-3000:]}")


def pygeoapi_tile_url(
    base: str, z: int, x: int, y: int, collection: str = PYGEOAPI_COLLECTION
) -> str:
    """pygeoapi's MVT tile: row (y) comes before column (x) in its path."""
    return f"{base}/collections/{collection}/tiles/{TMS}/{z}/{y}/{x}?f=mvt"


def pygeoapi_items_url(
    base: str, bbox: Sequence[float], limit: int, collection: str = PYGEOAPI_COLLECTION
) -> str:
    return f"{base}/collections/{collection}/items?bbox={bbox_param(bbox)}&limit={limit}&f=json"


# ---------------------------------------------------------------- our API


def registry_server(
    database_url: str,
    port: int,
    workers: int,
    pool_size: int,
    env_extra: Mapping[str, str] | None = None,
    *,
    workdir: Path = DEFAULT_WORKDIR,
    statement_timeout_ms: int | None = 10_000,
    api_password: str | None = None,
    token: str | None = None,
    name: str = "registry",
) -> Server:
    """``registry serve`` from the repository's venv; ``env_extra`` wins over the rest.

    ``database_url`` is the owner's (the server checks the schema with it); the API itself
    connects as ``registry_api`` with ``api_password``. ``token`` is sent as a bearer token
    with every benchmark request. Both are redacted from :meth:`Server.describe`.
    """
    workdir = prepare_workdir(workdir)
    python = REPO_ROOT / ".venv" / "bin" / "python"
    env = {
        "DATABASE_URL": database_url,
        "REGISTRY_POOL_SIZE": str(pool_size),
        "REGISTRY_MAX_OVERFLOW": "0",
        "REGISTRY_HOME": str(workdir / "registry-home"),
    }
    if api_password is not None:
        env["REGISTRY_API_PASSWORD"] = api_password
    if statement_timeout_ms is not None:
        env["REGISTRY_STATEMENT_TIMEOUT_MS"] = str(statement_timeout_ms)
    env.update(env_extra or {})
    base = f"http://{HOST}:{port}"
    command = [str(REPO_ROOT / ".venv" / "bin" / "registry"), "serve", "--host", HOST]
    command += ["--port", str(port), "--workers", str(workers)]
    hidden = [s for s in (api_password, token) if s]
    return Server(
        name=name,
        base_url=base,
        health_url=f"{base}/conformance",
        command=command,
        env=env,
        cwd=workdir,
        log_path=log_path(workdir, name, port),
        ready=("Application startup complete.", workers),
        versions=installed_versions(python, REGISTRY_PACKAGES),
        settings=server_settings(workers, pool_size, statement_timeout_ms, max_overflow=0),
        secrets=(*secrets_of(database_url), *hidden),
        headers={"Authorization": f"Bearer {token}"} if token else {},
    )


def registry_tile_url(base: str, z: int, x: int, y: int) -> str:
    """Our XYZ MVT route: ``/tiles/{collections}/{z}/{x}/{y}.mvt`` (204 when empty)."""
    return f"{base}/tiles/{REGISTRY_COLLECTION}/{z}/{x}/{y}.mvt"


def registry_items_url(base: str, bbox: Sequence[float], limit: int) -> str:
    return f"{base}/collections/{REGISTRY_COLLECTION}/items?bbox={bbox_param(bbox)}&limit={limit}"


# ---------------------------------------------------------------- shared helpers


def bbox_param(bbox: Sequence[float]) -> str:
    if len(bbox) != 4:
        raise ValueError(f"bbox needs 4 numbers, got {list(bbox)}")
    return ",".join(repr(float(v)) for v in bbox)


def secrets_of(database_url: str) -> tuple[str, ...]:
    password = password_of(database_url)
    return (password,) if password else ()


def server_settings(
    workers: int,
    pool_size: int,
    statement_timeout_ms: int | None,
    min_pool_size: int | None = None,
    max_overflow: int | None = None,
) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "workers": workers,
        "pool_size_per_worker": pool_size,
        "statement_timeout_ms": statement_timeout_ms,
    }
    if min_pool_size is not None:
        settings["min_pool_size_per_worker"] = min(min_pool_size, pool_size)
    if max_overflow is not None:
        settings["max_overflow_per_worker"] = max_overflow
    return settings
