"""The public feature collections: what each one selects, its id, geometry and properties.

Each collection is a SQLAlchemy Core selectable with an ``id`` column (text, unique and
ordered, for keyset paging), a ``geom`` column in EPSG:4490 and typed properties. The
OGC API, the tiles and the exports all read these definitions, so a property appears
the same way in every output. Persons and rooms are deliberately not here.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    FromClause,
    and_,
    case,
    func,
    literal,
    literal_column,
    or_,
    select,
)
from sqlalchemy.sql.elements import ColumnElement

from registry import models
from registry.disclosure import PERSON_COUNTS
from registry.history import HistoryError, Moment, community_counts_at, counts_params, table_at
from registry.rates import COUNTS, RATES, community_counts, ratio

STORAGE_SRID = models.SRID


@dataclass(frozen=True)
class Property:
    """A feature property: its name, JSON-schema type and meaning."""

    name: str
    type: str  # "string" | "integer" | "number" | "date-time"
    description: str
    enum: tuple[str, ...] | None = None
    filterable: bool = True  # declared as a query parameter (equality filter)

    def json_schema(self) -> dict[str, Any]:
        """The property's JSON Schema (type, format, enum), for queryables and tilesets."""
        schema: dict[str, Any] = (
            {"type": "string", "format": "date-time"}
            if self.type == "date-time"
            else {"type": self.type}
        )
        if self.enum:
            schema["enum"] = list(self.enum)
        return schema


@dataclass(frozen=True)
class Collection:
    """One public collection; ``source()`` builds its selectable afresh for each query."""

    id: str
    title: str
    description: str
    geometry_type: str  # GeoJSON type of every geometry: "MultiPolygon" or "Point"
    properties: tuple[Property, ...]
    # ``source(at)``: the features now, or (``at``) as valid and known then (history)
    source: Callable[..., FromClause]
    table: str  # the table whose rows are the features (for extents and statistics)
    geometry_column: str
    min_zoom: int = 0
    max_zoom: int = 22
    tile_feature_cap: int = 20_000
    # the source also selects ``geom_3857``, a stored Web Mercator copy vector tiles use
    mercator: bool = False
    params: Callable[..., dict[str, Any]] = field(default=lambda at=None: {})

    @property
    def property_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.properties)

    def property(self, name: str) -> Property | None:
        return next((p for p in self.properties if p.name == name), None)


# ---------------------------------------------------------------- communities


RATE_DESCRIPTIONS = {
    "on_map_rate": "上图率: buildings on the map / buildings (null when 0/0)",
    "coverage_rate": "覆盖率: reference footprints covered / footprints (null when 0/0)",
    "labeling_rate": "标注率: on-map buildings labelled / on-map buildings (null when 0/0)",
    "population_on_map_rate": "人口上图率: residents placed on the map / residents",
    "org_on_map_rate": "单位上图率: active organizations on the map / active organizations",
}
COUNT_DESCRIPTIONS = {
    "buildings": "buildings counted (not demolished)",
    "buildings_on_map": "buildings with a footprint",
    "footprints": "reference footprints in the community",
    "footprints_covered": "reference footprints at least half covered by on-map buildings",
    "buildings_labeled": "on-map buildings with a standard address's door plate within 30 m",
    "residents": "active residents at today's date",
    "residents_on_map": "active residents whose room is in an on-map building",
    "organizations": "organizations open at today's date",
    "organizations_on_map": "open organizations whose building (or room's) is on the map",
}


def published(counts: FromClause, name: str) -> ColumnElement:
    """A count as the caller may see it: person counts from 1 to 4 are null for the gis
    role (``registry_disclose``, migration 0006; registry/disclosure.py)."""
    if name in PERSON_COUNTS:
        return func.registry_disclose(counts.c[name])
    return counts.c[name]


def communities_source(at: Moment | None = None) -> FromClause:
    """Communities with today's rates: counts per community joined to the boundary."""
    community = table_at(models.Community.__table__, at)
    counts = community_counts() if at is None else community_counts_at(COUNTS)
    return (
        select(
            community.c.code.label("id"),
            community.c.code.label("code"),
            community.c.name,
            community.c.street_code,
            community.c.street_name,
            community.c.district_code,
            community.c.district_name,
            *(published(counts, name).label(name) for name in COUNT_DESCRIPTIONS),
            *(
                ratio(published(counts, n), published(counts, d)).label(rate)
                for rate, (n, d) in RATES.items()
            ),
            community.c.updated_at,
            community.c.boundary.label("geom"),
        )
        .join_from(community, counts, counts.c.code == community.c.code)
        .subquery("communities")
    )


COMMUNITIES = Collection(
    id="communities",
    title="社区 Communities",
    description="Communities with their boundaries and today's on-map, coverage, labelling "
    "and population rates with numerators and denominators (docs/rates.md).",
    geometry_type="MultiPolygon",
    properties=(
        Property("code", "string", "12-digit community code (NBS 统计用区划代码)"),
        Property("name", "string", "community name"),
        Property("street_code", "string", "9-digit street (街道) code"),
        Property("street_name", "string", "street name"),
        Property("district_code", "string", "6-digit district (区) code"),
        Property("district_name", "string", "district name"),
        *(Property(n, "integer", d, filterable=False) for n, d in COUNT_DESCRIPTIONS.items()),
        *(Property(r, "number", d, filterable=False) for r, d in RATE_DESCRIPTIONS.items()),
    ),
    source=communities_source,
    table="community",
    geometry_column="boundary",
    min_zoom=8,
    max_zoom=22,
    params=lambda at=None: counts_params(at) if at else {"as_of": dt.date.today()},
)


# ---------------------------------------------------------------- buildings


def address_label(address: Any) -> ColumnElement:
    """road + house number + compound + building number, e.g. 鲁磨路 118号 光谷小区 3栋."""
    return func.concat_ws(
        " ", address.c.road, address.c.house_number, address.c.compound, address.c.building_no
    )


def buildings_source(at: Moment | None = None) -> FromClause:
    building = table_at(models.Building.__table__, at)
    address = table_at(models.Address.__table__, at)
    label = (
        select(func.string_agg(address_label(address), literal_column("'; '")))
        .where(address.c.building_id == building.c.id, address.c.status == "active")
        .scalar_subquery()
    )
    return select(
        building.c.id,
        building.c.name,
        building.c.community_code,
        building.c.floors,
        building.c.use,
        building.c.status,
        building.c.verification,
        building.c.verified_at,
        label.label("address_label"),
        building.c.updated_at,
        building.c.footprint.label("geom"),
        building.c.footprint_3857.label("geom_3857"),
    ).subquery("buildings")


BUILDINGS = Collection(
    id="buildings",
    title="楼栋 Buildings",
    description="Registered buildings (实有房屋) with their footprints, field verification "
    "state and the standard addresses that label them. Buildings not yet on the map have "
    "a null geometry.",
    geometry_type="MultiPolygon",
    properties=(
        Property("name", "string", "building name"),
        Property("community_code", "string", "12-digit community code"),
        Property("floors", "integer", "number of floors above ground"),
        Property("use", "string", "use (住宅, 商业, ...)"),
        Property("status", "string", "lifecycle status", enum=models.BUILDING_STATUSES),
        Property("verification", "string", "field verification", enum=models.VERIFICATION_STATES),
        Property("verified_at", "date-time", "last field verification", filterable=False),
        Property(
            "address_label",
            "string",
            "active standard addresses naming the building",
            filterable=False,
        ),
    ),
    source=buildings_source,
    table="building",
    geometry_column="footprint",
    min_zoom=12,
    tile_feature_cap=15_000,
    mercator=True,
)


# ---------------------------------------------------------------- addresses


def addresses_source(at: Moment | None = None) -> FromClause:
    address = table_at(models.Address.__table__, at)
    return select(
        address.c.code.label("id"),
        address.c.code,
        address.c.community_code,
        address.c.building_id,
        address.c.road,
        address.c.house_number,
        address.c.compound,
        address.c.building_no,
        address_label(address).label("label"),
        address.c.status,
        address.c.updated_at,
        address.c.door_plate.label("geom"),
    ).subquery("addresses")


ADDRESSES = Collection(
    id="addresses",
    title="标准地址 Standard addresses",
    description="Standard addresses with their door-plate (门牌) points.",
    geometry_type="Point",
    properties=(
        Property("code", "string", "permanent standard address code"),
        Property("community_code", "string", "12-digit community code"),
        Property("building_id", "string", "the building the address labels"),
        Property("road", "string", "街路巷 road"),
        Property("house_number", "string", "门牌号 house number"),
        Property("compound", "string", "小区 compound"),
        Property("building_no", "string", "楼栋号 building number"),
        Property("label", "string", "the address as one line", filterable=False),
        Property("status", "string", "lifecycle status", enum=models.ADDRESS_STATUSES),
    ),
    source=addresses_source,
    table="address",
    geometry_column="door_plate",
    min_zoom=15,
)


# ---------------------------------------------------------------- footprints


def footprints_source(at: Moment | None = None) -> FromClause:
    footprint = table_at(models.Footprint.__table__, at)
    community = table_at(models.Community.__table__, at)
    owner = (
        select(community.c.code)
        .where(func.ST_Contains(community.c.boundary, footprint.c.anchor))
        .order_by(community.c.code)
        .limit(1)
        .scalar_subquery()
    )
    return select(
        footprint.c.id,
        footprint.c.source,
        owner.label("community_code"),
        footprint.c.updated_at,
        footprint.c.geom,
        footprint.c.geom_3857,
    ).subquery("footprints")


FOOTPRINTS = Collection(
    id="footprints",
    title="参考轮廓 Reference footprints",
    description="Reference building outlines from base maps: the outside truth that "
    "coverage is measured against.",
    geometry_type="MultiPolygon",
    properties=(
        Property("source", "string", "where the outline comes from"),
        Property(
            "community_code",
            "string",
            "community containing its point-on-surface",
            filterable=False,
        ),
    ),
    source=footprints_source,
    table="footprint",
    geometry_column="geom",
    min_zoom=13,
    tile_feature_cap=15_000,
    mercator=True,
)


# ---------------------------------------------------------------- coverage gaps


def coverage_gaps_source(at: Moment | None = None) -> FromClause:
    if at is not None:
        raise HistoryError("coverage-gaps has no history: read it now, or the rates at a date")
    from registry.gaps import coverage_gaps

    return coverage_gaps()


COVERAGE_GAPS = Collection(
    id="coverage-gaps",
    title="覆盖缺口 Coverage gaps",
    description="Reference footprints in a community that on-map buildings do not cover "
    "(less than half their area): the buildings still to be drawn.",
    geometry_type="MultiPolygon",
    properties=(
        Property("source", "string", "where the outline comes from"),
        Property("community_code", "string", "12-digit community code"),
        Property("community_name", "string", "community name", filterable=False),
        Property(
            "covered_share",
            "number",
            "share of its area covered by on-map buildings",
            filterable=False,
        ),
    ),
    source=coverage_gaps_source,
    table="footprint",
    geometry_column="geom",
    min_zoom=12,
)


# ---------------------------------------------------------------- organizations


def iso_date(column: ColumnElement) -> ColumnElement:
    """A date as ``YYYY-MM-DD`` text, which sorts and compares as the date does."""
    return func.to_char(column, literal_column("'YYYY-MM-DD'"))


def organizations_source(at: Moment | None = None) -> FromClause:
    """Organizations at the point-on-surface of their building (named, or their room's),
    null geometry when that building is not on the map (demolished, or no footprint)."""
    organization = table_at(models.Organization.__table__, at)
    room = table_at(models.Room.__table__, at)
    building = table_at(models.Building.__table__, at)
    today = func.current_date() if at is None else literal(at.as_of)
    on_map = and_(
        building.c.status != "demolished",
        building.c.footprint.is_not(None),
        ~func.ST_IsEmpty(building.c.footprint),
    )
    active = and_(
        or_(organization.c.opened.is_(None), organization.c.opened <= today),
        or_(organization.c.closed.is_(None), organization.c.closed > today),
    )
    return (
        select(
            organization.c.uscc.label("id"),
            organization.c.uscc,
            organization.c.name,
            organization.c.community_code,
            func.coalesce(organization.c.building_id, room.c.building_id).label("building_id"),
            organization.c.room_id,
            organization.c.category,
            iso_date(organization.c.opened).label("opened"),
            iso_date(organization.c.closed).label("closed"),
            active.label("active"),
            organization.c.updated_at,
            case((on_map, func.ST_PointOnSurface(building.c.footprint))).label("geom"),
        )
        .select_from(organization)
        .outerjoin(room, room.c.id == organization.c.room_id)
        .outerjoin(
            building,
            building.c.id == func.coalesce(organization.c.building_id, room.c.building_id),
        )
        .subquery("organizations")
    )


ORGANIZATIONS = Collection(
    id="organizations",
    title="实有单位 Organizations",
    description="Organizations (实有单位) keyed by their unified social credit code (GB 32100), "
    "at the point-on-surface of their building's footprint; null geometry when the "
    "building is not on the map or the organization is placed nowhere. Employees are "
    "personal data: GET /organizations/{uscc}/employees (officer and station only).",
    geometry_type="Point",
    properties=(
        Property("uscc", "string", "18-character unified social credit code (GB 32100)"),
        Property("name", "string", "organization name"),
        Property("community_code", "string", "12-digit community code"),
        Property("building_id", "string", "its building, named or that of its room"),
        Property("room_id", "string", "its room, if placed in one"),
        Property("category", "string", "category (retail, clinic, ...)"),
        Property("opened", "string", "opening date, YYYY-MM-DD", filterable=False),
        Property("closed", "string", "closing date, YYYY-MM-DD", filterable=False),
        Property("active", "boolean", "open today", filterable=False),
    ),
    source=organizations_source,
    table="building",  # extents: an organization lies in a building footprint
    geometry_column="footprint",
    min_zoom=15,
)


COLLECTIONS: dict[str, Collection] = {
    c.id: c for c in (COMMUNITIES, BUILDINGS, ADDRESSES, FOOTPRINTS, COVERAGE_GAPS, ORGANIZATIONS)
}


class UnknownCollectionError(KeyError):
    def __str__(self) -> str:
        return f"no collection {self.args[0]!r}; collections: {', '.join(COLLECTIONS)}"


def get_collection(collection_id: str) -> Collection:
    try:
        return COLLECTIONS[collection_id]
    except KeyError:
        raise UnknownCollectionError(collection_id) from None
