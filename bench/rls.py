"""Row-level security in the benchmark: the API's role and accounts, policies on and off,
and the plans the API role gets.

Our API connects as ``registry_api`` (migration 0006), whose password the benchmark sets
in its own database, and every request carries a bearer token. The benchmark signs in as
an ``analyst`` whose jurisdiction is every district the synthetic data lies in: the
policies are evaluated on every row, yet the analyst sees exactly what the owner sees, so
a run with the policies on and one with them off do the same work but for the policies.
An ``admin`` (whom the policies let through without looking at the row) checks that.

Turning the policies off is ``ALTER TABLE … DISABLE ROW LEVEL SECURITY`` on every table
that has them, as the owner, between load runs; :func:`policies_off` always turns them
back on. The tokens and the password never reach the results: :attr:`Access.secrets`
are redacted from every server's configuration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import secrets
import statistics
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy import Select, text
from sqlalchemy.engine import Connection, make_url

from bench.database import libpq
from registry import auth, tiles
from registry.collections import COLLECTIONS
from registry.db import make_engine, transaction
from registry.features import Bbox, ItemsQuery, count_select, items_select, page_select
from registry.settings import API_ROLE

ANALYST = "bench-analyst"
ADMIN = "bench-admin"
BUDGET = 0.8  # the policies may cost at most 20% of throughput: on / off >= 0.8
APPLICATION_NAME = "registry-api%"  # what the API's pools call themselves (api/database.py)


@dataclass(frozen=True)
class Access:
    """The API role's password and the accounts' tokens, for one benchmark database."""

    api_password: str
    analyst_token: str
    admin_token: str
    jurisdiction: tuple[str, ...]

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self.api_password, self.analyst_token, self.admin_token)

    @property
    def analyst(self) -> auth.Principal:
        return auth.Principal(ANALYST, "analyst", self.jurisdiction)

    def describe(self) -> dict[str, Any]:
        """Who the benchmark signs in as, without any secret."""
        return {
            "api_role": API_ROLE,
            "accounts": {
                ANALYST: {"role": "analyst", "jurisdiction": list(self.jurisdiction)},
                ADMIN: {"role": "admin", "jurisdiction": []},
            },
        }


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def prepare_access(database_url: str) -> Access:
    """Set a random password for the API role and create the two accounts with a token
    each, as the owner; the analyst's jurisdiction is every district with buildings."""
    password = secrets.token_urlsafe(24)
    engine = make_engine(database_url)
    try:
        with transaction(engine) as session:
            session.execute(text("SELECT registry_set_api_password(:p)"), {"p": password})
            districts = tuple(
                session.scalars(
                    text("SELECT DISTINCT left(community_code, 6) FROM building ORDER BY 1")
                )
            )
            auth.add_account(session, ANALYST, "analyst", list(districts))
            auth.add_account(session, ADMIN, "admin", [])
            analyst = auth.create_token(session, ANALYST)
            admin = auth.create_token(session, ADMIN)
    finally:
        engine.dispose()
    return Access(password, analyst, admin, districts)


def api_url(database_url: str, password: str) -> str:
    """The database URL as the API role."""
    url = make_url(database_url).set(username=API_ROLE, password=password)
    return url.render_as_string(hide_password=False)


# ---------------------------------------------------------------- policies on and off


def policy_tables(database_url: str) -> list[str]:
    """The tables of the public schema with row-level security enabled."""
    with psycopg.connect(libpq(database_url)) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' AND c.relrowsecurity "
            "ORDER BY c.relname"
        ).fetchall()
    return [name for (name,) in rows]


def set_row_level_security(database_url: str, tables: Sequence[str], enabled: bool) -> None:
    action = sql.SQL("ENABLE" if enabled else "DISABLE")
    with psycopg.connect(libpq(database_url)) as conn, conn.transaction():
        for table in tables:
            conn.execute(
                sql.SQL("ALTER TABLE {} {} ROW LEVEL SECURITY").format(
                    sql.Identifier(table), action
                )
            )


@contextmanager
def policies_off(database_url: str, tables: Sequence[str]) -> Iterator[None]:
    """Row-level security disabled on ``tables`` inside the block, enabled again after it
    whatever happens."""
    set_row_level_security(database_url, tables, False)
    try:
        yield
    finally:
        set_row_level_security(database_url, tables, True)


def connected_roles(database_url: str) -> list[str]:
    """The roles the API's pools are connected as, from ``pg_stat_activity``."""
    with psycopg.connect(libpq(database_url)) as conn:
        rows = conn.execute(
            "SELECT DISTINCT usename::text FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE %s ORDER BY 1",
            (APPLICATION_NAME,),
        ).fetchall()
    return [name for (name,) in rows]


def security_facts(database_url: str) -> dict[str, Any]:
    """The API role's attributes, the tables with policies and the indexes on the
    jurisdiction column the policies test (whether ``&&`` is LEAKPROOF, so that the
    spatial index runs before the policy, is in :func:`bench.database.server_facts`)."""
    with psycopg.connect(libpq(database_url)) as conn:
        role = conn.execute(
            "SELECT rolsuper, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = %s",
            (API_ROLE,),
        ).fetchone()
        indexes = conn.execute(
            "SELECT tablename, indexname FROM pg_indexes WHERE schemaname = 'public' "
            "AND indexdef LIKE '%%(community_code%%' ORDER BY 1, 2"
        ).fetchall()
    return {
        "api_role": {
            "name": API_ROLE,
            "superuser": bool(role and role[0]),
            "bypassrls": bool(role and role[1]),
            "login": bool(role and role[2]),
        },
        "tables_with_policies": policy_tables(database_url),
        "community_code_indexes": {table: name for table, name in indexes},
    }


# ---------------------------------------------------------------- plans


def explain(conn: Connection, statement: Select, params: Mapping[str, Any]) -> list[str]:
    """``EXPLAIN (ANALYZE, BUFFERS)`` of a SQLAlchemy statement, compiled as the API's
    driver compiles it, with the same bound values."""
    compiled = statement.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    values = compiled.construct_params(dict(params))
    result = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + compiled.string, values)
    return [row[0] for row in result]


def execution_ms(plan: Sequence[str]) -> float:
    for line in plan:
        if match := re.match(r"\s*Execution Time: ([0-9.]+) ms", line):
            return float(match[1])
    return float("nan")


def plan_queries(
    tile: tuple[int, int, int], bbox: Sequence[float]
) -> dict[str, tuple[Select, dict[str, Any]]]:
    """The API's statements for one MVT tile of buildings and one items page (bbox in
    CRS84, limit 1000, first page so with its count), with their bound values."""
    buildings = COLLECTIONS["buildings"]
    address = tiles.TileAddress(*tile)
    layer = tiles.built_layer_statement(buildings, "mvt")
    query = ItemsQuery(collection=buildings, limit=1000, bbox=Bbox(*bbox))
    source = buildings.source()
    page = page_select(items_select(query, source), query.limit, count_select(query, source))
    return {
        f"tile z{tile[0]}/{tile[1]}/{tile[2]}": (
            layer,
            tiles.layer_params(buildings, address, "mvt"),
        ),
        "items bbox " + ",".join(f"{v:.5f}" for v in bbox): (page, buildings.params()),
    }


def indexes_used(plan: str, indexes: Sequence[str]) -> list[str]:
    """Which of ``indexes`` the plan scans (whole names: one may prefix another)."""
    return [i for i in indexes if re.search(rf"\b(?:using|on) {re.escape(i)}\b", plan)]


def gist_indexes(database_url: str) -> list[str]:
    with psycopg.connect(libpq(database_url)) as conn:
        rows = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
            "AND tablename = 'building' AND indexdef LIKE '%%USING gist%%' ORDER BY 1"
        ).fetchall()
    return [name for (name,) in rows]


def plan_entry(
    user: str, plan: list[str], times: list[float], indexes: Sequence[str]
) -> dict[str, Any]:
    """A plan with its median execution time and what it shows about the indexes."""
    text_plan = "\n".join(plan)
    return {
        "as": user,
        "execution_ms": round(statistics.median(times), 2),
        "execution_ms_runs": times,
        "gist_indexes": indexes_used(text_plan, indexes),
        "seq_scan_on_building": "Seq Scan on building" in text_plan,
        "policy_initplans": text_plan.count("InitPlan"),
        "rows_removed_by_filter": sum(
            int(n) for n in re.findall(r"Rows Removed by Filter: (\d+)", text_plan)
        ),
        "plan": plan,
    }


def explain_as(
    conn: Connection, principal: auth.Principal, statement: Select, params: Mapping[str, Any]
) -> list[str]:
    """EXPLAIN ANALYZE in a transaction of its own that knows who is asking."""
    conn.execute(auth.SET_CONTEXT, auth.context_params(principal))
    try:
        return explain(conn, statement, params)
    finally:
        conn.rollback()


def measure_plans(
    database_url: str,
    access: Access,
    queries: Mapping[str, tuple[Select, dict[str, Any]]],
    repeat: int = 10,
) -> dict[str, Any]:
    """Each query ``repeat`` times (after one run to warm up) under EXPLAIN ANALYZE as the
    API role in the analyst's context: the last plan, the median execution time, and the
    GiST indexes of ``building`` that served it (or whether a sequential scan did)."""
    indexes = gist_indexes(database_url)
    engine = make_engine(api_url(database_url, access.api_password))
    out: dict[str, Any] = {}
    try:
        with engine.connect() as conn:
            user = conn.scalar(text("SELECT current_user"))
            for name, (statement, params) in queries.items():
                principal = access.analyst
                plans = [explain_as(conn, principal, statement, params) for _ in range(repeat + 1)]
                times = [execution_ms(plan) for plan in plans[1:]]
                out[name] = plan_entry(user, plans[-1], times, indexes)
    finally:
        engine.dispose()
    return out


def plans_on_and_off(
    database_url: str,
    access: Access,
    tables: Sequence[str],
    queries: Mapping[str, tuple[Select, dict[str, Any]]],
    rounds: int = 15,
) -> dict[str, Any]:
    """Each query under EXPLAIN ANALYZE as the API role in the analyst's context, with the
    policies on and off in turn, ``rounds`` times (after one warm-up run of each): the
    last plans, the median execution times and the median of the paired ratios."""
    indexes = gist_indexes(database_url)
    engine = make_engine(api_url(database_url, access.api_password))
    plans: dict[str, dict[str, list[list[str]]]] = {name: {"on": [], "off": []} for name in queries}
    try:
        with engine.connect() as conn:
            user = conn.scalar(text("SELECT current_user"))
            for _ in range(rounds + 1):
                for state in ("on", "off"):
                    guard = (
                        policies_off(database_url, tables)
                        if state == "off"
                        else contextlib.nullcontext()
                    )
                    with guard:
                        for name, (statement, params) in queries.items():
                            plan = explain_as(conn, access.analyst, statement, params)
                            plans[name][state].append(plan)
    finally:
        engine.dispose()
    out = {}
    for name, by_state in plans.items():
        times = {state: [execution_ms(p) for p in runs[1:]] for state, runs in by_state.items()}
        on = plan_entry(user, by_state["on"][-1], times["on"], indexes)
        off = plan_entry(user, by_state["off"][-1], times["off"], indexes)
        paired = [a / b for a, b in zip(times["on"], times["off"], strict=True) if b]
        out[name] = {
            "on": on,
            "off": off,
            "on_median_ms": on["execution_ms"],
            "off_median_ms": off["execution_ms"],
            "on_over_off": round(on["execution_ms"] / off["execution_ms"], 3),
            "paired_ratio_median": round(statistics.median(paired), 3),
        }
    return out


def narrow_scope_plans(database_url: str, access: Access) -> dict[str, Any]:
    """The first items page with no bbox (ordered by id, with its count) for an analyst of
    one community — the last by code, so an id-ordered walk passes every other
    community's buildings first — beside the district-wide analyst. The policy's
    ``LIKE ANY (patterns)`` is no index condition, so the rows outside the scope are read
    and filtered out."""
    with psycopg.connect(libpq(database_url)) as conn:
        code = conn.execute("SELECT max(community_code) FROM building").fetchone()[0]
    buildings = COLLECTIONS["buildings"]
    query = ItemsQuery(collection=buildings, limit=1000)
    source = buildings.source()
    page = page_select(items_select(query, source), query.limit, count_select(query, source))
    queries = {"items, no bbox": (page, buildings.params())}
    narrow = dataclasses.replace(access, jurisdiction=(code,))
    return {
        "community": measure_plans(database_url, narrow, queries)["items, no bbox"]
        | {"jurisdiction": [code]},
        "district": measure_plans(database_url, access, queries)["items, no bbox"]
        | {"jurisdiction": list(access.jurisdiction)},
    }


# ---------------------------------------------------------------- the A/B figures


def ab_summary(
    runs: Mapping[str, Mapping[str, Mapping[int, list[dict[str, Any]]]]],
    summarise: Callable[[list[dict[str, Any]]], dict[str, Any]],
) -> dict[str, Any]:
    """Per case and concurrency: the median of the "on" and of the "off" runs, their ratio
    (on / off requests per second), the per-round ratios and whether the ratio is within
    the budget. ``runs[state][case][concurrency]`` lists one run per round."""
    out: dict[str, Any] = {}
    for case, by_concurrency in runs["on"].items():
        out[case] = {}
        for c, on_runs in by_concurrency.items():
            off_runs = runs["off"][case][c]
            on, off = summarise(on_runs), summarise(off_runs)
            paired = [
                round(a["rps"] / b["rps"], 3) if b["rps"] else None
                for a, b in zip(on_runs, off_runs, strict=True)
            ]
            ratio = round(on["rps"] / off["rps"], 3) if off["rps"] else None
            out[case][c] = {
                "on": on,
                "off": off,
                "ratio": ratio,
                "round_ratios": paired,
                "within_budget": ratio is not None and ratio >= BUDGET,
            }
    return out
