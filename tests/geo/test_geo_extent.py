"""China extent checks."""

from __future__ import annotations

import numpy as np
from shapely.geometry import LineString, MultiPolygon, Point, Polygon

from geo.extent import CHINA_BOUNDS, check_extent, in_china


def test_in_china_is_elementwise() -> None:
    lon = np.array([114.3, 2.35, 30.59, 73.0, 136.0, np.nan])
    lat = np.array([30.59, 48.85, 114.3, 3.0, 54.0, 30.0])
    np.testing.assert_array_equal(in_china(lon, lat), [True, False, False, True, True, False])


def test_in_china_scalar() -> None:
    assert bool(in_china(114.3, 30.59))
    assert not bool(in_china(136.01, 30.0))


def test_bounds_constant() -> None:
    assert CHINA_BOUNDS == (73.0, 3.0, 136.0, 54.0)


def test_inside_geometry_passes() -> None:
    poly = Polygon([(114.30, 30.59), (114.31, 30.59), (114.31, 30.60)])
    assert check_extent(poly) is None
    assert check_extent(MultiPolygon([poly])) is None
    assert check_extent(None) is None
    assert check_extent(Polygon()) is None


def test_swapped_coordinate_is_called_swapped() -> None:
    assert check_extent(Point(30.5, 114.3)) == (
        "coordinate (30.5, 114.3) is outside China's extent (73–136 E, 3–54 N); "
        "latitude and longitude look swapped"
    )


def test_outside_coordinate_is_not_called_swapped() -> None:
    assert check_extent(Point(2.35, 48.85)) == (
        "coordinate (2.35, 48.85) is outside China's extent (73–136 E, 3–54 N)"
    )


def test_first_offending_vertex_is_reported() -> None:
    line = LineString([(114.3, 30.5), (500000.0, 3380000.0), (2.35, 48.85)])
    reason = check_extent(line)
    assert reason is not None
    assert reason.startswith("coordinate (500000.0, 3380000.0) is outside")
    assert "swapped" not in reason
