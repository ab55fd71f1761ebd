"""A small Python API for analysts: rates, communities, gaps and quality checks as
(Geo)DataFrames, computed in the database, for notebooks and scheduled reports.

Every function takes an optional ``engine`` (default: :func:`connect`, which resolves the
database as the CLI does), a community-code prefix ``code`` and, where residents count,
an ``as_of`` date. Geometry comes in EPSG:4490 (CGCS2000), or in metres with
``crs=4547`` (CGCS2000 / 3-degree Gauss-Kruger CM 114E). Persons never appear: gaps and
checks about residents count them per building.

>>> from registry import analysis
>>> analysis.GAP_KINDS[:2]
('buildings_not_on_map', 'buildings_not_labeled')
>>> analysis.check_crs(4547)
4547
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely
from sqlalchemy import (
    Date,
    Engine,
    Integer,
    String,
    bindparam,
    column,
    func,
    or_,
    select,
    text,
)
from sqlalchemy.sql import Select

from registry import models
from registry.checks import run_checks
from registry.db import check_schema, make_engine, transaction
from registry.gaps import building_gaps, coverage_gaps
from registry.rates import FIELDS, check_code_prefix, compute_rates
from registry.settings import RegistryError, Settings, resolve_database_url

GAP_KINDS = (
    "buildings_not_on_map",
    "buildings_not_labeled",
    "footprints_not_covered",
    "residents_not_on_map",
)
CRSS = (4490, 4547)


def connect(url: str | None = None) -> Engine:
    """An engine on ``url``, else on the database the CLI would use (``DATABASE_URL`` or
    the running embedded cluster), checked to be migrated to the current schema.

    A notebook opened in ``notebooks/`` runs one directory below the clone, so without
    ``REGISTRY_HOME`` the embedded cluster's home is looked for upwards from here too.
    """
    settings = Settings()
    if not url and not settings.database_url and "REGISTRY_HOME" not in os.environ:
        settings = Settings(home=nearest_home(Path.cwd()) or settings.home)
    engine = make_engine(url or resolve_database_url(settings))
    check_schema(engine)
    return engine


def nearest_home(start: Path) -> Path | None:
    """The closest ``.registry`` with an embedded cluster in ``start`` or above it."""
    for folder in (start, *start.parents):
        if (folder / ".registry" / "cluster.json").exists():
            return folder / ".registry"
    return None


def check_crs(crs: int) -> int:
    """The EPSG code if the API offers it: 4490 (degrees) or 4547 (metres)."""
    if crs not in CRSS:
        raise RegistryError(f"crs must be one of {', '.join(map(str, CRSS))}, not {crs}")
    return crs


def _engine(engine: Engine | None) -> Engine:
    return engine or connect()


def _date(as_of: dt.date | str | None) -> dt.date:
    if as_of is None:
        return dt.date.today()
    if isinstance(as_of, str):
        try:
            return dt.date.fromisoformat(as_of)
        except ValueError:
            raise RegistryError(f"as_of {as_of!r} is not a date (YYYY-MM-DD)") from None
    return as_of


def _geom(expression: Any, crs: int) -> Any:
    """``expression`` (stored in 4490) in ``crs``, as WKB labelled ``geom``."""
    transformed = expression if crs == 4490 else func.ST_Transform(expression, crs)
    return func.ST_AsBinary(transformed).label("geom")


def _frame(engine: Engine, query: Select, crs: int, params: dict[str, Any]) -> gpd.GeoDataFrame:
    """Run ``query`` (bound values, plus ``params`` for its named parameters)."""
    with engine.connect() as conn:
        result = conn.execute(query, params)
        frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
    wkb = [bytes(value) if value is not None else None for value in frame.pop("geom")]
    return gpd.GeoDataFrame(frame, geometry=shapely.from_wkb(wkb), crs=f"EPSG:{crs}")


# ---------------------------------------------------------------- rates and communities


def rates(
    level: str = "community",
    code: str | None = None,
    as_of: dt.date | str | None = None,
    engine: Engine | None = None,
) -> pd.DataFrame:
    """The rates as ``registry rates --format json`` gives them: one row per community
    (or street, district, city), numerators and denominators beside each rate."""
    with transaction(_engine(engine)) as session:
        rows = compute_rates(session, level, code, _date(as_of))  # type: ignore[arg-type]
    return pd.DataFrame(rows, columns=list(FIELDS))


def communities(
    code: str | None = None,
    as_of: dt.date | str | None = None,
    crs: int = 4490,
    engine: Engine | None = None,
) -> gpd.GeoDataFrame:
    """Communities with their boundaries and their rates (null geometry: no boundary)."""
    engine, crs = _engine(engine), check_crs(crs)
    check_code_prefix(code)
    table = rates("community", code, as_of, engine)
    community = models.Community.__table__
    query = select(community.c.code, _geom(community.c.boundary, crs))
    if code:
        query = query.where(community.c.code.startswith(code, autoescape=True))
    shapes = _frame(engine, query, crs, {})
    merged = table.merge(shapes, on="code", how="left")
    return gpd.GeoDataFrame(merged, geometry="geometry", crs=f"EPSG:{crs}")


# ---------------------------------------------------------------- gaps


def gaps(
    kind: str,
    code: str | None = None,
    as_of: dt.date | str | None = None,
    crs: int = 4490,
    engine: Engine | None = None,
) -> gpd.GeoDataFrame:
    """What keeps one rate below 100%, one row per item to fix (see :data:`GAP_KINDS`).

    - ``buildings_not_on_map``: id, community_code, name, status; the geometry is the
      door plate of an active address naming the building, if any (it has no outline);
    - ``buildings_not_labeled``: id, community_code, name; the outline;
    - ``footprints_not_covered``: id, community_code, covered_share; the outline;
    - ``residents_not_on_map``: community_code, building_id (null: no room), residents
      (a count); the building's outline if it has one.
    """
    if kind not in GAP_KINDS:
        raise RegistryError(f"kind must be one of {', '.join(GAP_KINDS)}, not {kind!r}")
    engine, crs = _engine(engine), check_crs(crs)
    check_code_prefix(code)
    query, community = {
        "buildings_not_on_map": _unmapped_buildings,
        "buildings_not_labeled": _unlabeled_buildings,
        "footprints_not_covered": _uncovered_footprints,
        "residents_not_on_map": _unplaced_residents,
    }[kind](crs)
    if code:
        query = query.where(community.startswith(code, autoescape=True))
    return _frame(engine, query, crs, {"as_of": _date(as_of)})


def _building_gap(kind: str) -> Any:
    items = building_gaps()
    return items, items.c.kind == kind


def _unmapped_buildings(crs: int) -> tuple[Select, Any]:
    items, is_kind = _building_gap("buildings_not_on_map")
    building = models.Building.__table__
    address = models.Address.__table__
    plate = (
        select(address.c.door_plate)
        .where(
            address.c.building_id == building.c.id,
            address.c.status == "active",
            address.c.door_plate.is_not(None),
        )
        .order_by(address.c.code)
        .limit(1)
        .scalar_subquery()
    )
    query = (
        select(building.c.id, building.c.community_code, building.c.name, building.c.status,
               _geom(plate, crs))
        .join_from(items, building, building.c.id == items.c.id)
        .where(is_kind)
        .order_by(building.c.community_code, building.c.id)
    )  # fmt: skip
    return query, building.c.community_code


def _unlabeled_buildings(crs: int) -> tuple[Select, Any]:
    items, is_kind = _building_gap("buildings_not_labeled")
    building = models.Building.__table__
    query = (
        select(building.c.id, building.c.community_code, building.c.name,
               _geom(building.c.footprint, crs))
        .join_from(items, building, building.c.id == items.c.id)
        .where(is_kind)
        .order_by(building.c.community_code, building.c.id)
    )  # fmt: skip
    return query, building.c.community_code


def _uncovered_footprints(crs: int) -> tuple[Select, Any]:
    gaps_ = coverage_gaps()
    query = select(
        gaps_.c.id, gaps_.c.community_code, gaps_.c.covered_share, _geom(gaps_.c.geom, crs)
    ).order_by(gaps_.c.community_code, gaps_.c.id)
    return query, gaps_.c.community_code


def _unplaced_residents(crs: int) -> tuple[Select, Any]:
    """Active residents whose room is not in an on-map building, counted per building:
    the complement of residents_on_map (docs/rates.md)."""
    residence = models.Residence.__table__
    room = models.Room.__table__
    building = models.Building.__table__
    on_map = text("SELECT id FROM on_map_building").columns(column("id", String)).subquery("m")
    as_of = bindparam("as_of", type_=Date())
    query = (
        select(
            residence.c.community_code,
            room.c.building_id,
            func.count().cast(Integer).label("residents"),
            _geom(building.c.footprint, crs),
        )
        .select_from(residence)
        .outerjoin(room, room.c.id == residence.c.room_id)
        .outerjoin(on_map, on_map.c.id == room.c.building_id)
        .outerjoin(building, building.c.id == room.c.building_id)
        .where(
            or_(residence.c.moved_out.is_(None), residence.c.moved_out > as_of),
            on_map.c.id.is_(None),
        )
        # the outline depends on the building's primary key: grouping by it allows it
        .group_by(residence.c.community_code, room.c.building_id, building.c.id)
        .order_by(residence.c.community_code, room.c.building_id.nulls_first())
    )
    return query, residence.c.community_code


# ---------------------------------------------------------------- quality checks


def quality_checks(
    code: str | None = None,
    as_of: dt.date | str | None = None,
    crs: int = 4490,
    engine: Engine | None = None,
) -> gpd.GeoDataFrame:
    """The data-quality findings of the whole catalogue (registry/checks.py,
    docs/quality-checks.md), errors first: check, severity, community_code, target_id,
    detail, geometry. ``check`` is the catalogue code, e.g. ``door_plate_far``."""
    engine, crs = _engine(engine), check_crs(crs)
    check_code_prefix(code)
    with transaction(engine) as session:
        rows = run_checks(session, code=code, as_of=_date(as_of))
    columns = ["check", "severity", "community_code", "target_id", "detail"]
    frame = pd.DataFrame([[row[c] for c in columns] for row in rows], columns=columns)
    shapes = shapely.from_wkb([row["geom"] for row in rows])
    found = gpd.GeoDataFrame(frame, geometry=shapes, crs="EPSG:4490")
    return found if crs == 4490 else found.to_crs(crs)


__all__ = [
    "CRSS",
    "GAP_KINDS",
    "communities",
    "connect",
    "gaps",
    "quality_checks",
    "rates",
]
