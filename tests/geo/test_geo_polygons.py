"""Footprint and address-point preparation."""

from __future__ import annotations

import dataclasses

import pytest
import shapely
from shapely.geometry import (
    GeometryCollection,
    LineString,
    MultiPolygon,
    Point,
    Polygon,
)

from geo.polygons import PolygonResult, prepare_footprint, prepare_point, to_multipolygon

SQUARE = Polygon([(114.30, 30.59), (114.31, 30.59), (114.31, 30.60), (114.30, 30.60)])
BOW_TIE = Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])


def test_to_multipolygon_promotes_polygon_and_drops_z() -> None:
    poly_z = Polygon([(0, 0, 5), (1, 0, 5), (1, 1, 5)])
    multi = to_multipolygon(poly_z)
    assert isinstance(multi, MultiPolygon)
    assert len(multi.geoms) == 1
    assert not multi.has_z
    assert multi.geoms[0].equals_exact(shapely.force_2d(poly_z), 0)


def test_to_multipolygon_keeps_multipolygon() -> None:
    multi = MultiPolygon([SQUARE])
    assert to_multipolygon(multi).equals_exact(multi, 0)


def test_to_multipolygon_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="LineString"):
        to_multipolygon(LineString([(0, 0), (1, 1)]))


def test_valid_polygon_is_unchanged() -> None:
    result = prepare_footprint(SQUARE)
    assert result.error is None and result.warning is None
    assert isinstance(result.geometry, MultiPolygon)
    assert shapely.equals_exact(result.geometry, MultiPolygon([SQUARE]), tolerance=0)


def test_valid_polygon_with_z_is_flattened_only() -> None:
    square_z = shapely.force_3d(SQUARE, z=12.0)
    result = prepare_footprint(square_z)
    assert result.error is None
    assert not result.geometry.has_z
    assert shapely.equals_exact(result.geometry, MultiPolygon([SQUARE]), tolerance=0)


def test_bow_tie_is_repaired_with_warning() -> None:
    result = prepare_footprint(BOW_TIE)
    assert result.error is None
    assert isinstance(result.geometry, MultiPolygon)
    assert result.geometry.is_valid
    assert len(result.geometry.geoms) == 2
    assert result.geometry.area == pytest.approx(0.5)
    assert result.warning is not None
    assert result.warning.startswith("invalid polygon repaired: Self-intersection")


def test_repair_drops_non_polygonal_parts() -> None:
    # A square with a dangling spike: MakeValid yields polygon + line; only the polygon is kept.
    spiked = Polygon([(0, 0), (2, 0), (2, 2), (0, 2), (0, 0), (-1, -1), (0, 0)])
    result = prepare_footprint(spiked)
    assert result.error is None, result.error
    assert result.warning is not None
    assert isinstance(result.geometry, MultiPolygon)
    assert result.geometry.is_valid
    assert result.geometry.area == pytest.approx(4.0)


def test_zero_area_sliver_is_an_error() -> None:
    result = prepare_footprint(Polygon([(0, 0), (1, 1), (2, 2), (0, 0)]))
    assert result.geometry is None
    assert result.error is not None
    assert result.error.startswith("polygon has no area (")


@pytest.mark.parametrize(
    ("geom", "name"),
    [
        (LineString([(0, 0), (1, 1)]), "LineString"),
        (Point(0, 0), "Point"),
        (GeometryCollection([SQUARE]), "GeometryCollection"),
    ],
)
def test_non_polygon_is_an_error(geom, name) -> None:
    result = prepare_footprint(geom)
    assert result == PolygonResult(
        None, error=f"geometry must be Polygon or MultiPolygon, got {name}"
    )


@pytest.mark.parametrize("geom", [Polygon(), MultiPolygon()])
def test_empty_polygon_is_an_error(geom) -> None:
    assert prepare_footprint(geom) == PolygonResult(None, error="polygon is empty")


def test_missing_footprint_is_not_an_error_here() -> None:
    assert prepare_footprint(None) == PolygonResult(None, error=None, warning=None)


def test_result_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        prepare_footprint(SQUARE).warning = "x"  # type: ignore[misc]


def test_prepare_point() -> None:
    result = prepare_point(Point(114.3, 30.59, 20.0))
    assert result.error is None
    assert result.geometry is not None
    assert not result.geometry.has_z
    assert (result.geometry.x, result.geometry.y) == (114.3, 30.59)


@pytest.mark.parametrize(
    ("geom", "error"),
    [
        (SQUARE, "geometry must be Point, got Polygon"),
        (Point(), "point is empty"),
        (Point(float("inf"), 30.0), "point has non-finite coordinates"),
    ],
)
def test_prepare_point_errors(geom, error) -> None:
    result = prepare_point(geom)
    assert result.geometry is None
    assert result.error == error


def test_missing_point_is_not_an_error_here() -> None:
    result = prepare_point(None)
    assert result.geometry is None and result.error is None
