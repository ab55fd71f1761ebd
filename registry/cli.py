"""The ``registry`` command line: a thin adapter over the registry package.

Each command owns its transaction. Expected failures (bad input, no database) print a
clear message and exit non-zero; they never show a traceback.
"""

from __future__ import annotations

import datetime as dt
import getpass
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import text

from registry import audit, migrate, output
from registry.cli_access import audit_command, token_app, users_app
from registry.cli_buildings import buildings_app
from registry.cli_checks import checks_command
from registry.cli_common import console, err, migrated_engine, reports_errors
from registry.cli_history import changes_command, history_command
from registry.cli_keys import keys_app
from registry.cli_report import report_command
from registry.db import make_engine, transaction
from registry.embedded import EmbeddedCluster
from registry.history import parse_valid_from, rates_moment
from registry.rates import LEVELS, compute_rates
from registry.settings import RegistryError, Settings, api_password, resolve_database_url
from registry.vault import create_key_file

app = typer.Typer(
    help="一标三实 registry: standard addresses, buildings, rooms and residents on the map.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The database: embedded PostGIS cluster and migrations.")
app.add_typer(db_app, name="db")
review_app = typer.Typer(help="The review queue of free-text addresses not placed automatically.")
app.add_typer(review_app, name="review")
app.add_typer(users_app, name="users")
app.add_typer(token_app, name="token")
app.add_typer(keys_app, name="keys")
app.add_typer(buildings_app, name="buildings")
app.command("audit")(audit_command)
app.command("report")(report_command)
app.command("checks")(checks_command)
app.command("history")(history_command)
app.command("changes")(changes_command)

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_BUNDLE = REPO_ROOT / "data" / "fixtures" / "guanggu"


# ---------------------------------------------------------------- db


@db_app.command("up")
@reports_errors
def db_up() -> None:
    """Start the embedded PostGIS in $REGISTRY_HOME (default ./.registry) and migrate it."""
    settings = Settings()
    url = EmbeddedCluster(settings.home_dir).up()
    prepare_database(settings, url)
    console.print(url, highlight=False)


def prepare_database(settings: Settings, url: str) -> None:
    """Migrate to head, make sure the identity key file exists, and let the API's role
    (registry_api) sign in with the password in $REGISTRY_HOME/api-password."""
    if create_key_file(settings.key_path):
        err.print(f"created key file {settings.key_path} (mode 600): back it up", highlight=False)
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        if not settings.api_database_url:  # else the deployment manages the API's login
            with transaction(engine) as session:
                session.execute(
                    text("SELECT registry_set_api_password(:password)"),
                    {"password": api_password(settings, create=True)},
                )
    finally:
        engine.dispose()


@db_app.command("migrate")
@reports_errors
def db_migrate() -> None:
    """Migrate the database in use (DATABASE_URL or the embedded cluster) to the latest schema."""
    settings = Settings()
    prepare_database(settings, resolve_database_url(settings))
    console.print("database is at the latest schema")


@db_app.command("status")
@reports_errors
def db_status() -> None:
    """Show the embedded cluster's state and which database commands will use."""
    settings = Settings()
    status = EmbeddedCluster(settings.home_dir).status()
    console.print(f"home:       {settings.home_dir}", highlight=False)
    console.print(f"embedded:   {'running' if status.running else 'stopped'}", highlight=False)
    if status.data_dir:
        console.print(f"data dir:   {status.data_dir}", highlight=False)
    if status.running:
        console.print(f"server:     PostgreSQL {status.server_version}", highlight=False)
        console.print(f"postgis:    {status.postgis_version}", highlight=False)
        console.print(f"url:        {status.url}", highlight=False)
    using = "DATABASE_URL" if settings.database_url else "embedded cluster"
    console.print(f"commands use: {using}", highlight=False)


@db_app.command("down")
@reports_errors
def db_down() -> None:
    """Stop the embedded cluster (its data stays in $REGISTRY_HOME)."""
    EmbeddedCluster(Settings().home_dir).down()
    console.print("embedded cluster stopped")


# ---------------------------------------------------------------- load


@app.command()
@reports_errors
def load(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (see docs/bundle.md).")],
    partial: Annotated[
        bool, typer.Option(help="Write the valid rows; write refused rows to --rejects.")
    ] = False,
    rejects: Annotated[
        Path, typer.Option(help="Where --partial writes refused rows and reasons.")
    ] = Path("rejects.csv"),
    valid_from: Annotated[
        str | None,
        typer.Option(
            "--valid-from",
            help="When what the bundle changes became true (a survey date, YYYY-MM-DD or "
            "ISO 8601), for the history; default: bundle.json's valid_from, else now.",
        ),
    ] = None,
) -> None:
    """Validate a bundle and load it: all or nothing unless --partial."""
    settings = Settings()
    when = parse_valid_from(valid_from) if valid_from else None
    report = load_in_transaction(migrated_engine(settings), settings, bundle, partial, when)
    output.print_load_report(report, console, err)
    if partial and report.errors:
        count = output.write_rejects(report, rejects)
        err.print(f"{count} rows refused: see {rejects}", highlight=False)
    if not report.written:
        raise typer.Exit(1)


def load_in_transaction(
    engine,
    settings: Settings,
    bundle: Path,
    partial: bool = False,
    valid_from: dt.datetime | None = None,
):
    """Load ``bundle`` in one transaction, committed only if the load wrote it.

    The identity keys are needed (and checked against the database) only when the
    bundle has residents or employees.
    """
    from registry.bundle.load import load_bundle
    from registry.vault import bind_vault, load_vault

    needs_keys = any((bundle / name).exists() for name in ("residents.csv", "employees.csv"))
    vault = load_vault(settings.key_path) if needs_keys else None
    with transaction(engine) as session:
        if vault is not None:
            bind_vault(session, vault, settings.key_path)
        report = load_bundle(session, bundle, vault, partial=partial, valid_from=valid_from)
        if not report.written:
            session.rollback()
    return report


# ---------------------------------------------------------------- rates


@app.command()
@reports_errors
def rates(
    level: Annotated[str, typer.Option(help=f"One of {', '.join(LEVELS)}.")] = "community",
    code: Annotated[
        str | None, typer.Option(help="Only communities whose code starts with this.")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            help="The rates at the end of this date (YYYY-MM-DD): a past date reads the "
            "register's history, so later edits do not change it.",
        ),
    ] = None,
    known_at: Annotated[
        str | None,
        typer.Option(
            "--known-at",
            help="Only what the register had recorded by this time (ISO 8601): reproduces "
            "figures computed then.",
        ),
    ] = None,
    format: Annotated[str, typer.Option(help="table, json or csv.")] = "table",
    recount: Annotated[
        bool,
        typer.Option(
            help="Compute from the rate definitions instead of the kept counters "
            "(slower; the numbers must be the same)."
        ),
    ] = False,
) -> None:
    """Per-community on-map, coverage, labelling and population rates (docs/rates.md)."""
    if format not in output.RATE_FORMATS:
        raise RegistryError(f"--format must be one of {', '.join(output.RATE_FORMATS)}")
    try:
        date = dt.date.fromisoformat(as_of) if as_of else None
    except ValueError:
        raise RegistryError(f"--as-of {as_of!r} is not a date (YYYY-MM-DD)") from None
    at = rates_moment(date, known_at)
    engine = migrated_engine(Settings())
    with transaction(engine) as session:
        rows = compute_rates(session, level, code, date, recount, at=at)  # type: ignore[arg-type]
    output.print_rates(rows, format, console)


# ---------------------------------------------------------------- serve


@app.command()
@reports_errors
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
) -> None:
    """Serve the OGC API, tiles, reports and exports over HTTP (uvicorn)."""
    run_server(host, port, workers)


def run_server(host: str, port: int, workers: int = 1) -> None:
    """Check the database first, so a missing or unmigrated one is a message, not a crash."""
    import uvicorn

    from api.listening import listening_socket
    from api.settings import ApiSettings

    engine = migrated_engine(ApiSettings())
    engine.dispose()
    try:
        sock = listening_socket(host, port)
    except OSError as exc:
        raise RegistryError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    console.print(f"listening on http://{host}:{port} ({workers} worker(s))", highlight=False)
    with sock:
        uvicorn.run(
            "api:create_app",
            factory=True,
            fd=sock.fileno(),
            workers=workers,
            log_level="info",
            proxy_headers=True,
        )


# ---------------------------------------------------------------- export


@app.command()
@reports_errors
def export(
    collection: Annotated[
        str, typer.Argument(help="communities, buildings, addresses, footprints or coverage-gaps.")
    ],
    file: Annotated[Path, typer.Argument(help="File to write (replaced only on success).")],
    crs: Annotated[
        str | None,
        typer.Option(help="Output CRS, e.g. EPSG:4547 (default EPSG:4490; GeoJSON: CRS84)."),
    ] = None,
    code: Annotated[
        str | None, typer.Option(help="Only communities whose code starts with these digits.")
    ] = None,
    format: Annotated[
        str | None,
        typer.Option(help="gpkg, fgb, geojson or csv (default: from FILE's suffix)."),
    ] = None,
) -> None:
    """Export a collection to GeoPackage, FlatGeobuf, GeoJSON or CSV (UTF-8 with BOM, WKT).

    FlatGeobuf leaves out features without geometry (its spatial index cannot hold them).
    """
    from registry.export import export_spec, format_of, replacing, write_export

    spec = export_spec(collection, format_of(file, format), crs, code)
    engine = migrated_engine(Settings())
    with replacing(file) as temporary, transaction(engine) as session:
        count = write_export(session, spec, temporary)
        audit.record(
            session,
            None,
            "export",
            user_name=f"cli:{getpass.getuser()}",
            detail={"collection": collection, "file": str(file), "code": code, "features": count},
        )
    console.print(f"wrote {count} features to {file}", highlight=False)
    if spec.drops_missing_geometry:
        err.print("FlatGeobuf leaves out features without geometry", highlight=False)


# ---------------------------------------------------------------- address matching


@app.command()
@reports_errors
def match(
    file: Annotated[Path, typer.Argument(help="CSV file (UTF-8 or GB18030) with addresses.")],
    column: Annotated[str, typer.Option(help="The column holding the free-text address.")] = (
        "address"
    ),
    out: Annotated[
        Path | None, typer.Option(help="Output CSV (default: FILE with .matched.csv).")
    ] = None,
    queue: Annotated[
        bool, typer.Option(help="Put every row not placed into the review queue.")
    ] = False,
) -> None:
    """Match free-text addresses to standard addresses and rooms (docs/address-matching.md).

    Adds address_code, room_id, score, method and status (matched | review | unmatched).
    Only an exact building-and-room match is placed automatically.
    """
    from rich.progress import Progress

    from registry.address.batch import match_csv

    if not file.is_file():
        raise RegistryError(f"no file {file}")
    out = out or file.with_name(file.stem + ".matched.csv")
    engine = migrated_engine(Settings())
    with transaction(engine) as session, Progress(console=err, transient=True) as bar:
        task = bar.add_task("matching", total=None)
        counts = match_csv(
            session,
            file,
            column,
            out,
            queue_source=f"match:{file.name}" if queue else None,
            progress=lambda n: bar.advance(task, n),
        )
    total = sum(counts.values())
    summary = ", ".join(f"{counts[s]} {s}" for s in ("matched", "review", "unmatched"))
    console.print(f"wrote {out}: {total} rows, {summary}", highlight=False)


@review_app.command("list")
@reports_errors
def review_list(
    status: Annotated[str, typer.Option(help="open, accepted or rejected.")] = "open",
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    after: Annotated[int, typer.Option(help="Items after this id.")] = 0,
    format: Annotated[str, typer.Option(help="table or json.")] = "table",
) -> None:
    """Review items with their best candidates."""
    from registry.address.review import list_reviews

    with transaction(migrated_engine(Settings())) as session:
        items = list_reviews(session, status, after, limit)
    output.print_reviews(items, format, console)


@review_app.command("accept")
@reports_errors
def review_accept(
    review_id: Annotated[int, typer.Argument(help="Review item id.")],
    by: Annotated[str, typer.Option(help="Who decides (recorded).")],
    candidate: Annotated[int | None, typer.Option(help="Candidate number, from 1.")] = None,
    room: Annotated[str | None, typer.Option(help="A room id, instead of a candidate.")] = None,
    address: Annotated[str | None, typer.Option(help="A standard address code.")] = None,
    note: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Accept a candidate (or a room); a linked resident moves into that room."""
    from registry.address.review import accept

    with transaction(migrated_engine(Settings())) as session:
        item = accept(
            session,
            review_id,
            by,
            candidate=candidate,
            room_id=room,
            address_code=address,
            note=note,
        )
    console.print(
        f"review {item['id']} accepted by {item['resolved_by']}: "
        f"room {item['room_id'] or '-'}, address {item['address_code'] or '-'}",
        highlight=False,
    )


@review_app.command("reject")
@reports_errors
def review_reject(
    review_id: Annotated[int, typer.Argument(help="Review item id.")],
    by: Annotated[str, typer.Option(help="Who decides (recorded).")],
    note: Annotated[str | None, typer.Option(help="Why.")] = None,
) -> None:
    """Reject an item: nothing is placed."""
    from registry.address.review import reject

    with transaction(migrated_engine(Settings())) as session:
        item = reject(session, review_id, by, note)
    console.print(f"review {item['id']} rejected by {item['resolved_by']}", highlight=False)


# ---------------------------------------------------------------- synth and demo


@app.command()
@reports_errors
def synth(
    out_dir: Annotated[Path, typer.Argument(help="Directory to write the bundle to.")],
    communities: Annotated[int, typer.Option(min=1, help="Number of communities.")] = 10,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same bundle.")] = 1,
) -> None:
    """Write a deterministic synthetic city bundle of any size."""
    from registry.synth import write_synthetic_bundle

    summary = write_synthetic_bundle(out_dir, communities, seed)
    console.print(f"wrote {out_dir}: {summary}", highlight=False)


@app.command()
@reports_errors
def demo(
    bundle: Annotated[
        Path, typer.Option(help="Bundle to load (default: the 光谷 sample).")
    ] = SAMPLE_BUNDLE,
    serve: Annotated[
        bool, typer.Option(help="Serve the API and map afterwards (until Ctrl-C).")
    ] = True,
    host: Annotated[str, typer.Option(help="Address the API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port the API listens on.")] = 8000,
) -> None:
    """Start the embedded PostGIS, load the sample bundle, print its rates and serve the API."""
    settings = Settings()
    if not bundle.is_dir():
        raise RegistryError(f"sample bundle {bundle} not found: pass --bundle DIR")
    if settings.database_url:
        url = resolve_database_url(settings)
        console.print("using DATABASE_URL", highlight=False)
    else:
        url = EmbeddedCluster(settings.home_dir).up()
        console.print(f"embedded PostGIS running in {settings.home_dir}", highlight=False)
    prepare_database(settings, url)
    engine = make_engine(url)
    report = load_in_transaction(engine, settings, bundle)
    output.print_load_report(report, console, err, max_problems=10)
    if not report.written:
        raise typer.Exit(1)
    with transaction(engine) as session:
        for level in ("community", "street", "city"):
            output.print_rates(compute_rates(session, level), "table", console)  # type: ignore[arg-type]
        demo_password, demo_token = demo_account(session)
    engine.dispose()
    if not serve:
        console.print(
            "\nNext: `registry serve`, `registry rates --format json`, "
            "`registry db status`, `registry db down`.",
            highlight=False,
        )
        return
    print_urls(f"http://{host}:{port}", demo_password, demo_token)
    run_server(host, port)


DEMO_ACCOUNT = "demo"


def demo_account(session) -> tuple[str, str]:
    """An ``admin`` account for trying the demo: a fresh password and token on each run
    (the previous ones stop working), printed because nobody else can see them."""
    import secrets

    from registry import auth
    from registry.models import Account

    password = secrets.token_urlsafe(9)
    if session.get(Account, DEMO_ACCOUNT) is None:
        auth.add_account(session, DEMO_ACCOUNT, "admin", [], password)
    else:
        auth.set_password(session, DEMO_ACCOUNT, password)
        auth.revoke_all(session, DEMO_ACCOUNT)
    return password, auth.create_token(session, DEMO_ACCOUNT, auth.parse_duration("7d"))


def print_urls(root: str, password: str, token: str) -> None:
    console.print("\nServing the registry API (Ctrl-C to stop):", highlight=False)
    for what, path in (
        ("officers' web map", "/map"),
        ("landing page (OGC API)", "/"),
        ("collections", "/collections"),
        ("coverage report and map", "/reports/coverage?f=html"),
        ("vector tiles (TileJSON)", "/tiles/buildings,footprints.json"),
        ("API definition", "/api"),
    ):
        console.print(f"  {what:26} {root}{path}", highlight=False)
    console.print(
        f"\nSign in at {root}/login as {DEMO_ACCOUNT} with password {password}\n"
        f"or send the header  Authorization: Bearer {token}  (valid 7 days):",
        highlight=False,
    )
    console.print(f'  curl -H "Authorization: Bearer {token}" {root}/collections', highlight=False)
    console.print(
        f'  QGIS / GDAL: GDAL_HTTP_HEADERS="Authorization: Bearer {token}" ogrinfo OAPIF:{root}',
        highlight=False,
    )
    console.print(
        "  More accounts: registry users add NAME --role officer --jurisdiction CODE; "
        "registry token create NAME",
        highlight=False,
    )
