"""The bulk path of ``registry load``: fast row checks that agree with the full ones,
straight COPY into empty tables that matches the staged upsert, chunked COPY and
batched registry look-ups that change nothing a user sees, and errors from the COPY
thread that surface in the caller."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import pytest
import shapely
from shapely import LineString, MultiPolygon, Point, Polygon, box
from sqlalchemy import text

from registry.bundle import load as load_module
from registry.bundle import validate as validate_module
from registry.bundle import write as write_module
from registry.bundle.layers import LAYERS, RowCheck, check_row, fast_check, prepare_geometries
from registry.bundle.load import load_bundle
from registry.bundle.problems import Problem
from registry.bundle.read import CsvRow, LayerFile, Record, csv_record
from registry.bundle.write import CopyPipe, copy_statement

from hand_bundle import id_number, write_hand_bundle

DATA_COLUMNS = {
    "community": "code, name, street_code, district_code, ST_AsEWKB(boundary)",
    "building": "id, community_code, floors, status, ST_AsEWKB(footprint)",
    "address": "code, building_id, road, ST_AsEWKB(door_plate)",
    "room": "id, building_id, unit, floor, number, use",
    "footprint": "id, source, ST_AsEWKB(geom), ST_AsEWKB(anchor)",
    "person": "id_hmac, id_tail, name",
    "residence": "(SELECT id_hmac FROM person p WHERE p.id = person_id), room_id, "
    "community_code, category, moved_in, moved_out",
}


def contents(session) -> dict[str, list]:
    """The data a load writes, without generated ids, timestamps or nonces."""
    return {
        table: sorted(tuple(r) for r in session.execute(text(f"SELECT {cols} FROM {table}")))
        for table, cols in DATA_COLUMNS.items()
    }


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return write_hand_bundle(tmp_path / "hand")


def csv_file(layer: str, header: tuple[str, ...]) -> LayerFile:
    return LayerFile(layer, Path(f"{layer}.csv"), [], header=header)


ROOM_HEADER = ("id", "building_id", "unit", "floor", "number", "use")
RESIDENT_HEADER = (
    "id_number",
    "name",
    "community_code",
    "room_id",
    "address",
    "category",
    "moved_in",
    "moved_out",
)
ROOM_CELLS = [
    ["R1", "B1", "1", "3", "301", "residential"],
    [" R1 ", "B1", "", "", "301", ""],
    ["R1", "B1", "1", "-1", "B1", ""],
    ["R1", "B1", "1", "0", "301", ""],
    ["R1", "B1", "1", "3.0", "301", ""],
    ["R1", "B1", "1", "301", "301", ""],
    ["R1", "B1", "1", "三", "301", ""],
    ["R 1", "B1", "1", "3", "301", ""],
    ["R1", "", "1", "3", "301", ""],
    ["R1", "B1", "1", "3", "", ""],
    ["R1", "B1", "1", "3", "301"],
    ["R1", "B1", "1", "3", "301", "", "extra"],
    ["", "", "", "", "", ""],
]
RESIDENT_CELLS = [
    [id_number(1), "甲", "420111002001", "R1", "", "household", "2020-01-01", ""],
    [id_number(1).lower(), "甲", "420111002001", "R1", "", "户籍", "2020-01-01", ""],
    [id_number(1, region="990101"), "甲", "420111002001", "R1", "", "流动", "", ""],
    [id_number(1, region="810000"), "甲", "420111002001", "", "光谷1号", "other", "", ""],
    [id_number(1)[:17] + "0", "甲", "420111002001", "R1", "", "household", "", ""],
    [id_number(1, birth="19801301"), "甲", "420111002001", "R1", "", "household", "", ""],
    [id_number(1, birth="21000101"), "甲", "420111002001", "R1", "", "household", "", ""],
    [id_number(1), "", "420111002001", "R1", "", "household", "", ""],
    [id_number(1), "甲", "42011100200", "R1", "", "household", "", ""],
    [id_number(1), "甲", "420111002001", "R1", "光谷1号", "household", "", ""],
    [id_number(1), "甲", "420111002001", "R 1", "", "household", "", ""],
    [id_number(1), "甲", "420111002001", "R1", "", "tourist", "", ""],
    [id_number(1), "甲", "420111002001", "R1", "", "household", "2020/01/01", ""],
    [id_number(1), "甲", "420111002001", "R1", "", "household", "2020-01-02", "2020-01-01"],
    [id_number(1), "甲", "420111002001", "R1", "", "household", "20200101", "2021-01-01"],
]


@pytest.mark.parametrize(
    ("layer", "header", "cells"),
    [("rooms", ROOM_HEADER, c) for c in ROOM_CELLS]
    + [("residents", RESIDENT_HEADER, c) for c in RESIDENT_CELLS],
)
def test_fast_check_is_the_full_check_or_declines(layer, header, cells):
    """A fast check answers only for rows the full check accepts silently, and with the
    same values; any other row it leaves to the full check."""
    fast = fast_check(layer, header)
    assert fast is not None
    record = csv_record(header, CsvRow(2, cells))
    problems: list[Problem] = []
    full = check_row(csv_file(layer, header), record, problems) if record else None
    quick = fast(cells)
    if quick is not None:
        assert problems == []
        assert quick == full


def test_fast_check_needs_the_required_columns_once_each():
    assert fast_check("rooms", ("id", "building_id", "unit")) is None
    assert fast_check("rooms", (*ROOM_HEADER, "id")) is None
    assert fast_check("buildings", ("id", "community_code")) is None


def test_straight_copy_writes_what_the_staged_upsert_writes(session, vault, bundle, monkeypatch):
    fresh = load_bundle(session, bundle, vault)
    assert fresh.written
    straight = contents(session)
    session.rollback()

    monkeypatch.setattr(load_module, "take_if_empty", lambda session, table: False)
    staged = load_bundle(session, bundle, vault)
    assert staged.written
    assert contents(session) == straight
    assert staged.counts == fresh.counts


def test_person_ids_continue_after_a_straight_copy(session, vault, bundle, tmp_path):
    load_bundle(session, bundle, vault)
    session.commit()
    last = session.scalar(text("SELECT max(id) FROM person"))
    more = tmp_path / "more"
    more.mkdir()
    header = "id_number,name,community_code,room_id,category,moved_in,moved_out\n"
    row = f"{id_number(77)},新人,420111002001,,floating,2024-01-01,\n"
    (more / "residents.csv").write_text(header + row, encoding="utf-8")
    report = load_bundle(session, more, vault)
    assert report.written, [str(p) for p in report.errors]
    assert session.scalar(text("SELECT max(id) FROM person")) > last


def test_chunks_and_batched_lookups_change_nothing_seen(session, vault, bundle, monkeypatch):
    """Tiny COPY chunks and registry look-ups every two held rows: the same problems in
    the same order, the same data."""
    whole = load_bundle(session, bundle, vault)
    expected_problems, expected = [str(p) for p in whole.validation.problems], contents(session)
    session.rollback()

    monkeypatch.setattr(write_module, "CHUNK_ROWS", 2)
    monkeypatch.setattr(validate_module, "LOOKUP_BATCH", 2)
    chunked = load_bundle(session, bundle, vault)
    assert [str(p) for p in chunked.validation.problems] == expected_problems
    assert contents(session) == expected


def test_references_to_the_registry_in_batches_keep_their_order(
    cli, session, vault, bundle, tmp_path, monkeypatch
):
    """Rooms whose buildings the registry holds, some missing: looked up in batches,
    reported as one whole-file check would."""
    assert cli("load", bundle).exit_code == 0
    rooms = tmp_path / "rooms"
    rooms.mkdir()
    with (rooms / "rooms.csv").open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(ROOM_HEADER)
        for n, building in zip(range(9), itertools.cycle(["B1", "NOPE", "B2"]), strict=False):
            writer.writerow([f"X{n}", building, "", "" if n else "零", f"{n}", ""])
    monkeypatch.setattr(validate_module, "LOOKUP_BATCH", 2)
    report = load_bundle(session, rooms, vault, partial=True)
    assert [str(p) for p in report.errors] == [
        "rooms.csv, row 2, field floor: must be a whole number from -10 to 300, got '零'",
        *(
            f"rooms.csv, row {row}, field building_id: 'NOPE' is not in buildings of this "
            "bundle or the registry"
            for row in (3, 6, 9)
        ),
    ]
    assert report.counts["rooms"]["inserted"] == 5
    assert [r.number for r in report.validation.plans["rooms"].rejected] == [2, 3, 6, 9]


def test_a_copy_error_reaches_the_caller(session):
    pipe = CopyPipe(session)
    pipe.send(copy_statement("room", ["id", "building_id", "number"]), "R1\tNO-SUCH\t1\n")
    with pytest.raises(Exception, match="fk_room_building_id_building"):
        pipe.drain()
    pipe.close()
    session.rollback()


GEOMETRIES = [
    Polygon([(114.40, 30.50), (114.41, 30.50), (114.41, 30.51), (114.40, 30.50)]),
    Polygon([(114.40, 30.50, 5), (114.41, 30.50, 5), (114.41, 30.51, 5), (114.40, 30.50, 5)]),
    MultiPolygon([box(114.40, 30.50, 114.401, 30.501), box(114.41, 30.51, 114.411, 30.511)]),
    Polygon([(114.40, 30.50), (114.401, 30.501), (114.401, 30.50), (114.40, 30.501)]),
    Polygon(),
    box(2.35, 48.85, 2.36, 48.86),
    box(30.50, 114.40, 30.51, 114.41),
    LineString([(114.40, 30.50), (114.41, 30.50)]),
    Point(114.40, 30.50),
    Point(114.40, 30.50, 3),
    Point(),
    Point(float("nan"), 30.5),
    Point(30.50, 114.40),
    None,
]


@pytest.mark.parametrize("kind", ["buildings", "addresses"])
def test_bulk_geometry_check_is_the_row_check_or_declines(kind):
    """Geometries marked ready in bulk are exactly what the row check returns, with no
    problem or warning; the others are left to it."""
    spec = LAYERS[kind]
    layer_file = LayerFile(kind, Path(f"{kind}.geojson"), [], unit="feature")
    bulk = [Record(n, {}, g) for n, g in enumerate(GEOMETRIES, 1)]
    prepare_geometries(bulk, spec)
    assert any(r.geometry_ready for r in bulk)
    for record in bulk:
        if not record.geometry_ready:
            continue
        problems: list[Problem] = []
        original = Record(record.number, {}, GEOMETRIES[record.number - 1])
        expected = RowCheck(layer_file, original, problems).geometry(spec)
        assert problems == []
        assert expected is not None
        assert shapely.to_wkb(record.geometry) == shapely.to_wkb(expected)
