"""The rates per community, street, district or city, computed in the database.

Counts come from ``sql/community_counts.sql``, which reads the per-community counters
that triggers keep current (registry/counts.py), or with ``recount=True`` from
``sql/community_recount.sql``, which computes them from the definitions. Higher levels
sum those counts (never average rates), and a rate whose denominator is 0 is null.
Organizations have no counters: both queries count them live at the as-of date.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from importlib.resources import files
from typing import Any, Literal

from sqlalchemy import (
    Integer,
    String,
    Subquery,
    case,
    cast,
    column,
    false,
    func,
    literal,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from registry.history import Moment, community_counts_at, counts_params
from registry.settings import RegistryError

Level = Literal["community", "street", "district", "city"]
LEVELS: tuple[Level, ...] = ("community", "street", "district", "city")

COUNTS = (
    "buildings",
    "buildings_on_map",
    "footprints",
    "footprints_covered",
    "buildings_labeled",
    "residents",
    "residents_on_map",
    "organizations",
    "organizations_on_map",
)
# rate -> (numerator, denominator)
RATES = {
    "on_map_rate": ("buildings_on_map", "buildings"),
    "coverage_rate": ("footprints_covered", "footprints"),
    "labeling_rate": ("buildings_labeled", "buildings_on_map"),
    "population_on_map_rate": ("residents_on_map", "residents"),
    "org_on_map_rate": ("organizations_on_map", "organizations"),
}
FIELDS = (
    "level",
    "code",
    "name",
    "buildings",
    "buildings_on_map",
    "on_map_rate",
    "footprints",
    "footprints_covered",
    "coverage_rate",
    "buildings_labeled",
    "labeling_rate",
    "residents",
    "residents_on_map",
    "population_on_map_rate",
    "organizations",
    "organizations_on_map",
    "org_on_map_rate",
)
CITY_NAME = "全市"
COMMUNITY_CODE_LENGTH = 12


def community_counts(recount: bool = False) -> Subquery:
    """The packaged per-community counts query, as a subquery to group and filter:
    the counters, or (``recount``) the full computation from the rate definitions."""
    name = "community_recount.sql" if recount else "community_counts.sql"
    sql = files("registry").joinpath("sql", name).read_text(encoding="utf-8")
    names = ("code", "name", "street_code", "street_name", "district_code", "district_name")
    return (
        text(sql)
        .columns(*(column(n, String) for n in names), *(column(n, Integer) for n in COUNTS))
        .subquery("counts")
    )


def is_code_prefix(code: str) -> bool:
    """1 to 12 ASCII digits: a community code, or the start of one (street, district)."""
    return code.isascii() and code.isdigit() and len(code) <= 12


def check_code_prefix(code: str | None) -> None:
    if code is not None and not is_code_prefix(code):
        raise RegistryError(f"code {code!r} must be up to 12 digits")


def within(code: ColumnElement, scope: Sequence[str]) -> ColumnElement:
    """``code`` starts with one of the prefixes of ``scope`` (false for an empty scope)."""
    return or_(false(), *(code.startswith(prefix, autoescape=True) for prefix in scope))


def ratio(numerator: ColumnElement, denominator: ColumnElement) -> ColumnElement:
    """numerator / denominator as a fraction, null when the denominator is 0."""
    return cast(numerator, DOUBLE_PRECISION) / func.nullif(denominator, 0)


def compute_rates(
    session: Session,
    level: Level = "community",
    code: str | None = None,
    as_of: dt.date | None = None,
    recount: bool = False,
    scope: Sequence[str] | None = None,
    at: Moment | None = None,
) -> list[dict[str, Any]]:
    """Rows of :data:`FIELDS`, ordered by code. ``code`` keeps the communities whose code
    starts with it (a community, street or district code), and ``scope`` those under any
    of its prefixes (a caller's jurisdiction; None: all); ``recount`` computes the counts
    from the definitions instead of reading the counters (same numbers, slower); ``at``
    computes them from the history, for the register as valid and known then (its date
    is the as-of date)."""
    if level not in LEVELS:
        raise RegistryError(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    check_code_prefix(code)
    counts = community_counts_at(COUNTS) if at is not None else community_counts(recount)
    code_column, name_column = {
        "community": (counts.c.code, counts.c.name),
        "street": (counts.c.street_code, func.max(counts.c.street_name)),
        "district": (counts.c.district_code, func.max(counts.c.district_name)),
        "city": (city_code(counts), literal(CITY_NAME)),
    }[level]
    sums = {n: func.sum(counts.c[n]) for n in COUNTS}
    if level == "community":
        sums = {n: counts.c[n] for n in COUNTS}
    grouped = select(
        literal(level).label("level"),
        code_column.label("code"),
        name_column.label("name"),
        *(cast(func.coalesce(expr, 0), Integer).label(n) for n, expr in sums.items()),
    )
    if code and len(code) == COMMUNITY_CODE_LENGTH:
        # one community: an equality PostgreSQL pushes into the residents' aggregate, so it
        # reads that community's counter rows only, not the whole city's (a prefix cannot)
        grouped = grouped.where(counts.c.code == code)
    elif code:
        grouped = grouped.where(counts.c.code.startswith(code, autoescape=True))
    if scope is not None:
        grouped = grouped.where(within(counts.c.code, scope))
    if level in ("street", "district"):
        grouped = grouped.group_by(code_column)
    grouped = grouped.subquery("grouped")
    query = select(
        *(grouped.c[f] if f not in RATES else rate_of(grouped, f).label(f) for f in FIELDS)
    ).order_by(grouped.c.code)
    params = counts_params(at, code) if at is not None else {"as_of": as_of or dt.date.today()}
    return [dict(row._mapping) for row in session.execute(query, params)]


def rate_of(grouped: Subquery, rate: str) -> ColumnElement:
    numerator, denominator = RATES[rate]
    return ratio(grouped.c[numerator], grouped.c[denominator])


def city_code(counts: Subquery) -> ColumnElement:
    """The city's 6-digit code when all communities share one (420100 for Wuhan), else null."""
    prefix = func.left(counts.c.district_code, 4)
    return case((func.count(prefix.distinct()) == 1, func.concat(func.min(prefix), "00")))
