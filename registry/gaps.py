"""The work lists behind the rates: what keeps each community's rates below 100%.

Every gap is the exact complement of a rate's numerator within its denominator
(docs/rates.md), computed by packaged SQL that repeats community_counts.sql's definitions:

- ``buildings_not_on_map``  = buildings - buildings_on_map (counted, but no usable footprint)
- ``buildings_not_labeled`` = buildings_on_map - buildings_labeled
- ``footprints_not_covered`` = footprints - footprints_covered
- ``residents_not_on_map``  = residents - residents_on_map (a count only: personal data)

Repository functions take a sync Session and never commit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from importlib.resources import files
from typing import Any

from geoalchemy2 import Geometry
from sqlalchemy import (
    Integer,
    String,
    Subquery,
    column,
    exists,
    func,
    literal,
    select,
    text,
    union_all,
)
from sqlalchemy.dialects.postgresql import DOUBLE_PRECISION
from sqlalchemy.orm import Session

from registry.models import SRID, Community
from registry.rates import check_code_prefix, within
from registry.settings import RegistryError

# gap -> (the rate's denominator, its numerator): the gap is their difference
GAPS = {
    "buildings_not_on_map": ("buildings", "buildings_on_map"),
    "buildings_not_labeled": ("buildings_on_map", "buildings_labeled"),
    "footprints_not_covered": ("footprints", "footprints_covered"),
    "residents_not_on_map": ("residents", "residents_on_map"),
}
# the gaps whose items may be listed (ids of buildings or reference footprints)
LISTED = ("buildings_not_on_map", "buildings_not_labeled", "footprints_not_covered")
DEFAULT_LIMIT = 1000


def packaged_sql(name: str) -> str:
    return files("registry").joinpath(f"sql/{name}").read_text(encoding="utf-8")


def coverage_gaps() -> Subquery:
    """Uncovered reference footprints, one row per footprint and community containing it.

    Columns: id, source, community_code, community_name, covered_share (0..1), geom
    (SRID 4490). No parameters, ORDER BY or LIMIT, so filters around it push down.
    """
    return (
        text(packaged_sql("coverage_gaps.sql"))
        .columns(
            column("id", String),
            column("source", String),
            column("community_code", String),
            column("community_name", String),
            column("covered_share", DOUBLE_PRECISION),
            column("geom", Geometry(srid=SRID)),
        )
        .subquery("coverage_gaps")
    )


def building_gaps() -> Subquery:
    """Buildings not on the map, and on the map but not labelled: kind, community_code, id."""
    return (
        text(packaged_sql("gaps_buildings.sql"))
        .columns(column("kind", String), column("community_code", String), column("id", String))
        .subquery("building_gaps")
    )


def gap_items() -> Subquery:
    """Every listable gap item: kind (one of :data:`LISTED`), community_code, id."""
    footprints = coverage_gaps()
    return union_all(
        select(building_gaps()),
        select(
            literal("footprints_not_covered", String).label("kind"),
            footprints.c.community_code,
            footprints.c.id,
        ),
    ).subquery("gap_items")


def resident_gaps() -> Subquery:
    """Active residents not placed on the map, per community; binds ``as_of``."""
    return (
        text(packaged_sql("gaps_residents.sql"))
        .columns(column("community_code", String), column("residents_not_on_map", Integer))
        .subquery("resident_gaps")
    )


def has_communities(session: Session, code: str | None) -> bool:
    """Whether any community's code starts with ``code`` (any at all when None)."""
    check_code_prefix(code)
    query = select(Community.code)
    if code:
        query = query.where(Community.code.startswith(code, autoescape=True))
    return bool(session.scalar(select(exists(query))))


def community_gaps(
    session: Session,
    code: str | None = None,
    as_of: dt.date | None = None,
    limit: int = DEFAULT_LIMIT,
    scope: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Per community (code prefix ``code``, ordered by code): each gap's ``count``, and for
    the :data:`LISTED` gaps up to ``limit`` ids (in byte order) and whether they were truncated."""
    check_code_prefix(code)
    if limit < 0:
        raise RegistryError(f"limit must not be negative, not {limit}")
    communities = select(Community.code, Community.name).order_by(Community.code)
    items = gap_items()
    residents = resident_gaps()
    if code:
        communities = communities.where(Community.code.startswith(code, autoescape=True))
    if scope is not None:  # the caller's jurisdiction: its communities' rows only
        communities = communities.where(within(Community.code, scope))
    rows: dict[str, dict[str, Any]] = {
        c.code: {"code": c.code, "name": c.name}
        | {g: {"count": 0, "ids": [], "truncated": False} for g in LISTED}
        | {"residents_not_on_map": {"count": 0}}
        for c in session.execute(communities)
    }
    window = {"partition_by": (items.c.kind, items.c.community_code)}
    ranked = select(
        items.c.kind,
        items.c.community_code,
        items.c.id,
        # byte order, whatever the database's collation: the same list everywhere
        func.row_number().over(**window, order_by=items.c.id.collate("C")).label("n"),
        func.count().over(**window).label("total"),
    )
    resident_counts = select(residents)
    if code:
        ranked = ranked.where(items.c.community_code.startswith(code, autoescape=True))
        resident_counts = resident_counts.where(
            residents.c.community_code.startswith(code, autoescape=True)
        )
    if scope is not None:  # in the database, not by discarding rows afterwards
        ranked = ranked.where(within(items.c.community_code, scope))
        resident_counts = resident_counts.where(within(residents.c.community_code, scope))
    ranked = ranked.subquery("ranked")
    # at least the first item of each list, for its total even when limit is 0
    listed = (
        select(ranked)
        .where(ranked.c.n <= max(limit, 1))
        .order_by(ranked.c.community_code, ranked.c.kind, ranked.c.n)
    )
    for item in session.execute(listed):
        gap = rows[item.community_code][item.kind]
        gap["count"] = item.total
        gap["truncated"] = item.total > limit
        if item.n <= limit:
            gap["ids"].append(item.id)
    for count in session.execute(resident_counts, {"as_of": as_of or dt.date.today()}):
        rows[count.community_code]["residents_not_on_map"]["count"] = count.residents_not_on_map
    return list(rows.values())
