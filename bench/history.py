"""``python -m bench.history --scale district``: what the history and the change feed cost.

Migration 0010 versions every change to the eight versioned tables into ``<table>_history``
and appends it to the change feed (docs/history.md). This benchmark measures what that
costs and what reading the past costs, on this benchmark's own embedded cluster
(``.bench/history/pg-home``) and its own databases ``history_<scale>_on`` and
``history_<scale>_off`` (the history triggers disabled there, as the owner). Figures, not
verdicts (no peer keeps a bitemporal history):

1. load: the synthetic bundle loaded by ``load_bundle`` in one transaction (as ``registry
   load`` does, valid from a past date) into a fresh database with the triggers on and
   into one with them off, interleaved, ``--repeat`` times; history and feed sizes;
2. edits: ``--edits`` single-row UPDATE transactions of buildings (floors + 1) and of
   residences (moved out today), on and off interleaved: ms per transaction, commit
   included;
3. rates for the city, a district, a street and a community: from the counters, recounted,
   and from the history now and at a past date; the history as of now must equal the
   counters row for row (the run fails otherwise);
4. the feed: pages of 1,000 at the start, middle and end of the load's one transaction,
   with and without data, the whole feed in pages of 10,000, and pages over the edits'
   many small transactions;
5. an items page of 1,000 buildings in a bbox, now and at a past moment.

The heavy statements are also run under ``EXPLAIN (ANALYZE, FORMAT JSON)`` (through
``auto_explain`` for the SQL functions, whose inner plan EXPLAIN does not show); the JSON
keeps each plan's nodes with the most time of their own. Prints the tables and writes
``bench/results/history-<scale>.{json,md}``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from bench import peers
from bench.__main__ import SCALES as BENCH_SCALES
from bench.__main__ import machine
from bench.database import (
    cluster,
    fresh_database,
    libpq,
    server_facts,
    synthesize,
    vacuum_analyze,
)
from bench.fieldwork import OTHERS_PCT, busy, others_seen
from bench.httpload import percentile
from registry.bundle.load import load_bundle
from registry.changes import changes_after, page_query
from registry.collections import BUILDINGS
from registry.db import make_engine, transaction
from registry.features import Bbox, ItemsQuery, count_select, items_select, page_select
from registry.history import Moment, moment
from registry.models import VERSIONED
from registry.rates import compute_rates
from registry.vault import bind_vault, create_key_file, load_vault

SCALES = {name: BENCH_SCALES[name] for name in ("small", "district")}
DEFAULT_WORKDIR = peers.REPO_ROOT / ".bench" / "history"
RESULTS = Path(__file__).resolve().parent / "results"
TRIGGERS = ("history_insert", "history_update", "history_delete")
STATES = ("on", "off")
FEED_PAGE = 1_000
WHOLE_FEED_PAGE = 10_000
# (name, page size, with data): the whole feed read by a client catching up
WHOLE_FEED_READS = (
    ("whole_without_data", WHOLE_FEED_PAGE, False),
    ("whole_with_data", WHOLE_FEED_PAGE, True),
    ("whole_with_data_pages_of_1000", FEED_PAGE, True),
)
EDITS = {
    "building": "UPDATE building SET floors = coalesce(floors, 0) + 1 WHERE id = %s",
    "residence": (
        "UPDATE residence SET moved_out = greatest(current_date, moved_in) WHERE id = %s"
    ),
}
EDIT_KEYS = {
    "building": "SELECT id FROM building ORDER BY id",
    "residence": "SELECT id FROM residence WHERE moved_out IS NULL ORDER BY id",
}


def log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    parser.add_argument("--scale", choices=SCALES, default="district")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--repeat", type=int, default=2, help="loads with triggers on and off")
    parser.add_argument("--edits", type=int, default=300, help="transactions per table and state")
    parser.add_argument("--runs", type=int, default=3, help="runs per rates or features figure")
    parser.add_argument("--feed-runs", type=int, default=5, help="runs per feed page figure")
    parser.add_argument(
        "--valid-days", type=int, default=180, help="the load is valid from this many days ago"
    )
    parser.add_argument(
        "--past-days", type=int, default=90, help="the past moment read: this many days ago"
    )
    parser.add_argument(
        "--max-pages", type=int, default=0, help="pages per whole-feed read (0: all)"
    )
    parser.add_argument("--no-explain", action="store_true", help="skip the plans")
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- measuring


def ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    began = time.perf_counter()
    result = fn()
    return time.perf_counter() - began, result


def summary_ms(seconds: Sequence[float]) -> dict[str, Any]:
    values = sorted(ms(s) for s in seconds)
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50),
        "p95_ms": percentile(values, 95),
        "min_ms": values[0] if values else 0.0,
        "max_ms": values[-1] if values else 0.0,
    }


def own_time(node: dict[str, Any]) -> float:
    """A plan node's time of its own: its total over its loops less its children's."""
    total = node.get("Actual Total Time", 0.0) * node.get("Actual Loops", 1)
    children = sum(
        c.get("Actual Total Time", 0.0) * c.get("Actual Loops", 1) for c in node.get("Plans", [])
    )
    return max(0.0, total - children)


def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", []):
        yield from walk(child)


def describe_node(node: dict[str, Any]) -> str:
    words = [node["Node Type"]]
    for name, prefix in (("Index Name", "using "), ("Relation Name", "on "), ("Alias", "as ")):
        if node.get(name):
            words.append(prefix + str(node[name]))
    if node.get("Function Name"):
        words.append(f"of {node['Function Name']}()")
    rows = node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
    return f"{' '.join(words)}: {round(own_time(node), 1)} ms own, {rows:.0f} rows"


def key_lines(plan: dict[str, Any], top: int = 4) -> dict[str, Any]:
    """A plan's execution time and the nodes with the most time of their own."""
    nodes = sorted(walk(plan["Plan"]), key=own_time, reverse=True)
    return {
        "execution_ms": round(plan.get("Execution Time", plan["Plan"]["Actual Total Time"]), 1),
        "key_lines": [describe_node(n) for n in nodes[:top]],
        "seq_scans": sorted(
            {n["Relation Name"] for n in walk(plan["Plan"]) if n["Node Type"] == "Seq Scan"}
        ),
    }


def explain_select(engine: Engine, statement: Select, params: dict[str, Any]) -> dict[str, Any]:
    """``EXPLAIN (ANALYZE, FORMAT JSON)`` of a SQLAlchemy statement with ``params``."""
    compiled = statement.compile(dialect=engine.dialect)
    bound = compiled.construct_params(params)
    with engine.connect() as conn:
        raw = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {compiled}", bound).scalar()
        conn.rollback()
    plan = (json.loads(raw) if isinstance(raw, str) else raw)[0]
    return key_lines(plan)


def explain_nested(
    database_url: str, run: Callable[[Session], Any], min_ms: float = 100.0
) -> list[dict[str, Any]]:
    """The plans of the statements ``run`` executes, nested ones (a SQL function's body)
    included, that took ``min_ms`` or more: ``auto_explain`` sends them as notices."""
    notices: list[str] = []
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            conn = session.connection().connection.driver_connection
            conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
            for setting in (
                "LOAD 'auto_explain'",
                f"SET auto_explain.log_min_duration = {int(min_ms)}",
                "SET auto_explain.log_analyze = on",
                "SET auto_explain.log_nested_statements = on",
                "SET auto_explain.log_format = json",
                "SET auto_explain.log_level = notice",
                "SET client_min_messages = notice",
            ):
                conn.execute(setting)
            run(session)
            session.rollback()
    finally:
        engine.dispose()
    plans = []
    for notice in notices:
        _, _, body = notice.partition("plan:")
        try:
            plan = json.loads(body)
        except ValueError:
            continue
        query = " ".join(plan.get("Query Text", "").split())[:160]
        plans.append({**key_lines(plan), "query": query})
    return sorted(plans, key=lambda p: p["execution_ms"], reverse=True)


# ---------------------------------------------------------------- 1. the load


def set_history(database_url: str, enabled: bool) -> None:
    """Enable or disable the history triggers of the versioned tables (as the owner)."""
    action = "ENABLE" if enabled else "DISABLE"
    with psycopg.connect(libpq(database_url), autocommit=True) as conn:
        for table in VERSIONED:
            for trigger in TRIGGERS:
                conn.execute(
                    sql.SQL("ALTER TABLE {} " + action + " TRIGGER {}").format(
                        sql.Identifier(table), sql.Identifier(trigger)
                    )
                )


def load(database_url: str, bundle: Path, key_file: Path, valid_from: dt.date) -> float:
    """Seconds to load ``bundle`` with ``load_bundle`` in one transaction, commit included,
    as ``registry load`` does (registry/cli.py load_in_transaction)."""
    engine = make_engine(database_url)
    try:
        vault = load_vault(key_file)
        began = time.perf_counter()
        with transaction(engine) as session:
            bind_vault(session, vault, key_file)
            report = load_bundle(session, bundle, vault, valid_from=valid_from)
            if not report.written:
                raise RuntimeError(f"the load wrote nothing: {report.validation}")
        return time.perf_counter() - began
    finally:
        engine.dispose()


def sizes(database_url: str) -> dict[str, Any]:
    """Rows and total bytes (indexes and TOAST included) of each versioned table and its
    history, and of the feed."""
    out: dict[str, Any] = {"tables": {}}
    with psycopg.connect(libpq(database_url)) as conn:

        def measure(table: str) -> tuple[int, int]:
            ident = sql.Identifier(table)
            rows = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()[0]
            size = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (table,))
            return int(rows), int(size.fetchone()[0])

        for table in VERSIONED:
            rows, size = measure(table)
            history_rows, history_size = measure(f"{table}_history")
            out["tables"][table] = {
                "rows": rows,
                "bytes": size,
                "history_rows": history_rows,
                "history_bytes": history_size,
                "ratio": round(history_size / size, 2) if size else None,
            }
        for table in ("registry_change", "registry_txn"):
            rows, size = measure(table)
            out[table] = {"rows": rows, "bytes": size}
        out["base_bytes"] = sum(t["bytes"] for t in out["tables"].values())
        out["history_bytes"] = sum(t["history_bytes"] for t in out["tables"].values())
        out["feed_bytes"] = out["registry_change"]["bytes"] + out["registry_txn"]["bytes"]
        out["database_bytes"] = int(
            conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
        )
    return out


def measure_loads(
    admin_url: str, bundle: Path, key_file: Path, args: argparse.Namespace
) -> tuple[dict[str, Any], dict[str, str]]:
    """Loads into fresh databases, triggers on and off, interleaved; the last ones stay."""
    valid_from = dt.date.today() - dt.timedelta(days=args.valid_days)
    runs: dict[str, list[float]] = {"on": [], "off": []}
    urls: dict[str, str] = {}
    for k in range(args.repeat):
        for state in STATES:
            url = fresh_database(admin_url, f"history_{args.scale}_{state}")
            set_history(url, state == "on")
            seconds = load(url, bundle, key_file, valid_from)
            runs[state].append(seconds)
            urls[state] = url
            log(f"load {k + 1}/{args.repeat}, history {state}: {seconds:.1f} s")
    median = {state: statistics.median(values) for state, values in runs.items()}
    result: dict[str, Any] = {
        "valid_from": valid_from.isoformat(),
        "order": [s for _ in range(args.repeat) for s in STATES],
        "seconds": {state: [round(s, 2) for s in values] for state, values in runs.items()},
        "median_s": {state: round(value, 2) for state, value in median.items()},
        "ratio_on_off": round(median["on"] / median["off"], 2),
    }
    result["vacuum_analyze_s"] = {state: vacuum_analyze(urls[state]) for state in STATES}
    result["sizes"] = sizes(urls["on"])
    result["sizes_off"] = {
        "base_bytes": sizes(urls["off"])["base_bytes"],
    }
    return result, urls


# ---------------------------------------------------------------- 2. edits


def latest_seq(database_url: str) -> int:
    with psycopg.connect(libpq(database_url)) as conn:
        return int(conn.execute("SELECT last_seq FROM registry_clock").fetchone()[0])


def edit_keys(urls: dict[str, str], table: str, n: int, seed: int) -> list[Any]:
    """``n`` keys of ``table`` present in both databases, the same for both."""
    found = []
    for url in urls.values():
        with psycopg.connect(libpq(url)) as conn:
            found.append({row[0] for row in conn.execute(EDIT_KEYS[table])})
    common = sorted(set.intersection(*found))
    return random.Random(seed).sample(common, min(n, len(common)))


def measure_edits(urls: dict[str, str], args: argparse.Namespace) -> dict[str, Any]:
    """Single-row UPDATE transactions, commit included, alternating on and off (which
    goes first alternates too), on one connection per database."""
    result: dict[str, Any] = {"feed_before": latest_seq(urls["on"])}
    conns = {state: psycopg.connect(libpq(urls[state])) for state in STATES}
    try:
        for table, statement in EDITS.items():
            keys = edit_keys(urls, table, args.edits, args.seed)
            seconds: dict[str, list[float]] = {"on": [], "off": []}
            for i, key in enumerate(keys):
                for state in STATES if i % 2 == 0 else STATES[::-1]:
                    conn = conns[state]
                    began = time.perf_counter()
                    changed = conn.execute(statement, (key,)).rowcount
                    conn.commit()
                    seconds[state].append(time.perf_counter() - began)
                    if changed != 1:
                        raise RuntimeError(f"{table} {key}: {changed} rows updated, not 1")
            entry: dict[str, Any] = {"statement": statement}
            for state in STATES:
                entry[state] = summary_ms(seconds[state][1:])  # the first compiles the triggers
                entry[state]["first_ms"] = ms(seconds[state][0]) if seconds[state] else None
            entry["ratio_p50"] = round(entry["on"]["p50_ms"] / entry["off"]["p50_ms"], 2)
            result[table] = entry
            log(
                f"edits of {table}: p50 {entry['on']['p50_ms']} ms on, "
                f"{entry['off']['p50_ms']} ms off"
            )
    finally:
        for conn in conns.values():
            conn.close()
    result["feed_after"] = latest_seq(urls["on"])
    return result


# ---------------------------------------------------------------- 3. rates


def codes(engine: Engine) -> dict[str, str]:
    """A district, a street and a community from the middle of the data."""
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(
            "SELECT district_code, street_code, code FROM community ORDER BY code"
        ).all()
    district, street, community = rows[len(rows) // 2]
    return {"district": district, "street": street, "community": community}


def rates_runs(
    engine: Engine, runs: int, level: Any, code: str | None, kwargs: dict[str, Any]
) -> tuple[list[float], list[dict[str, Any]]]:
    """Seconds of ``runs`` compute_rates calls, each in its own session, and the rows."""
    seconds, rows = [], []
    for _ in range(runs):
        with Session(engine) as session:
            took, rows = timed(lambda s=session: compute_rates(s, level, code, **kwargs))
        seconds.append(took)
    return seconds, rows


def measure_rates(database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    engine = make_engine(database_url)
    now = Moment(valid=dt.datetime.now(dt.UTC))
    past = moment(dt.date.today() - dt.timedelta(days=args.past_days))
    assert past is not None
    picked = codes(engine)
    scopes = {
        "city": ("community", None),
        "district": ("district", picked["district"]),
        "street": ("street", picked["street"]),
        "community": ("community", picked["community"]),
    }
    methods: dict[str, dict[str, Any]] = {
        "counters": {},
        "recount": {"recount": True},
        "history_now": {"at": now},
        "history_past": {"at": past},
        "counters_past": {"as_of": past.as_of},
    }
    result: dict[str, Any] = {
        "now": now.describe(),
        "past": past.describe(),
        "codes": picked,
        "scopes": {},
    }
    mismatches: list[str] = []
    try:
        for scope, (level, code) in scopes.items():
            entry: dict[str, Any] = {"level": level, "code": code}
            answers = {}
            for method, kwargs in methods.items():
                seconds, rows = rates_runs(engine, args.runs, level, code, kwargs)
                answers[method] = rows
                entry[method] = {**summary_ms(seconds), "rows": len(rows)}
            entry["history_now_equals_counters"] = answers["history_now"] == answers["counters"]
            entry["recount_equals_counters"] = answers["recount"] == answers["counters"]
            entry["history_past_equals_counters_at_that_date"] = (
                answers["history_past"] == answers["counters_past"]
            )
            if not entry["history_now_equals_counters"]:
                differ = [
                    (h, c)
                    for h, c in zip(answers["history_now"], answers["counters"], strict=False)
                    if h != c
                ]
                mismatches.append(
                    f"{scope}: {len(answers['history_now'])} rows from the history, "
                    f"{len(answers['counters'])} from the counters; first difference {differ[:1]}"
                )
            result["scopes"][scope] = entry
            log(
                f"rates {scope}: counters {entry['counters']['p50_ms']} ms, recount "
                f"{entry['recount']['p50_ms']} ms, history now {entry['history_now']['p50_ms']}"
                f" ms, past {entry['history_past']['p50_ms']} ms"
            )
    finally:
        engine.dispose()
    result["history_now_equals_counters"] = not mismatches
    result["mismatches"] = mismatches
    if not args.no_explain:
        result["plans"] = {
            name: explain_nested(
                database_url, lambda s, kw=kwargs: compute_rates(s, "community", None, **kw)
            )[:2]
            for name, kwargs in (
                ("recount", {"recount": True}),
                ("history_now", {"at": now}),
                ("history_past", {"at": past}),
            )
        }
    return result


# ---------------------------------------------------------------- 4. the feed


def bulk_block(database_url: str) -> dict[str, int]:
    """The largest transaction of the feed (the load): its first and last numbers."""
    with psycopg.connect(libpq(database_url)) as conn:
        first, last = conn.execute(
            "SELECT seq_first, seq_last FROM registry_txn WHERE committed_at IS NOT NULL "
            "ORDER BY seq_last - seq_first DESC LIMIT 1"
        ).fetchone()
    return {"seq_first": int(first), "seq_last": int(last)}


def page_times(
    engine: Engine, after: int, limit: int, with_data: bool, runs: int
) -> dict[str, Any]:
    seconds, returned = [], 0
    for _ in range(runs):
        with Session(engine) as session:
            took, page = timed(
                lambda s=session: changes_after(s, after, limit, with_data=with_data)
            )
        seconds.append(took)
        returned = len(page.changes)
    return {**summary_ms(seconds), "after": after, "returned": returned}


def whole_feed(engine: Engine, limit: int, with_data: bool, max_pages: int) -> dict[str, Any]:
    """Every change from the start (or the first ``max_pages`` pages), in pages of ``limit``,
    each in its own transaction, as a client catching up does. A page that fails is
    recorded (its number, ``after`` and the error's first line) and ends the read."""
    after, pages, changes, slowest = 0, 0, 0, 0.0
    failed = None
    began = time.perf_counter()
    while not max_pages or pages < max_pages:
        try:
            with Session(engine) as session:
                took, page = timed(
                    lambda s=session, a=after: changes_after(s, a, limit, with_data=with_data)
                )
        except DBAPIError as exc:
            failed = {"page": pages + 1, "after": after, "error": str(exc.orig).splitlines()[0]}
            log(f"whole feed, page {pages + 1} after {after}: {failed['error']}")
            break
        pages += 1
        changes += len(page.changes)
        slowest = max(slowest, took)
        if len(page.changes) < limit:
            break
        after = page.next_after
    seconds = time.perf_counter() - began
    return {
        "limit": limit,
        "with_data": with_data,
        "seconds": round(seconds, 2),
        "pages": pages,
        "changes": changes,
        "complete": failed is None and (not max_pages or pages < max_pages),
        "changes_per_s": round(changes / seconds) if seconds else 0,
        "slowest_page_ms": ms(slowest),
        "failed": failed,
    }


def measure_feed(database_url: str, edits: dict[str, Any], args: argparse.Namespace) -> dict:
    engine = make_engine(database_url)
    block = bulk_block(database_url)
    positions = {
        "start": block["seq_first"],
        "middle": (block["seq_first"] + block["seq_last"]) // 2,
        "end": block["seq_last"] - FEED_PAGE,
    }
    result: dict[str, Any] = {"bulk_block": block, "latest": latest_seq(database_url)}
    try:
        result["load_pages"] = {
            position: {
                data: page_times(engine, after, FEED_PAGE, data == "with_data", args.feed_runs)
                for data in ("without_data", "with_data")
            }
            for position, after in positions.items()
        }
        small = edits["feed_before"]
        result["edit_pages"] = {
            "transactions": edits["feed_after"] - small,
            **{
                data: page_times(engine, small, FEED_PAGE, data == "with_data", args.feed_runs)
                for data in ("without_data", "with_data")
            },
        }
        for name, limit, data in WHOLE_FEED_READS:
            log(f"whole feed, pages of {limit}, {name}")
            result[name] = whole_feed(engine, limit, data, args.max_pages)
        if not args.no_explain:
            result["plan_middle_page"] = explain_select(
                engine, page_query(positions["middle"], FEED_PAGE, None), {}
            )
            result["plans_middle_page_with_data"] = explain_nested(
                database_url,
                lambda s: changes_after(s, positions["middle"], FEED_PAGE, with_data=True),
                min_ms=0.0,
            )[:3]
    finally:
        engine.dispose()
    return result


# ---------------------------------------------------------------- 5. features at a time


def feature_bbox(engine: Engine, communities: int = 4) -> Bbox:
    """The extent of the buildings of a few communities from the middle of the data."""
    with engine.connect() as conn:
        box = conn.exec_driver_sql(
            "WITH c AS (SELECT code FROM community ORDER BY code), "
            "picked AS (SELECT code FROM c OFFSET (SELECT count(*) / 2 FROM c) LIMIT %(n)s) "
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
            "(SELECT ST_Extent(footprint) AS e FROM building "
            " WHERE community_code IN (SELECT code FROM picked)) x",
            {"n": communities},
        ).one()
    return Bbox(*box)


def measure_features(database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    engine = make_engine(database_url)
    past = moment(dt.date.today() - dt.timedelta(days=args.past_days))
    moments: dict[str, Moment | None] = {
        "now": None,
        "history_now": Moment(valid=dt.datetime.now(dt.UTC)),
        "history_past": past,
    }
    bbox = feature_bbox(engine)
    query = ItemsQuery(collection=BUILDINGS, limit=FEED_PAGE, bbox=bbox)
    result: dict[str, Any] = {"bbox": [bbox.minx, bbox.miny, bbox.maxx, bbox.maxy]}
    try:
        for name, at in moments.items():
            source = BUILDINGS.source(at)
            document = page_select(
                items_select(query, source), query.limit, count_select(query, source)
            )
            params = BUILDINGS.params(at)
            seconds, row = [], None
            with Session(engine) as session:  # untimed: the first read warms the cache
                session.execute(document, params).one()
            for _ in range(args.runs):
                with Session(engine) as session:
                    took, row = timed(lambda s=session, d=document, p=params: s.execute(d, p).one())
                seconds.append(took)
            assert row is not None
            result[name] = {
                **summary_ms(seconds),
                "returned": row.returned,
                "matched": row.matched,
                "bytes": len(row.features or ""),
            }
            if not args.no_explain:
                result[name]["plan"] = explain_select(engine, document, params)
            log(f"features {name}: p50 {result[name]['p50_ms']} ms, {row.returned} returned")
    finally:
        engine.dispose()
    return result


# ---------------------------------------------------------------- report


def mib(n: int) -> str:
    return f"{n / 2**20:,.1f}"


def tables(r: dict[str, Any]) -> list[str]:
    ld, ed, rt, fd, ft = r["load"], r["edits"], r["rates"], r["feed"], r["features"]
    sz = ld["sizes"]
    block = fd["bulk_block"]["seq_last"] - fd["bulk_block"]["seq_first"]
    out = [
        "## 1. Load (one transaction, commit included)",
        "",
        "| history | runs (s) | median (s) |",
        "|---|---|---|",
        *(
            f"| {s} | {', '.join(str(x) for x in ld['seconds'][s])} | {ld['median_s'][s]} |"
            for s in STATES
        ),
        "",
        f"On ÷ off: **{ld['ratio_on_off']}** (order {', '.join(ld['order'])}). Feed: "
        f"{sz['registry_change']['rows']:,} changes in {sz['registry_txn']['rows']:,} "
        f"transactions, {mib(sz['feed_bytes'])} MiB. Database {mib(sz['database_bytes'])} MiB "
        f"(history on).",
        "",
        "| table | rows | MiB | history rows | history MiB | history ÷ table |",
        "|---|---|---|---|---|---|",
        *(
            f"| {t} | {v['rows']:,} | {mib(v['bytes'])} | {v['history_rows']:,} | "
            f"{mib(v['history_bytes'])} | {v['ratio']} |"
            for t, v in sz["tables"].items()
        ),
        f"| all | | {mib(sz['base_bytes'])} | | {mib(sz['history_bytes'])} | "
        f"{round(sz['history_bytes'] / sz['base_bytes'], 2)} |",
        "",
        "## 2. Single-row edit transactions (ms, commit included)",
        "",
        "| edit | n | on p50 / p95 | off p50 / p95 | on ÷ off (p50) | first on / off |",
        "|---|---|---|---|---|---|",
        *(
            f"| `{ed[t]['statement']}` | {ed[t]['on']['n']} | {ed[t]['on']['p50_ms']} / "
            f"{ed[t]['on']['p95_ms']} | {ed[t]['off']['p50_ms']} / {ed[t]['off']['p95_ms']} | "
            f"{ed[t]['ratio_p50']} | {ed[t]['on']['first_ms']} / {ed[t]['off']['first_ms']} |"
            for t in EDITS
        ),
        "",
        "## 3. Rates (p50 ms of compute_rates)",
        "",
        f"History now: valid at {rt['now']['valid_at']}; past: valid at "
        f"{rt['past']['valid_at']} (the load is valid from {ld['valid_from']}).",
        "",
        "| scope | level | counters | recount | history now | history past | counters at "
        "past date | history now = counters |",
        "|---|---|---|---|---|---|---|---|",
        *(
            f"| {name} {e['code'] or ''} | {e['level']} ({e['counters']['rows']} rows) | "
            f"{e['counters']['p50_ms']} | {e['recount']['p50_ms']} | "
            f"{e['history_now']['p50_ms']} | {e['history_past']['p50_ms']} | "
            f"{e['counters_past']['p50_ms']} | {e['history_now_equals_counters']} |"
            for name, e in rt["scopes"].items()
        ),
        "",
        "## 4. Change feed (changes_after, p50 ms; as the owner)",
        "",
        f"The load is one transaction of {block:,} changes.",
        "",
        "| page of 1,000 | without data | with data |",
        "|---|---|---|",
        *(
            f"| load, {pos} (after {v['without_data']['after']:,}) | "
            f"{v['without_data']['p50_ms']} | {v['with_data']['p50_ms']} |"
            for pos, v in fd["load_pages"].items()
        ),
        f"| after the edits: {fd['edit_pages']['with_data']['returned']} changes in "
        f"{fd['edit_pages']['transactions']} transactions | "
        f"{fd['edit_pages']['without_data']['p50_ms']} | "
        f"{fd['edit_pages']['with_data']['p50_ms']} |",
        "",
        "| whole feed | page | seconds | pages | changes | changes/s | slowest (ms) | failed |",
        "|---|---|---|---|---|---|---|---|",
        *(whole_row(fd[name]) for name, _, _ in WHOLE_FEED_READS),
        "",
        "## 5. Buildings items page of 1,000 in a bbox (p50 ms, first page with its count)",
        "",
        "| read | p50 | p95 | returned | matched |",
        "|---|---|---|---|---|",
        *(
            f"| {name} | {ft[name]['p50_ms']} | {ft[name]['p95_ms']} | {ft[name]['returned']} | "
            f"{ft[name]['matched']} |"
            for name in ("now", "history_now", "history_past")
        ),
    ]
    return out


def whole_row(w: dict[str, Any]) -> str:
    data = "with data" if w["with_data"] else "without data"
    failed = f"page {w['failed']['page']}: {w['failed']['error']}" if w["failed"] else ""
    return (
        f"| {data} | {w['limit']:,} | {w['seconds']} | {w['pages']} | {w['changes']:,} | "
        f"{w['changes_per_s']:,} | {w['slowest_page_ms']} | {failed} |"
    )


def plan_lines(r: dict[str, Any]) -> list[str]:
    out = ["", "## Plans (nodes with the most time of their own)", ""]
    for name, plans in r["rates"].get("plans", {}).items():
        for p in plans:
            out.append(
                f"- rates {name}, `{p['query'][:80]}…`: {p['execution_ms']} ms; "
                + "; ".join(p["key_lines"])
            )
    feed = r["feed"]
    if "plan_middle_page" in feed:
        p = feed["plan_middle_page"]
        out.append(f"- feed page, middle: {p['execution_ms']} ms; " + "; ".join(p["key_lines"]))
    for name in ("now", "history_now", "history_past"):
        p = r["features"][name].get("plan")
        if p:
            out.append(f"- features {name}: {p['execution_ms']} ms; " + "; ".join(p["key_lines"]))
    return out


def markdown(r: dict[str, Any]) -> str:
    m, db = r["machine"], r["database"]
    before, after = r["busy_before"], r["busy_after"]
    others = others_seen(r)
    head = [
        f"# History and change feed benchmark: {r['scale']} ({r['communities']} communities)",
        "",
        f"{r['started']} → {r['finished']}. {m['cpus']} CPUs ({m['cpu']}), {m['memory_gib']} "
        f"GiB, {m['os']}, Python {m['python']}; PostgreSQL {db['postgresql']}, PostGIS "
        f"{db['postgis']} (embedded cluster, shared_buffers {db['shared_buffers']}, "
        f"synchronous_commit {db['synchronous_commit']}). Data: {r['synth']['summary']}.",
        "",
        f"Load average (1, 5, 15 min) {before['loadavg']} before, {after['loadavg']} after; "
        + (
            f"other processes at {OTHERS_PCT:.0f}% of a CPU or more: {', '.join(others)}."
            if others
            else f"no other process at {OTHERS_PCT:.0f}% of a CPU or more (PostgreSQL aside)."
        ),
        "",
    ]
    return "\n".join(head + tables(r) + plan_lines(r)) + "\n"


# ---------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = peers.prepare_workdir(args.workdir)
    communities = SCALES[args.scale]
    results: dict[str, Any] = {
        "scale": args.scale,
        "communities": communities,
        "seed": args.seed,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "busy_before": busy(),
    }
    results["machine"]["load_tool"] = "in process (SQLAlchemy and psycopg)"
    log(f"synthesizing {communities} communities")
    bundle = workdir / "bundles" / f"{args.scale}-seed{args.seed}"
    results["synth"] = synthesize(bundle, communities, args.seed)
    key_file = workdir / "keys.json"
    if not key_file.exists():
        create_key_file(key_file)
    postgres = cluster(workdir)
    try:
        return run(args, results, bundle, key_file, postgres.up())
    finally:
        postgres.down()


def run(
    args: argparse.Namespace,
    results: dict[str, Any],
    bundle: Path,
    key_file: Path,
    admin_url: str,
) -> int:
    results["load"], urls = measure_loads(admin_url, bundle, key_file, args)
    results["database"] = server_facts(urls["on"])
    results["busy_during"] = [busy()]
    results["edits"] = measure_edits(urls, args)
    results["busy_during"].append(busy())
    results["rates"] = measure_rates(urls["on"], args)
    results["busy_during"].append(busy())
    results["feed"] = measure_feed(urls["on"], results["edits"], args)
    results["busy_during"].append(busy())
    results["features"] = measure_features(urls["on"], args)
    results["busy_after"] = busy()
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    out = args.out or RESULTS / f"history-{args.scale}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
    out.with_suffix(".md").write_text(markdown(results))
    print("\n".join(tables(results)))
    log(f"results: {out} and {out.with_suffix('.md')}")
    if not results["rates"]["history_now_equals_counters"]:
        log(
            "the history as of now differs from the counters: "
            + "; ".join(results["rates"]["mismatches"])
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
