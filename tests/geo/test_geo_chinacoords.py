"""GCJ-02 / BD-09 conversions: published reference values, round trips, input guards."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from pyproj import Geod
from shapely import affinity
from shapely.geometry import MultiPolygon, Point, Polygon

from geo.chinacoords import (
    SUPPORTED_CRS,
    OutsideChinaError,
    SwappedAxesError,
    _gcj02_offset,
    bd09_to_gcj02,
    bd09_to_wgs84,
    from_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    to_wgs84,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)

GEOD = Geod(ellps="WGS84")
WUHAN = (114.30, 30.59)


def distance_m(lon1, lat1, lon2, lat2) -> np.ndarray:
    return np.asarray(GEOD.inv(lon1, lat1, lon2, lat2)[2])


@pytest.fixture(scope="module")
def china_grid() -> tuple[np.ndarray, np.ndarray]:
    """1,000 fixed random points across China, kept away from the extent's edges."""
    rng = np.random.default_rng(20240601)
    return rng.uniform(73.5, 135.5, 1000), rng.uniform(18.0, 53.0, 1000)


def test_published_reference_values() -> None:
    # Values printed in the README of the widely used wandergis/coordtransform library.
    assert wgs84_to_gcj02(116.404, 39.915) == pytest.approx(
        (116.41024449916938, 39.91640428150164), abs=1e-12
    )
    assert gcj02_to_bd09(116.404, 39.915) == pytest.approx(
        (116.41036949371029, 39.92133699351021), abs=1e-12
    )
    assert wgs84_to_bd09(116.404, 39.915) == pytest.approx(
        (116.41662724378733, 39.922699552216216), abs=1e-12
    )


def test_wuhan_offsets_have_the_known_size() -> None:
    gcj = wgs84_to_gcj02(*WUHAN)
    bd = wgs84_to_bd09(*WUHAN)
    assert 200 < distance_m(*WUHAN, *gcj) < 700
    assert 800 < distance_m(*WUHAN, *bd) < 1500


@pytest.mark.parametrize(
    ("forward", "inverse"),
    [(wgs84_to_gcj02, gcj02_to_wgs84), (wgs84_to_bd09, bd09_to_wgs84)],
    ids=["gcj02", "bd09"],
)
def test_round_trip_below_one_centimetre(china_grid, forward, inverse) -> None:
    lon, lat = china_grid
    back_lon, back_lat = inverse(*forward(lon, lat))
    err = distance_m(lon, lat, back_lon, back_lat)
    assert err.max() < 0.01, f"max round-trip error {err.max():.3g} m"


def test_bd09_to_gcj02_inverts_gcj02_to_bd09(china_grid) -> None:
    lon, lat = china_grid
    back_lon, back_lat = bd09_to_gcj02(*gcj02_to_bd09(lon, lat))
    assert distance_m(lon, lat, back_lon, back_lat).max() < 0.01


def test_one_step_inverse_is_not_good_enough_in_wuhan() -> None:
    """Subtracting the offset once is metres off; the iterative inverse is not."""
    lon, lat = (
        a.ravel() for a in np.meshgrid(np.linspace(114.0, 114.6, 25), np.linspace(30.3, 30.9, 25))
    )
    gcj_lon, gcj_lat = wgs84_to_gcj02(lon, lat)
    dlon, dlat = _gcj02_offset(gcj_lon, gcj_lat)
    one_step = distance_m(lon, lat, gcj_lon - dlon, gcj_lat - dlat)
    iterated = distance_m(lon, lat, *gcj02_to_wgs84(gcj_lon, gcj_lat))
    assert one_step.max() > 0.5
    assert iterated.max() < 0.001


def test_scalar_in_float_out() -> None:
    result = gcj02_to_wgs84(*WUHAN)
    assert isinstance(result, tuple)
    assert all(type(v) is float for v in result)


def test_arrays_broadcast_and_keep_shape() -> None:
    lon = np.array([[114.30, 114.31], [114.32, 114.33]])
    out_lon, out_lat = wgs84_to_gcj02(lon, 30.59)
    assert isinstance(out_lon, np.ndarray)
    assert out_lon.shape == out_lat.shape == (2, 2)
    assert (out_lon[1, 0], out_lat[1, 0]) == pytest.approx(wgs84_to_gcj02(114.32, 30.59), abs=1e-12)


def test_keyword_arguments() -> None:
    assert wgs84_to_gcj02(lat=30.59, lon=114.30) == wgs84_to_gcj02(114.30, 30.59)


def test_input_array_is_not_modified() -> None:
    lon = np.array([114.30, 114.31])
    lat = np.array([30.59, 30.60])
    gcj02_to_wgs84(lon, lat)
    np.testing.assert_array_equal(lon, [114.30, 114.31])
    np.testing.assert_array_equal(lat, [30.59, 30.60])


@pytest.mark.parametrize(
    "func", [wgs84_to_gcj02, gcj02_to_bd09, wgs84_to_bd09, gcj02_to_wgs84, bd09_to_wgs84]
)
def test_outside_china_raises(func) -> None:
    with pytest.raises(OutsideChinaError, match=r"index 1 \(lon=2\.35, lat=48\.85\)") as info:
        func([114.30, 2.35], [30.59, 48.85])  # Wuhan, then Paris
    assert not isinstance(info.value, SwappedAxesError)
    assert (info.value.index, info.value.lon, info.value.lat) == (1, 2.35, 48.85)
    assert "outside China" in str(info.value)


def test_nan_is_outside_china() -> None:
    with pytest.raises(OutsideChinaError, match="index 0"):
        gcj02_to_wgs84(np.nan, 30.0)


@pytest.mark.parametrize("func", [wgs84_to_gcj02, bd09_to_wgs84])
def test_swapped_axes_raise(func) -> None:
    with pytest.raises(SwappedAxesError, match=r"looks like \(lat, lon\)") as info:
        func(30.59, 114.30)
    assert isinstance(info.value, ValueError)
    assert info.value.index == 0


def test_errors_are_value_errors() -> None:
    assert issubclass(OutsideChinaError, ValueError)
    assert issubclass(SwappedAxesError, ValueError)


# --- geometries -------------------------------------------------------------------------------

BUILDING = Polygon(
    [(114.3000, 30.5900), (114.3004, 30.5900), (114.3004, 30.5903), (114.3000, 30.5903)]
)


@pytest.mark.parametrize("crs", ["GCJ-02", "BD-09"])
@pytest.mark.parametrize(
    "geom",
    [
        BUILDING,
        MultiPolygon([BUILDING, affinity.translate(BUILDING, 0.001, 0.001)]),
        Point(114.30, 30.59),
    ],
    ids=["polygon", "multipolygon", "point"],
)
def test_geometry_round_trip(geom, crs) -> None:
    shifted = from_wgs84(geom, crs)
    assert shifted.geom_type == geom.geom_type
    # The web-map version is hundreds of metres away ...
    assert shapely.hausdorff_distance(shifted, geom) > 0.001
    back = to_wgs84(shifted, crs)
    # ... and comes back to well below a centimetre (1e-9 degrees is about 0.1 mm).
    assert back.geom_type == geom.geom_type
    assert shapely.equals_exact(back, geom, tolerance=1e-9)


def test_geometry_matches_point_functions() -> None:
    shifted = from_wgs84(BUILDING, "GCJ-02")
    expected = np.column_stack(wgs84_to_gcj02(*shapely.get_coordinates(BUILDING).T))
    np.testing.assert_allclose(shapely.get_coordinates(shifted), expected, rtol=0, atol=1e-12)


def test_geometry_array_is_vectorised() -> None:
    geoms = np.array([BUILDING, Point(114.30, 30.59), None], dtype=object)
    shifted = from_wgs84(geoms, "BD-09")
    assert isinstance(shifted, np.ndarray)
    assert shifted[2] is None
    back = to_wgs84(shifted, "BD-09")
    assert shapely.equals_exact(back[:2], geoms[:2], tolerance=1e-9).all()


@pytest.mark.parametrize("crs", ["EPSG:4490", "EPSG:4326"])
def test_cgcs2000_and_wgs84_are_unchanged(crs) -> None:
    assert to_wgs84(BUILDING, crs) is BUILDING
    assert from_wgs84(BUILDING, crs) is BUILDING


def test_unknown_crs_lists_accepted_names() -> None:
    with pytest.raises(ValueError, match="EPSG:4490, EPSG:4326, GCJ-02, BD-09"):
        to_wgs84(BUILDING, "EPSG:3857")
    assert SUPPORTED_CRS == ("EPSG:4490", "EPSG:4326", "GCJ-02", "BD-09")


def test_geometry_outside_china_raises() -> None:
    with pytest.raises(OutsideChinaError, match="index 0"):
        to_wgs84(Point(2.35, 48.85), "GCJ-02")
    with pytest.raises(SwappedAxesError):
        to_wgs84(Point(30.59, 114.30), "BD-09")
