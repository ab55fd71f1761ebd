"""Bulk-load throughput: ``registry load`` of a bundle against a bare COPY of the same rows.

:func:`measure_load` times the console script on a freshly migrated database.
:func:`measure_copy_floor` then takes the rows that load wrote, empties the tables and
times PostgreSQL ingesting exactly those rows again with ``COPY ... FROM STDIN (FORMAT
binary)`` (psycopg 3, one transaction, commit included), into the same tables with the
same indexes, constraints and triggers, and leaves the data as the load left it. The
floor is what PostgreSQL itself can take on this machine: no parsing, no validation, no
client-side encoding. Load rows/s over floor rows/s is the figure the issue "Performance
at city scale" asks to be at least 0.3.

Both return plain dicts for a JSON results file. ``python -m bench.loadbench URL BUNDLE``
runs both on a database the caller has just migrated and prints them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from bench.database import libpq
from registry.counts import defer_counts, recount, resume_counts
from registry.settings import sqlalchemy_url

# what ``registry load`` writes from a bundle, parents before children (FK order)
DATA_TABLES = (
    "community",
    "footprint",
    "building",
    "address",
    "room",
    "person",
    "residence",
    "address_review",
)
CHUNK = 1 << 20
MIB = 1024 * 1024


def registry_command() -> str:
    """The ``registry`` console script of this environment."""
    local = Path(sys.executable).parent / "registry"
    return str(local) if local.exists() else "registry"


# ---------------------------------------------------------------- the load


def parse_time_v(text: str) -> dict[str, float]:
    """Wall, user and system seconds and peak RSS (KiB) from ``/usr/bin/time -v``."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.strip().rpartition(": ")
        if name == "User time (seconds)":
            found["user_s"] = float(value)
        elif name == "System time (seconds)":
            found["sys_s"] = float(value)
        elif name == "Maximum resident set size (kbytes)":
            found["peak_rss_kib"] = float(value)
        elif name.startswith("Elapsed (wall clock) time"):
            seconds = 0.0
            for part in value.split(":"):
                seconds = seconds * 60 + float(part)
            found["wall_s"] = seconds
    return found


def table_counts(conn: psycopg.Connection, tables: Sequence[str]) -> dict[str, int]:
    counts = {}
    for table in tables:
        query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        row = conn.execute(query).fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


def measure_load(
    database_url: str,
    bundle: Path,
    *,
    registry_home: Path | None = None,
    key_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> dict[str, Any]:
    """Run ``registry load BUNDLE`` under ``/usr/bin/time -v`` against ``database_url``.

    The database should be freshly migrated and empty, so every row counted afterwards
    is a row this load wrote. Without ``key_file`` a new one is made in a temporary
    ``REGISTRY_HOME`` (a fresh database has no key fingerprint yet). Raises
    ``RuntimeError`` when the load fails, with the tail of its output.
    """
    with tempfile.TemporaryDirectory(prefix="loadbench-") as tmp:
        home = registry_home or Path(tmp) / "home"
        child_env = {
            **(env if env is not None else os.environ),
            "DATABASE_URL": database_url,
            "REGISTRY_HOME": str(home),
        }
        if key_file is None:
            from registry.vault import create_key_file

            key_file = Path(tmp) / "keys.json"
            create_key_file(key_file)
        child_env["REGISTRY_KEY_FILE"] = str(key_file)
        timing, output = Path(tmp) / "time.txt", log or Path(tmp) / "load.log"
        command = [registry_command(), "load", str(bundle)]
        started = time.perf_counter()
        with output.open("w", encoding="utf-8") as sink:
            done = subprocess.run(
                ["/usr/bin/time", "-v", "-o", str(timing), *command],
                env=child_env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                check=False,
            )
        seconds = time.perf_counter() - started
        usage = parse_time_v(timing.read_text(encoding="utf-8"))
        if done.returncode != 0:
            tail = output.read_text(encoding="utf-8")[-3000:]
            raise RuntimeError(f"registry load failed ({done.returncode}):\n{tail}")
    with psycopg.connect(libpq(database_url)) as conn:
        rows = {t: n for t, n in table_counts(conn, DATA_TABLES).items() if n}
        files = {
            file: counts
            for file, counts in conn.execute(
                "SELECT file, counts FROM import_log WHERE path = %s ORDER BY id",
                (str(bundle.resolve()),),
            )
        }
    total = sum(rows.values())
    return {
        "command": [Path(command[0]).name, *command[1:]],
        "bundle": str(bundle),
        "seconds": round(seconds, 3),
        "user_s": usage.get("user_s"),
        "sys_s": usage.get("sys_s"),
        "peak_rss_mib": round(usage.get("peak_rss_kib", 0) / 1024, 1),
        "rows": rows,
        "rows_total": total,
        "rows_per_s": round(total / seconds, 1),
        "files": files,
    }


# ---------------------------------------------------------------- the COPY floor


def stored_columns(conn: psycopg.Connection, table: str) -> list[str]:
    """Columns a COPY can write: not dropped, not GENERATED (those the server computes)."""
    rows = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum",
        (table,),
    ).fetchall()
    return [name for (name,) in rows]


def cascade_tables(conn: psycopg.Connection, tables: Sequence[str]) -> list[str]:
    """Tables outside ``tables`` that TRUNCATE ... CASCADE of ``tables`` would empty
    (e.g. counters a trigger maintains, whose rows reference ``community``)."""
    found: list[str] = []
    frontier = list(tables)
    while frontier:
        rows = conn.execute(
            "SELECT DISTINCT conrelid::regclass::text FROM pg_constraint "
            "WHERE contype = 'f' AND confrelid = ANY(%s::regclass[])",
            (frontier,),
        ).fetchall()
        frontier = [t for (t,) in rows if t not in tables and t not in found]
        found.extend(frontier)
    return found


def copy_out(conn: psycopg.Connection, table: str, columns: list[str], path: Path) -> None:
    statement = sql.SQL("COPY {} ({}) TO STDOUT (FORMAT binary)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cursor, cursor.copy(statement) as copy, path.open("wb") as out:
        for data in copy:
            out.write(data)


def copy_in(conn: psycopg.Connection, table: str, columns: list[str], path: Path) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cursor, cursor.copy(statement) as copy, path.open("rb") as src:
        while data := src.read(CHUNK):
            copy.write(data)


def progress(message: str) -> None:
    print(f"loadbench: {message}", file=sys.stderr, flush=True)


def has_count_switch(conn: psycopg.Connection) -> bool:
    """Whether the schema has the counters' bulk switch (migration 0004)."""
    row = conn.execute("SELECT to_regproc('registry_counts_deferred') IS NOT NULL").fetchone()
    return bool(row and row[0])


def analyze(conn: psycopg.Connection, tables: Sequence[str]) -> None:
    for table in tables:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))


def copy_all(
    session: Session, tables: list[str], columns: dict[str, list[str]], dumps: dict[str, Path]
) -> dict[str, float]:
    """COPY each dump back into its table, in order; seconds per table."""
    conn = session.connection().connection.driver_connection
    seconds = {}
    for table in tables:
        started = time.perf_counter()
        copy_in(conn, table, columns[table], dumps[table])
        seconds[table] = round(time.perf_counter() - started, 3)
        progress(f"COPY {table}: {seconds[table]} s")
    return seconds


def measure_copy_floor(database_url: str, *, bulk_switch: bool = True) -> dict[str, Any]:
    """Time a bare binary COPY of the rows the load wrote, back into the same tables.

    Every non-empty table of :data:`DATA_TABLES` is dumped (stored columns only: a
    GENERATED column such as ``footprint.anchor`` is computed again by the server, as it
    was for the load) and TRUNCATEd in a committed transaction of its own. Then, timed:
    one transaction of ``COPY ... FROM STDIN (FORMAT binary)`` per table in FK order,
    commit included, with every index and constraint (FK checks too) in place.

    Triggers fire as they would for any COPY. With ``bulk_switch`` (the default) the
    transaction first sets ``registry.defer_counts``, the switch migration 0004 gives bulk
    writers and ``registry load`` uses, so the counter triggers return at once; the one
    recount they then owe is timed apart (``recount_seconds``) and not in ``seconds``,
    which makes the floor stricter than the load, which pays its recount. Without the
    switch each COPY statement's triggers do their full work, which for a district-sized
    statement can take far longer than the COPY itself.

    Tables the cascade empties that no trigger refilled are restored afterwards,
    untimed, and every copied table is ANALYZEd as the load left it, so the database
    ends with the load's data (tile versions, which only grow, grow again).
    """
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with tempfile.TemporaryDirectory(prefix="copyfloor-") as tmp, Session(engine) as session:
            return copy_floor(session, Path(tmp), bulk_switch)
    finally:
        engine.dispose()


def copy_floor(session: Session, tmp: Path, bulk_switch: bool) -> dict[str, Any]:
    conn = session.connection().connection.driver_connection
    counts = {t: n for t, n in table_counts(conn, DATA_TABLES).items() if n}
    tables = list(counts)
    bystanders = [t for t in cascade_tables(conn, tables) if table_counts(conn, [t])[t]]
    columns = {t: stored_columns(conn, t) for t in tables + bystanders}
    dumps = {t: tmp / f"{t}.bin" for t in columns}
    started = time.perf_counter()
    for table, path in dumps.items():
        copy_out(conn, table, columns[table], path)
    dump_seconds = time.perf_counter() - started
    switch = bulk_switch and has_count_switch(conn)
    names = sql.SQL(", ").join(map(sql.Identifier, tables))
    conn.execute(sql.SQL("TRUNCATE {} CASCADE").format(names))
    session.commit()

    recount_seconds = 0.0
    started = time.perf_counter()
    try:
        if switch:
            defer_counts(session)
        per_table = copy_all(session, tables, columns, dumps)
        if switch:
            recount_started = time.perf_counter()
            analyze(conn, tables)  # as the load does: the recount's plans need them
            recount(session)
            resume_counts(session)
            recount_seconds = time.perf_counter() - recount_started
        session.commit()
    except BaseException:
        session.rollback()
        restore(session, tables + bystanders, columns, dumps, switch)
        raise
    seconds = time.perf_counter() - started - recount_seconds

    conn = session.connection().connection.driver_connection
    restored = [t for t in bystanders if not table_counts(conn, [t])[t]]
    for table in restored:
        copy_in(conn, table, columns[table], dumps[table])
    analyze(conn, tables + restored)
    session.commit()
    after = table_counts(session.connection().connection.driver_connection, tables)
    if after != counts:
        raise RuntimeError(f"COPY floor left {after}, expected {counts}")
    total = sum(counts.values())
    return {
        "seconds": round(seconds, 3),
        "rows": counts,
        "rows_total": total,
        "rows_per_s": round(total / seconds, 1),
        "seconds_by_table": per_table,
        "bulk_switch": switch,
        "recount_seconds": round(recount_seconds, 3),
        "bytes": sum(p.stat().st_size for t, p in dumps.items() if t in counts),
        "dump_seconds": round(dump_seconds, 3),
        "trigger_refilled": [t for t in bystanders if t not in restored],
        "restored_untimed": restored,
    }


def restore(
    session: Session,
    tables: list[str],
    columns: dict[str, list[str]],
    dumps: dict[str, Path],
    switch: bool,
) -> None:
    """Put the dumped rows back after a failed timing, so the load's data is not lost."""
    conn = session.connection().connection.driver_connection
    empty = [t for t in tables if not table_counts(conn, [t])[t]]
    if switch:
        defer_counts(session)
    copy_all(session, [t for t in empty if t in DATA_TABLES], columns, dumps)
    if switch:
        analyze(conn, tables)
        recount(session)
    conn = session.connection().connection.driver_connection
    for table in empty:
        if table not in DATA_TABLES and not table_counts(conn, [table])[table]:
            copy_in(conn, table, columns[table], dumps[table])
    session.commit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database_url", help="a freshly migrated, empty database")
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--key-file", type=Path, help="identity keys the database expects")
    parser.add_argument(
        "--full-triggers",
        action="store_true",
        help="time the floor without the counters' bulk switch (see measure_copy_floor)",
    )
    args = parser.parse_args(argv)
    load = measure_load(args.database_url, args.bundle, key_file=args.key_file)
    floor = measure_copy_floor(args.database_url, bulk_switch=not args.full_triggers)
    ratio = load["rows_per_s"] / floor["rows_per_s"]
    print(json.dumps({"load": load, "copy_floor": floor, "ratio": round(ratio, 3)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
