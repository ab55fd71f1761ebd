"""Geometry checks applied to imported building footprints and address points.

Footprints are stored as 2D MultiPolygons. Invalid polygons are repaired with GEOS MakeValid
(the algorithm behind PostGIS ``ST_MakeValid``) so that the repair done here matches what the
database would do, and the repair is reported as a warning rather than silently applied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Point, Polygon


@dataclass(frozen=True, slots=True)
class PolygonResult:
    """Outcome of :func:`prepare_footprint`; ``geometry`` is None when ``error`` is set."""

    geometry: MultiPolygon | None
    error: str | None = None
    warning: str | None = None


@dataclass(frozen=True, slots=True)
class PointResult:
    """Outcome of :func:`prepare_point`; ``geometry`` is None when ``error`` is set."""

    geometry: Point | None
    error: str | None = None


def to_multipolygon(geom: Polygon | MultiPolygon) -> MultiPolygon:
    """Return ``geom`` as a 2D MultiPolygon (a Polygon becomes a one-part MultiPolygon)."""
    geom = shapely.force_2d(geom)
    if isinstance(geom, MultiPolygon):
        return geom
    if isinstance(geom, Polygon):
        return MultiPolygon() if geom.is_empty else MultiPolygon([geom])
    raise TypeError(f"expected Polygon or MultiPolygon, got {_type_name(geom)}")


def _type_name(geom: object) -> str:
    return getattr(geom, "geom_type", type(geom).__name__)


def _polygonal_parts(geom: shapely.Geometry) -> MultiPolygon:
    """Keep only the polygons with area from a MakeValid result (which may mix in lines/points)."""
    parts = shapely.get_parts(geom)
    # A GeometryCollection may hold a MultiPolygon: flatten until only single parts remain.
    while (shapely.get_type_id(parts) >= shapely.GeometryType.MULTIPOINT).any():
        parts = shapely.get_parts(parts)
    is_poly = shapely.get_type_id(parts) == shapely.GeometryType.POLYGON
    polys = parts[is_poly & (shapely.area(parts) > 0)].tolist()
    result = MultiPolygon(polys)
    # MakeValid's polygonal output does not overlap, but never hand out an invalid result.
    return result if result.is_valid else to_multipolygon(shapely.union_all(polys))


def prepare_footprint(geom: shapely.Geometry | None) -> PolygonResult:
    """Validate a building footprint and return it as a valid 2D MultiPolygon.

    None passes through (whether a footprint is required is the caller's decision). Invalid
    polygons are repaired with MakeValid and reported in ``warning``; valid ones come back
    with their coordinates untouched.
    """
    if geom is None:
        return PolygonResult(None)
    if not isinstance(geom, Polygon | MultiPolygon):
        return PolygonResult(
            None, error=f"geometry must be Polygon or MultiPolygon, got {_type_name(geom)}"
        )
    if geom.is_empty:
        return PolygonResult(None, error="polygon is empty")
    multi = to_multipolygon(geom)
    if multi.is_valid:
        return PolygonResult(multi)

    reason = shapely.is_valid_reason(multi)
    repaired = _polygonal_parts(shapely.make_valid(multi))
    if repaired.is_empty:
        return PolygonResult(None, error=f"polygon has no area ({reason})")
    return PolygonResult(repaired, warning=f"invalid polygon repaired: {reason}")


def prepare_point(geom: shapely.Geometry | None) -> PointResult:
    """Validate an address point and return it in 2D; None passes through as for footprints."""
    if geom is None:
        return PointResult(None)
    if not isinstance(geom, Point):
        return PointResult(None, error=f"geometry must be Point, got {_type_name(geom)}")
    if geom.is_empty:
        return PointResult(None, error="point is empty")
    point = shapely.force_2d(geom)
    if not np.isfinite(shapely.get_coordinates(point)).all():
        return PointResult(None, error="point has non-finite coordinates")
    return PointResult(point)
