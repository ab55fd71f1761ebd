"""A private PostgreSQL + PostGIS cluster under ``REGISTRY_HOME``: the default database.

The cluster listens on 127.0.0.1 only (no unix socket), authenticates with
scram-sha-256 and a generated password, and is driven with ``initdb``/``pg_ctl``
from the system's PostgreSQL packages. When running as root the server runs as
the ``postgres`` (or ``nobody``) user; if that user cannot reach ``home`` (a clone
under /root or a ``mktemp -d`` directory), the data directory is placed under
:data:`RELOCATED_ROOT` and ``home/pg`` becomes a symlink to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from registry.settings import RegistryError

if TYPE_CHECKING:
    import psycopg

HOST = "127.0.0.1"
ROLE = "registry"
DATABASE = "registry"
RELOCATED_ROOT = Path("/var/lib/registry-embedded")
START_TIMEOUT = 60
SETUP_HINT = (
    "Run the README's setup script (`bash scripts/setup.sh`) or "
    "`apt-get install postgresql postgresql-15-postgis-3`, "
    "or point REGISTRY_PG_BINDIR at a PostgreSQL bin directory."
)
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


@dataclass(frozen=True)
class ClusterStatus:
    """What ``registry db status`` reports."""

    initialised: bool
    running: bool
    data_dir: Path | None
    port: int | None
    url: str | None
    server_version: str | None
    postgis_version: str | None


@dataclass
class _State:
    """The contents of ``cluster.json``: everything needed to reach the cluster."""

    data_dir: str
    port: int
    os_user: str
    database: str
    role: str
    password: str

    def url(self, port: int | None = None) -> str:
        user, password = quote(self.role, safe=""), quote(self.password, safe="")
        return (
            f"postgresql+psycopg://{user}:{password}@{HOST}:{port or self.port}/"
            f"{quote(self.database, safe='')}"
        )


@dataclass(frozen=True)
class _User:
    """The OS user the server runs as."""

    name: str
    uid: int
    gid: int
    home: str

    @classmethod
    def from_pw(cls, pw: pwd.struct_passwd) -> _User:
        return cls(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)


@dataclass(frozen=True)
class _Binaries:
    """The PostgreSQL installation used to run the cluster."""

    bindir: Path
    sharedir: Path
    major: str


class EmbeddedCluster:
    """A PostgreSQL + PostGIS cluster living in ``home / "pg"``, described by ``cluster.json``."""

    def __init__(self, home: Path, server_settings: Mapping[str, str] | None = None) -> None:
        self.home = Path(home).expanduser().resolve()
        self.link = self.home / "pg"
        self.state_file = self.home / "cluster.json"
        self.server_settings = dict(server_settings or {})

    # -- public API -------------------------------------------------------------------

    def up(self) -> str:
        """Initialise (first time) and start the cluster; return its SQLAlchemy URL.

        Idempotent: when the cluster is already running this only reads the state file.
        Does not run migrations.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        with self._lock():
            state = self._load_state()
            if state is not None and (url := self.running_url()) is not None:
                return url
            binaries = find_binaries()
            _check_postgis(binaries)
            if not _is_cluster(self._data_dir(state)):
                state = self._init(binaries)
            elif state is None:
                raise RegistryError(
                    f"{self.link} holds a cluster but {self.state_file} is missing, so its "
                    f"password is unknown. Remove {self.link} (and its symlink target) to "
                    "re-create it."
                )
            self._start(binaries, state)
            return state.url()

    def running_url(self) -> str | None:
        """The URL if the recorded cluster's postmaster is alive, else None (no subprocess)."""
        state = self._load_state()
        if state is None:
            return None
        port = _live_postmaster_port(Path(state.data_dir))
        return None if port is None else state.url(port)

    def status(self) -> ClusterStatus:
        """Initialised/running flags, location, port and, when running, server versions."""
        state = self._load_state()
        data_dir = self._data_dir(state)
        url = self.running_url()
        server_version = postgis_version = None
        if url is not None and state is not None:
            server_version, postgis_version = _versions(state)
        return ClusterStatus(
            initialised=_is_cluster(data_dir),
            running=url is not None,
            data_dir=data_dir,
            port=state.port if state else None,
            url=url,
            server_version=server_version,
            postgis_version=postgis_version,
        )

    def down(self) -> None:
        """Stop the cluster (fast shutdown); a no-op when it is not running."""
        if not self.home.is_dir():
            return
        with self._lock():
            data_dir = self._data_dir(self._load_state())
            if data_dir is not None:
                _stop(data_dir, mode="fast")

    def destroy(self) -> None:
        """Stop the cluster and delete its data directory, symlink target and state file."""
        if not self.home.is_dir():
            return
        with self._lock():
            data_dir = self._data_dir(self._load_state())
            if data_dir is not None:
                _stop(data_dir, mode="immediate")
                shutil.rmtree(data_dir, ignore_errors=True)
            if self.link.is_symlink():
                self.link.unlink()
            shutil.rmtree(self._relocated_dir(), ignore_errors=True)
            self.state_file.unlink(missing_ok=True)

    # -- state ------------------------------------------------------------------------

    def _load_state(self) -> _State | None:
        try:
            return _State(**json.loads(self.state_file.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            raise RegistryError(f"cannot read {self.state_file}: {exc}") from exc

    def _save_state(self, state: _State) -> None:
        """Write ``cluster.json`` atomically with mode 600 (it holds the password)."""
        tmp = self.state_file.with_suffix(".json.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(asdict(state), fh, indent=2)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.state_file)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise up/down/destroy between concurrent CLI invocations."""
        with open(self.home / ".cluster.lock", "w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    # -- data directory ---------------------------------------------------------------

    def _data_dir(self, state: _State | None) -> Path | None:
        """The real data directory: the recorded one, else where ``home/pg`` points."""
        if state is not None:
            return Path(state.data_dir)
        if self.link.is_symlink() or self.link.exists():
            return self.link.resolve()
        return None

    def _relocated_dir(self) -> Path:
        digest = hashlib.sha1(str(self.home).encode()).hexdigest()[:16]
        return RELOCATED_ROOT / digest

    def _prepare_data_dir(self, user: _User) -> Path:
        """Create an empty data directory owned by ``user``, relocating it if needed."""
        if self.link.is_symlink():
            target = self.link.resolve()
            _mkdirs_world_traversable(target.parent)
        elif self.link.exists():
            target = self.link
        elif os.geteuid() == 0 and not _can_traverse(user, self.home):
            target = self._relocated_dir() / "pg"
            _discard_orphan(target)
            _mkdirs_world_traversable(target.parent)
            self.link.symlink_to(target)
        else:
            target = self.link
        target.mkdir(mode=0o700, exist_ok=True)
        if any(target.iterdir()):
            raise RegistryError(
                f"{target} exists, is not empty and is not a PostgreSQL cluster; "
                "move it away or delete it."
            )
        os.chmod(target, 0o700)
        if os.geteuid() == 0:
            os.chown(target, user.uid, user.gid)
        return target

    # -- init / start -----------------------------------------------------------------

    def _init(self, binaries: _Binaries) -> _State:
        """initdb a fresh cluster, configure it and record it in ``cluster.json``."""
        user = _server_user()
        data_dir = self._prepare_data_dir(user)
        password = secrets.token_urlsafe(24)
        no_sync = self.server_settings.get("fsync", "").lower() in {"off", "false", "0"}
        _initdb(binaries, user, data_dir, password, no_sync=no_sync)
        _append_config(data_dir, self.server_settings)
        state = _State(str(data_dir), _free_port(), user.name, DATABASE, ROLE, password)
        self._save_state(state)
        return state

    def _start(self, binaries: _Binaries, state: _State) -> None:
        """Start on the recorded port (or a new free one), then ensure database + PostGIS."""
        data_dir = Path(state.data_dir)
        for attempt in range(2):
            if not _port_free(state.port):
                state.port = _free_port()
                self._save_state(state)
            _set_port(data_dir, state.port)
            try:
                _pg_ctl(binaries, data_dir, "start", "-l", str(data_dir / "server.log"))
                break
            except RegistryError:
                if attempt or _port_free(state.port):
                    raise
        try:
            _ensure_database(state)
        except Exception:
            _stop(data_dir, mode="fast")
            raise


# -- binaries ---------------------------------------------------------------------------


def find_binaries() -> _Binaries:
    """Locate initdb/pg_ctl: $REGISTRY_PG_BINDIR, ``pg_config --bindir``, newest Debian dir."""
    bindir = _find_bindir()
    pg_config = bindir / "pg_config"
    sharedir = None
    if pg_config.is_file():
        sharedir = _output([str(pg_config), "--sharedir"])
    major = _major_version(bindir)
    return _Binaries(bindir, Path(sharedir or f"/usr/share/postgresql/{major}"), major)


def _find_bindir() -> Path:
    override = os.environ.get("REGISTRY_PG_BINDIR")
    if override:
        if (Path(override) / "initdb").is_file():
            return Path(override)
        raise RegistryError(f"REGISTRY_PG_BINDIR={override} has no initdb. {SETUP_HINT}")
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config and (bindir := _output([pg_config, "--bindir"])):
        candidates.append(Path(bindir))
    candidates += sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: _version_key(p.parent.name),
        reverse=True,
    )
    for bindir in candidates:
        if (bindir / "initdb").is_file():
            return bindir
    raise RegistryError(f"PostgreSQL server binaries (initdb, pg_ctl) not found. {SETUP_HINT}")


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", name)) or (-1,)


def _major_version(bindir: Path) -> str:
    """Major version from the directory name (Debian layout) or ``postgres --version``."""
    if re.fullmatch(r"\d+", bindir.parent.name):
        return bindir.parent.name
    match = re.search(r"(\d+)(?:\.\d+)?", _output([str(bindir / "postgres"), "--version"]) or "")
    if match is None:
        raise RegistryError(f"cannot tell the PostgreSQL version of {bindir}. {SETUP_HINT}")
    return match.group(1)


def _check_postgis(binaries: _Binaries) -> None:
    control = binaries.sharedir / "extension" / "postgis.control"
    if not control.is_file():
        package = f"postgresql-{binaries.major}-postgis-3"
        raise RegistryError(
            f"PostGIS is not installed for PostgreSQL {binaries.major} (missing {control}). "
            f"Install it with `apt-get install {package}` or run `bash scripts/setup.sh`."
        )


def _output(cmd: list[str]) -> str | None:
    """stdout of a quick informational command, or None if it fails."""
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


# -- server user and permissions ----------------------------------------------------------


def _server_user() -> _User:
    """``postgres`` (else ``nobody``) when root, since initdb refuses root; else ourselves."""
    if os.geteuid() != 0:
        return _User.from_pw(pwd.getpwuid(os.geteuid()))
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return _User.from_pw(pwd.getpwnam(name))
    raise RegistryError("running as root but neither a `postgres` nor a `nobody` user exists.")


def _owner(path: Path) -> _User:
    return _User.from_pw(pwd.getpwuid(path.stat().st_uid))


def _run_as(
    user: _User, cmd: list[str], *, timeout: float, new_session: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` as ``user`` (dropping root if needed) with a clean, PG*-free environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(HOME=user.home, USER=user.name, LOGNAME=user.name, LC_ALL="C")
    switch: dict[str, object] = {}
    if os.geteuid() == 0 and user.uid != 0:
        groups = os.getgrouplist(user.name, user.gid)
        switch = {"user": user.uid, "group": user.gid, "extra_groups": groups}
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
        env=env,
        start_new_session=new_session,
        check=False,
        **switch,  # type: ignore[arg-type]
    )


def _can_traverse(user: _User, path: Path) -> bool:
    """Whether ``user`` can reach ``path`` (search permission on it and every ancestor)."""
    return _run_as(user, ["test", "-x", str(path)], timeout=10).returncode == 0


def _mkdirs_world_traversable(path: Path) -> None:
    """Create the parent of a data directory; under RELOCATED_ROOT, root-owned 0755."""
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    if path.is_relative_to(RELOCATED_ROOT):
        for directory in (RELOCATED_ROOT, path):
            os.chmod(directory, 0o755)


def _discard_orphan(data_dir: Path) -> None:
    """Remove a relocated data dir left behind by an earlier home at the same path."""
    if data_dir.exists():
        _stop(data_dir, mode="immediate")
        shutil.rmtree(data_dir)


# -- initdb and configuration -------------------------------------------------------------


def _initdb(
    binaries: _Binaries, user: _User, data_dir: Path, password: str, *, no_sync: bool
) -> None:
    """Run initdb as ``user`` with a superuser password passed via a short-lived file."""
    fd, pwfile = tempfile.mkstemp(prefix=".pwfile-", dir=data_dir.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
        if os.geteuid() == 0:
            os.chown(pwfile, user.uid, user.gid)
        cmd = [
            str(binaries.bindir / "initdb"),
            *("-D", str(data_dir), "-U", ROLE, f"--pwfile={pwfile}"),
            *("-E", "UTF8", f"--locale={_locale()}"),
            *("--auth-host=scram-sha-256", "--auth-local=peer"),
            *(["--no-sync"] if no_sync else []),
        ]
        try:
            result = _run_as(user, cmd, timeout=180)
        except subprocess.TimeoutExpired as exc:
            raise RegistryError(f"initdb timed out for {data_dir}") from exc
    finally:
        os.unlink(pwfile)
    if result.returncode != 0:
        raise RegistryError(
            f"initdb failed for {data_dir}:\n{_tail(result.stderr + result.stdout)}"
        )


def _locale() -> str:
    """C.UTF-8 where glibc provides it (built in since 2.35, Debian ships it), else C."""
    if Path("/usr/lib/locale/C.utf8").exists():
        return "C.UTF-8"
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError):
        libc = ""
    return "C.UTF-8" if libc.startswith("glibc") and _version_key(libc) >= (2, 35) else "C"


def _append_config(data_dir: Path, extra: Mapping[str, str]) -> None:
    """TCP-only on 127.0.0.1, logs in ``data_dir/log``, plus the caller's extra settings."""
    settings = {
        "listen_addresses": HOST,
        "unix_socket_directories": "",
        "password_encryption": "scram-sha-256",
        "logging_collector": "on",
        "log_directory": "log",
        "log_filename": "postgresql-%a.log",
        "log_truncate_on_rotation": "on",
        "log_rotation_age": "1d",
        "log_rotation_size": "0",
        "log_line_prefix": "%m [%p] %q%u@%d ",
        **extra,
    }
    lines = ["", "# --- registry embedded cluster ---"]
    lines += [f"{name} = {_quote_setting(name, value)}" for name, value in settings.items()]
    with open(data_dir / "postgresql.conf", "a") as fh:
        fh.write("\n".join(lines) + "\n")


def _quote_setting(name: str, value: str) -> str:
    if not _SETTING_NAME.match(name):
        raise RegistryError(f"invalid server setting name: {name!r}")
    return "'" + str(value).replace("'", "''") + "'"


def _set_port(data_dir: Path, port: int) -> None:
    """Record the port in postgresql.auto.conf (read last, so it wins)."""
    auto = data_dir / "postgresql.auto.conf"
    lines = auto.read_text().splitlines() if auto.exists() else []
    lines = [line for line in lines if not re.match(r"\s*port\s*=", line)]
    lines.append(f"port = '{port}'")
    auto.write_text("\n".join(lines) + "\n")  # rewriting in place keeps the server's ownership
    if os.geteuid() == 0:
        owner = _owner(data_dir)
        os.chown(auto, owner.uid, owner.gid)


# -- ports --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_free(port: int) -> bool:
    """Whether the server could bind ``port`` (SO_REUSEADDR, like the postmaster)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
        return True


# -- running server ---------------------------------------------------------------------


def _is_cluster(data_dir: Path | None) -> bool:
    try:
        return data_dir is not None and (data_dir / "PG_VERSION").is_file()
    except OSError:
        return False


def _live_postmaster_port(data_dir: Path) -> int | None:
    """Port from ``postmaster.pid`` if its pid is a live postgres process, else None."""
    try:
        lines = (data_dir / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by another user
    with contextlib.suppress(OSError):  # guard against a stale pid file and a recycled pid
        if b"postgres" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
    return port


def _pg_ctl(binaries: _Binaries, data_dir: Path, action: str, *args: str) -> None:
    """Run ``pg_ctl -w`` as the data directory's owner; failures carry the log tail."""
    cmd = [str(binaries.bindir / "pg_ctl"), "-w", "-t", str(START_TIMEOUT), "-D", str(data_dir)]
    try:
        result = _run_as(
            _owner(data_dir),
            [*cmd, *args, action],
            timeout=START_TIMEOUT + 15,
            new_session=action == "start",
        )
    except subprocess.TimeoutExpired as exc:
        raise RegistryError(f"pg_ctl {action} timed out.\n{_server_log_tail(data_dir)}") from exc
    if result.returncode != 0:
        raise RegistryError(
            f"pg_ctl {action} failed for {data_dir}:\n{_tail(result.stderr + result.stdout)}\n"
            f"server log:\n{_server_log_tail(data_dir)}"
        )


def _stop(data_dir: Path, *, mode: str) -> None:
    """Stop the postmaster of ``data_dir`` if one is running."""
    if _live_postmaster_port(data_dir) is None:
        return
    try:
        _pg_ctl(find_binaries(), data_dir, "stop", "-m", mode)
    except RegistryError:
        if _live_postmaster_port(data_dir) is not None:
            raise


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _server_log_tail(data_dir: Path) -> str:
    """Tail of pg_ctl's startup log and of the newest collector log file."""
    files = [data_dir / "server.log"]
    with contextlib.suppress(OSError):
        logs = sorted((data_dir / "log").glob("*.log"), key=lambda p: p.stat().st_mtime)
        files += logs[-1:]
    parts = []
    for path in files:
        with contextlib.suppress(OSError):
            parts.append(f"--- {path} ---\n{_tail(path.read_text(errors='replace'))}")
    return "\n".join(parts) or "(no server log)"


# -- SQL ----------------------------------------------------------------------------------


def _connect(state: _State, dbname: str) -> psycopg.Connection:
    import psycopg

    port = _live_postmaster_port(Path(state.data_dir)) or state.port
    return psycopg.connect(
        host=HOST,
        port=port,
        user=state.role,
        password=state.password,
        dbname=dbname,
        autocommit=True,
        connect_timeout=10,
    )


def _ensure_database(state: _State) -> None:
    """Create the registry database and the PostGIS extension in it if missing."""
    import psycopg
    from psycopg import sql

    try:
        with _connect(state, "postgres") as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (state.database,)
            ).fetchone()
            if exists is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(state.database)))
        with _connect(state, state.database) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
    except psycopg.Error as exc:
        raise RegistryError(
            f"cannot prepare database {state.database!r}: {exc}\n"
            f"server log:\n{_server_log_tail(Path(state.data_dir))}"
        ) from exc


def _versions(state: _State) -> tuple[str | None, str | None]:
    """(server_version, PostGIS version) of the running cluster; None where unavailable."""
    import psycopg

    server = postgis = None
    try:
        with _connect(state, state.database) as conn:
            row = conn.execute("SHOW server_version").fetchone()
            server = str(row[0]) if row else None
            with contextlib.suppress(psycopg.Error):
                row = conn.execute("SELECT postgis_lib_version()").fetchone()
                postgis = str(row[0]) if row else None
    except psycopg.Error:
        pass
    return server, postgis
