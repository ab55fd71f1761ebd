"""Feature queries for the OGC API: GeoJSON built in the database, paged by keyset.

Every query here returns one row per feature: its id and the feature as GeoJSON text,
assembled by PostgreSQL, so the API only streams bytes. Paging is by ``id > :after``
with ``ORDER BY id`` — the cost of a page does not grow with its depth, and a page
boundary stays correct while rows are inserted elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    Float,
    FromClause,
    Select,
    String,
    Text,
    and_,
    bindparam,
    cast,
    func,
    literal,
    null,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import aggregate_order_by
from sqlalchemy.sql.elements import ColumnElement

from geo.crs import DEFAULT, STORAGE_SRID, Crs
from registry.collections import Collection
from registry.history import Moment

MAX_COUNT = 100_000
"""numberMatched is reported only when at most this many features match."""


@dataclass(frozen=True)
class Bbox:
    """A bounding box in ``crs`` (min x, min y, max x, max y in PostGIS x/y order)."""

    minx: float
    miny: float
    maxx: float
    maxy: float
    crs: Crs = DEFAULT

    def envelope(self) -> ColumnElement:
        """The box as a polygon in the storage CRS, for an indexable ``&&`` test."""
        srid = self.crs.srid
        box = func.ST_MakeEnvelope(
            bindparam(None, self.minx, Float),
            bindparam(None, self.miny, Float),
            bindparam(None, self.maxx, Float),
            bindparam(None, self.maxy, Float),
            bindparam(None, srid),
        )
        if srid == STORAGE_SRID:
            return box
        # densify so that a projected box keeps its shape once transformed
        return func.ST_Transform(
            func.ST_Segmentize(box, bindparam(None, densify_step(self))),
            bindparam(None, STORAGE_SRID),
        )


def densify_step(bbox: Bbox) -> float:
    return max(bbox.maxx - bbox.minx, bbox.maxy - bbox.miny) / 16 or 1.0


@dataclass(frozen=True)
class ItemsQuery:
    """What a client asked of a collection's items."""

    collection: Collection
    limit: int = 1000
    after: str | None = None
    bbox: Bbox | None = None
    equals: Mapping[str, Any] = field(default_factory=dict)
    filter: ColumnElement[bool] | None = None
    crs: Crs = DEFAULT


def geometry_json(geom: ColumnElement, crs: Crs) -> ColumnElement[str]:
    """The geometry as GeoJSON text in ``crs``, in that CRS's axis order."""
    out = geom
    if crs.srid != STORAGE_SRID:
        out = func.ST_Transform(out, literal(crs.srid))
    if crs.swap_axes:
        out = func.ST_FlipCoordinates(out)
    digits = 8 if crs.srid in (4326, 4490) else 3  # ~1 mm in degrees or metres
    return func.ST_AsGeoJSON(out, literal(digits))


def feature_json(source: FromClause, collection: Collection, crs: Crs) -> ColumnElement[str]:
    """One GeoJSON Feature as text, concatenated so the geometry is never re-parsed."""
    properties = func.json_build_object(
        *(arg for name in collection.property_names for arg in (literal(name), source.c[name]))
    )
    return func.concat(
        literal('{"type":"Feature","id":'),
        cast(func.to_json(source.c.id), Text),
        literal(',"geometry":'),
        func.coalesce(geometry_json(source.c.geom, crs), literal("null")),
        literal(',"properties":'),
        cast(properties, Text),
        literal("}"),
    )


def conditions(source: FromClause, query: ItemsQuery) -> list[ColumnElement[bool]]:
    """The WHERE clauses every items query shares (bbox, equality filters, CQL2)."""
    where: list[ColumnElement[bool]] = []
    if query.bbox is not None:
        envelope = query.bbox.envelope()
        where.append(source.c.geom.op("&&")(envelope))
        where.append(func.ST_Intersects(source.c.geom, envelope))
    for name, value in query.equals.items():
        where.append(source.c[name] == value)
    if query.filter is not None:
        where.append(query.filter)
    return where


def items_select(query: ItemsQuery, source: FromClause | None = None) -> Select:
    """A page: (id, feature) rows ordered by id, one more than the limit to see if more follow."""
    source = source if source is not None else query.collection.source()
    where = conditions(source, query)
    if query.after is not None:
        where.append(source.c.id > bindparam("after", query.after, String))
    return (
        select(source.c.id, feature_json(source, query.collection, query.crs).label("feature"))
        .where(and_(true(), *where))
        .order_by(source.c.id)
        .limit(query.limit + 1)
    )


def page_select(page: Select, limit: int, count: Select | None = None) -> Select:
    """A whole page in one row and one round trip, from :func:`items_select`'s ``page``:
    ``features`` (the Features joined by commas, in id order; null when none),
    ``returned``, ``last_id``, ``more`` (whether a next page exists) and ``matched``
    (from ``count``, or null). A page is at most 10,000 features, a few megabytes."""
    rows = page.cte("page")
    kept = select(rows.c.id, rows.c.feature).order_by(rows.c.id).limit(limit).subquery("kept")
    joined = func.string_agg(kept.c.feature, aggregate_order_by(literal(","), kept.c.id))
    matched = count.scalar_subquery() if count is not None else null()
    return select(
        select(joined).scalar_subquery().label("features"),
        select(func.count()).select_from(kept).scalar_subquery().label("returned"),
        select(func.max(kept.c.id)).scalar_subquery().label("last_id"),
        (select(func.count()).select_from(rows).scalar_subquery() > limit).label("more"),
        matched.label("matched"),
    )


def count_select(query: ItemsQuery, source: FromClause | None = None) -> Select:
    """The number of matching features, or MAX_COUNT + 1 when there are more than that."""
    source = source if source is not None else query.collection.source()
    matching = (
        select(literal(1))
        .select_from(source)
        .where(and_(true(), *conditions(source, query)))
        .limit(MAX_COUNT + 1)
        .subquery("matching")
    )
    return select(func.count()).select_from(matching)


def item_select(
    collection: Collection, feature_id: str, crs: Crs, at: Moment | None = None
) -> Select:
    """One feature by id, now or (``at``) as valid and known then."""
    source = collection.source(at)
    return select(feature_json(source, collection, crs)).where(
        source.c.id == bindparam("feature_id", feature_id, String)
    )


def estimated_extent_select(collection: Collection) -> Select:
    """The planner's estimate of the table's bounding box (lon/lat): instant, null when the
    table has not been analysed. An overestimate, which an extent may be."""
    box = func.ST_EstimatedExtent(literal(collection.table), literal(collection.geometry_column))
    return select(func.ST_XMin(box), func.ST_YMin(box), func.ST_XMax(box), func.ST_YMax(box))


def exact_extent_select(collection: Collection) -> Select:
    """The bounding box of the collection's features, computed (a full scan)."""
    box = select(func.ST_Extent(collection.source().c.geom)).scalar_subquery()
    return select(func.ST_XMin(box), func.ST_YMin(box), func.ST_XMax(box), func.ST_YMax(box))
