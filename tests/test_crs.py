"""The hand bundle delivered in GCJ-02 or BD-09 loads to the same places and rates.

The bundle's geometry is converted from EPSG:4490 with the forward GCJ-02 / BD-09
formulas; the importer's iterative inverse must bring every vertex back within 1 cm.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import shapely
from geoalchemy2.shape import to_shape
from pyproj import Geod
from sqlalchemy import select

from registry.bundle.load import load_bundle
from registry.models import Address, Building, Community, Footprint
from registry.rates import compute_rates

from hand_bundle import AS_OF, write_hand_bundle
from test_rates import COMMUNITY_EXPECTED, _date, without_identity

GEOD = Geod(ellps="GRS80")  # the CGCS2000 ellipsoid differs from GRS80 by 0.1 mm
TABLES = [
    (Community, Community.code, Community.boundary),
    (Building, Building.id, Building.footprint),
    (Address, Address.code, Address.door_plate),
    (Footprint, Footprint.id, Footprint.geom),
]


def stored_geometries(session) -> dict[tuple[str, str], shapely.Geometry]:
    found = {}
    for model, key, column in TABLES:
        for ident, geom in session.execute(select(key, column).where(column.is_not(None))):
            found[(model.__tablename__, ident)] = to_shape(geom)
    return found


def max_vertex_distance_m(a: shapely.Geometry, b: shapely.Geometry) -> float:
    ca, cb = shapely.get_coordinates(a), shapely.get_coordinates(b)
    assert ca.shape == cb.shape
    _, _, dist = GEOD.inv(ca[:, 0], ca[:, 1], cb[:, 0], cb[:, 1])
    return float(max(dist))


@pytest.mark.parametrize("crs", ["GCJ-02", "BD-09"])
def test_obfuscated_bundle_gives_same_geometry_and_rates(session, vault, tmp_path: Path, crs):
    report = load_bundle(session, write_hand_bundle(tmp_path / "wgs"), vault)
    assert report.errors == []
    reference = stored_geometries(session)
    session.rollback()  # start again from an empty database

    report = load_bundle(session, write_hand_bundle(tmp_path / "obf", crs), vault)
    assert report.errors == [] and report.bundle.crs == crs
    converted = stored_geometries(session)

    assert converted.keys() == reference.keys()
    worst = max(max_vertex_distance_m(converted[k], reference[k]) for k in reference)
    assert worst < 0.01, f"worst vertex is {worst * 100:.3f} cm off"

    for row in compute_rates(session, as_of=_date(AS_OF)):
        assert without_identity(row) == pytest.approx(COMMUNITY_EXPECTED[row["code"]])


def test_obfuscated_input_would_be_hundreds_of_metres_off_unconverted(tmp_path: Path):
    """Guard against a no-op conversion: the GCJ-02 file really is offset."""
    import json

    wgs = write_hand_bundle(tmp_path / "wgs")
    gcj = write_hand_bundle(tmp_path / "gcj", "GCJ-02")
    a = json.loads((wgs / "buildings.geojson").read_text())["features"][0]["geometry"]
    b = json.loads((gcj / "buildings.geojson").read_text())["features"][0]["geometry"]
    offset = max_vertex_distance_m(shapely.geometry.shape(a), shapely.geometry.shape(b))
    assert 200 < offset < 1000
