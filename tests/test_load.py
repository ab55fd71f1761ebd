"""``registry load``: validation messages, all-or-nothing, --partial, idempotent reloads,
layered bundles, encodings and file formats."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import geopandas as gpd
import pytest
from sqlalchemy import text

from registry.bundle.load import load_bundle
from registry.bundle.problems import BundleError

from hand_bundle import id_number, write_hand_bundle

TABLES = ("community", "building", "address", "room", "person", "residence", "footprint")


def snapshot(session) -> dict[str, list]:
    """Every row of every registry table, to prove a refused load changed nothing."""
    return {
        t: [tuple(r) for r in session.execute(text(f"SELECT * FROM {t} ORDER BY 1"))]
        for t in (*TABLES, "import_log")
    }


def counts(session) -> dict[str, int]:
    return {t: session.scalar(text(f"SELECT count(*) FROM {t}")) for t in TABLES}


def edit_features(bundle: Path, layer: str, edit: Callable[[list[dict]], Any]) -> None:
    path = bundle / f"{layer}.geojson"
    document = json.loads(path.read_text(encoding="utf-8"))
    edit(document["features"])
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")


def edit_rows(bundle: Path, name: str, edit: Callable[[list[dict]], Any]) -> None:
    path = bundle / f"{name}.csv"
    with path.open(encoding="utf-8") as src:
        reader = csv.DictReader(src)
        header, rows = list(reader.fieldnames or []), list(reader)
    edit(rows)
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, header)
        writer.writeheader()
        writer.writerows(rows)


def set_property(index: int, **values: Any) -> Callable[[list[dict]], None]:
    def edit(features: list[dict]) -> None:
        features[index]["properties"].update(values)

    return edit


def set_geometry(index: int, geometry: dict | None) -> Callable[[list[dict]], None]:
    def edit(features: list[dict]) -> None:
        features[index]["geometry"] = geometry

    return edit


def set_cell(index: int, **values: str) -> Callable[[list[dict]], None]:
    def edit(rows: list[dict]) -> None:
        rows[index].update(values)

    return edit


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return write_hand_bundle(tmp_path / "hand")


def test_hand_bundle_loads_and_reports_counts(cli, bundle: Path, session):
    result = cli("load", bundle)
    assert result.exit_code == 0, result.output
    assert "loaded" in result.stdout
    assert counts(session) == {
        "community": 3,
        "building": 9,
        "address": 9,
        "room": 5,
        "person": 11,  # 9 residents and 2 persons who are employees only
        "residence": 9,
        "footprint": 8,
    }
    logged = session.execute(text("SELECT file, counts FROM import_log ORDER BY id")).all()
    assert [f for f, _ in logged] == [
        "communities.geojson",
        "footprints.geojson",
        "buildings.geojson",
        "addresses.geojson",
        "rooms.csv",
        "residents.csv",
        "organizations.csv",
        "employees.csv",
    ]
    assert logged[2][1] == {"read": 9, "inserted": 9, "updated": 0, "unchanged": 0, "rejected": 0}


def test_reload_changes_nothing(session, vault, bundle: Path):
    load_bundle(session, bundle, vault)
    session.commit()
    before = snapshot(session)
    report = load_bundle(session, bundle, vault)
    session.commit()
    for layer, layer_counts in report.counts.items():
        assert layer_counts["inserted"] == layer_counts["updated"] == 0, layer
        assert layer_counts["unchanged"] == layer_counts["read"], layer
    after = snapshot(session)
    after["import_log"] = after["import_log"][: len(before["import_log"])]
    assert after == before  # not even updated_at or a ciphertext moved


def test_changed_rows_update_their_records(session, vault, bundle: Path):
    load_bundle(session, bundle, vault)
    session.commit()
    edit_features(bundle, "buildings", set_property(0, floors=9, status="demolished"))
    edit_rows(bundle, "residents", set_cell(0, name="测试甲改", moved_out="2026-03-01"))
    edit_rows(bundle, "employees", set_cell(0, name="测试甲改"))  # the same person
    report = load_bundle(session, bundle, vault)
    session.commit()
    assert report.counts["buildings"]["updated"] == 1
    assert report.counts["residents"]["updated"] == 1
    assert session.execute(text("SELECT floors, status FROM building WHERE id = 'B1'")).one() == (
        9,
        "demolished",
    )
    assert session.scalar(text("SELECT count(*) FROM person WHERE name = '测试甲改'")) == 1
    assert counts(session)["person"] == 11  # same identity number: same person


def test_refused_load_leaves_database_unchanged(cli, session, bundle: Path, tmp_path: Path):
    assert cli("load", bundle).exit_code == 0
    before = snapshot(session)
    session.rollback()

    second = write_hand_bundle(tmp_path / "second")
    edit_features(second, "buildings", set_property(1, floors=12))  # a valid change ...
    edit_features(second, "communities", set_property(0, name="改名社区"))
    edit_rows(second, "rooms", set_cell(0, building_id="NOPE"))  # ... and one error
    result = cli("load", second)
    assert result.exit_code == 1
    assert "rooms.csv, row 2, field building_id: 'NOPE' is not in buildings" in result.stderr
    assert "nothing was written" in result.stderr
    assert "Traceback" not in result.output
    assert snapshot(session) == before


def test_partial_writes_valid_rows_and_rejects_the_rest(cli, session, bundle: Path, tmp_path):
    edit_features(bundle, "buildings", set_property(1, status="ruined"))  # B2
    edit_features(bundle, "addresses", set_property(0, community_code="12345"))  # A1
    rejects = tmp_path / "rejects.csv"
    result = cli("load", bundle, "--partial", "--rejects", rejects)
    assert result.exit_code == 0, result.output
    assert counts(session)["building"] == 8 and counts(session)["address"] == 7
    with rejects.open(encoding="utf-8") as src:
        rows = list(csv.DictReader(src))
    reasons = {(r["file"], r["row"], r["field"]): r["reason"] for r in rows}
    assert reasons[("buildings.geojson", "2", "status")].startswith("'ruined' is not one of")
    assert reasons[("addresses.geojson", "1", "community_code")] == "'12345' is not a 12-digit code"
    # A2 names B2, which was refused: refused with it, pointing at the row that was
    assert reasons[("addresses.geojson", "2", "building_id")] == (
        "'B2' refers to a rejected row (buildings.geojson feature 2)"
    )
    assert json.loads(rows[0]["record"])["id"] == "B2"


def test_partial_rejects_file_masks_identity_numbers(cli, bundle: Path, tmp_path: Path):
    edit_rows(bundle, "residents", set_cell(0, category="tourist"))
    rejects = tmp_path / "rejects.csv"
    assert cli("load", bundle, "--partial", "--rejects", rejects).exit_code == 0
    content = rejects.read_text(encoding="utf-8")
    assert id_number(1) not in content
    assert "*" * 14 + id_number(1)[-4:] in content


def test_field_bundle_loads_on_top_of_an_earlier_bundle(cli, session, bundle: Path, tmp_path):
    """Communities and footprints first; buildings, rooms and residents later refer to them."""
    base = tmp_path / "base"
    base.mkdir()
    for name in ("communities.geojson", "footprints.geojson"):
        (base / name).write_bytes((bundle / name).read_bytes())
    field_bundle = tmp_path / "field"
    field_bundle.mkdir()
    for name in ("buildings.geojson", "addresses.geojson", "rooms.csv", "residents.csv"):
        (field_bundle / name).write_bytes((bundle / name).read_bytes())

    result = cli("load", field_bundle)
    assert result.exit_code == 1
    assert "buildings.geojson, feature 1, field community_code: '420111002001' is not in " \
        "communities of this bundle or the registry" in result.stderr  # fmt: skip

    assert cli("load", base).exit_code == 0
    result = cli("load", field_bundle)
    assert result.exit_code == 0, result.output
    assert counts(session)["residence"] == 9


ERROR_CASES = [
    # (layer, edit, expected problem text)
    ("communities", set_property(0, code="42011100200"),
     "communities.geojson, feature 1, field code: '42011100200' is not a 12-digit code"),
    ("communities", set_property(1, street_code="420111003"),
     "communities.geojson, feature 2, field street_code: 420111003 is not the street of "
     "community 420111002002"),
    ("communities", set_property(0, name=None),
     "communities.geojson, feature 1, field name: is required"),
    ("buildings", set_property(0, floors=0),
     "buildings.geojson, feature 1, field floors: must be a whole number from 1 to 300, got 0"),
    ("buildings", set_property(0, floors="六"),
     "buildings.geojson, feature 1, field floors: must be a whole number from 1 to 300, got '六'"),
    ("buildings", set_property(0, status="ruined"),
     "buildings.geojson, feature 1, field status: 'ruined' is not one of in_use, "
     "under_construction, demolished"),
    ("buildings", set_property(0, community_code="420111009999"),
     "buildings.geojson, feature 1, field community_code: '420111009999' is not in communities "
     "of this bundle or the registry"),
    ("buildings", set_property(1, id="B1"),
     "buildings.geojson, feature 2, field id: duplicate id 'B1' (first at feature 1)"),
    ("buildings", set_property(0, id="B 1"),
     "buildings.geojson, feature 1, field id: 'B 1' is not an id: 1 to 64 characters, no spaces"),
    ("buildings", set_geometry(0, {"type": "LineString", "coordinates": [[114.4, 30.5],
                                                                         [114.41, 30.5]]}),
     "buildings.geojson, feature 1, field geometry: geometry must be Polygon or MultiPolygon, "
     "got LineString"),
    ("buildings", set_geometry(0, {"type": "Polygon", "coordinates": []}),
     "buildings.geojson, feature 1, field geometry: polygon is empty"),
    ("buildings", set_geometry(0, {"type": "Polygon", "coordinates": [[[30.50, 114.40],
        [30.50, 114.41], [30.51, 114.41], [30.50, 114.40]]]}),
     "look swapped"),
    ("buildings", set_geometry(0, {"type": "Polygon", "coordinates": [[[2.35, 48.85],
        [2.36, 48.85], [2.36, 48.86], [2.35, 48.85]]]}),
     "buildings.geojson, feature 1, field geometry: coordinate"),
    ("buildings", set_geometry(0, {"type": "Polygon", "coordinates": "nonsense"}),
     "buildings.geojson, feature 1, field geometry: unreadable geometry"),
    ("addresses", set_geometry(0, {"type": "LineString", "coordinates": [[114.4, 30.5],
                                                                         [114.41, 30.5]]}),
     "addresses.geojson, feature 1, field geometry:"),
    ("addresses", set_property(0, building_id="B404"),
     "addresses.geojson, feature 1, field building_id: 'B404' is not in buildings of this "
     "bundle or the registry"),
    ("footprints", set_geometry(0, None),
     "footprints.geojson, feature 1, field geometry: is required (polygon)"),
    ("rooms", set_cell(0, building_id="B404"),
     "rooms.csv, row 2, field building_id: 'B404' is not in buildings of this bundle or the "
     "registry"),
    ("rooms", set_cell(1, floor="三"),
     "rooms.csv, row 3, field floor: must be a whole number from -10 to 300, got '三'"),
    ("rooms", set_cell(1, floor="0"),
     "rooms.csv, row 3, field floor: floor 0 does not exist"),
    ("rooms", set_cell(2, number=""), "rooms.csv, row 4, field number: is required"),
    ("residents", set_cell(0, id_number=id_number(1)[:17] + "0"),
     "residents.csv, row 2, field id_number: invalid identity number: check character is 0, "
     f"expected {id_number(1)[-1]}"),
    ("residents", set_cell(0, id_number=id_number(1, birth="19801301")),
     "residents.csv, row 2, field id_number: invalid identity number: birth date 19801301 is "
     "not a calendar date"),
    ("residents", set_cell(0, id_number="42011119800101"),
     "residents.csv, row 2, field id_number: invalid identity number: must have 18 characters, "
     "has 14"),
    ("residents", set_cell(0, category="tourist"),
     "residents.csv, row 2, field category: 'tourist' is not one of household, floating, "
     "overseas, other"),
    ("residents", set_cell(0, moved_in="2020/01/01"),
     "residents.csv, row 2, field moved_in: '2020/01/01' is not an ISO date (YYYY-MM-DD)"),
    ("residents", set_cell(0, moved_out="2019-01-01"),
     "residents.csv, row 2, field moved_out: 2019-01-01 is before moved_in 2020-01-01"),
    ("residents", set_cell(0, room_id="R404"),
     "residents.csv, row 2, field room_id: 'R404' is not in rooms of this bundle or the "
     "registry"),
    ("residents", set_cell(0, community_code="4201110020011"),
     "residents.csv, row 2, field community_code: '4201110020011' is not a 12-digit code"),
    ("residents", set_cell(1, id_number=id_number(1), name="测试甲", moved_out=""),
     "residents.csv, row 3, field moved_out: the same identity number already has a residence "
     "with no moved_out at row 2"),
    ("residents", set_cell(1, id_number=id_number(1), name="别人"),
     "residents.csv, row 3, field name: the same identity number has name '测试甲' at row 2"),
]  # fmt: skip


@pytest.mark.parametrize(("layer", "edit", "message"), ERROR_CASES)
def test_each_validation_rule_names_file_row_field_and_reason(
    session, vault, bundle: Path, layer, edit, message
):
    if (bundle / f"{layer}.geojson").exists():
        edit_features(bundle, layer, edit)
    else:
        edit_rows(bundle, layer, edit)
    report = load_bundle(session, bundle, vault)
    assert not report.written
    assert any(message in str(problem) for problem in report.errors), [
        str(p) for p in report.errors
    ]
    assert counts(session) == dict.fromkeys(TABLES, 0)


def test_csv_structure_errors(session, vault, bundle: Path):
    rooms = bundle / "rooms.csv"
    rooms.write_text("id,building_id,unit,floor\nR1,B1,1,3\n", encoding="utf-8")
    residents = bundle / "residents.csv"
    residents.write_text(
        residents.read_text(encoding="utf-8") + f"{id_number(99)},多余,420111002001,,other,,,x,y\n",
        encoding="utf-8",
    )
    report = load_bundle(session, bundle, vault)
    messages = [str(p) for p in report.errors]
    assert "rooms.csv, field number: required column is missing" in messages
    assert "residents.csv, row 11: has 2 more values than the header" in messages


def test_repaired_polygon_and_soft_problems_are_warnings(session, vault, bundle: Path):
    bow_tie = [[[114.40, 30.50], [114.401, 30.501], [114.401, 30.50], [114.40, 30.501],
                [114.40, 30.50]]]  # fmt: skip
    edit_features(bundle, "buildings", set_geometry(1, {"type": "Polygon", "coordinates": bow_tie}))
    edit_features(bundle, "buildings", set_property(0, colour="red"))
    edit_rows(bundle, "residents", set_cell(0, id_number=id_number(1, region="990101")))
    edit_rows(bundle, "residents", set_cell(1, id_number=id_number(3, region="810000")))
    report = load_bundle(session, bundle, vault)
    assert report.errors == []
    assert report.written
    warnings = [str(p) for p in report.warnings]
    assert any(
        w.startswith("buildings.geojson, feature 2, field geometry: invalid polygon repaired")
        for w in warnings
    ), warnings
    assert "buildings.geojson, field colour: unknown column, ignored" in warnings
    assert (
        "residents.csv, row 2, field id_number: region prefix 990101 is not a known province code"
        in warnings
    )
    assert not any("row 3" in w for w in warnings)  # 81: Hong Kong residence permit
    assert session.scalar(text("SELECT ST_IsValid(footprint) FROM building WHERE id = 'B2'"))
    logged = session.scalar(
        text("SELECT warnings FROM import_log WHERE file = 'buildings.geojson'")
    )
    assert any("invalid polygon repaired" in w["reason"] for w in logged)


def test_gb18030_and_bom_csv_files(session, vault, bundle: Path):
    for name, encoding in (("rooms", "gb18030"), ("residents", "utf-8-sig")):
        path = bundle / f"{name}.csv"
        text_content = path.read_text(encoding="utf-8").replace("residential", "住宅")
        path.write_bytes(text_content.replace(",1,3,", ",一单元,3,").encode(encoding))
    report = load_bundle(session, bundle, vault)
    assert report.errors == []
    assert "rooms.csv: read as GB18030" in [str(p) for p in report.warnings]
    assert session.scalar(text("SELECT unit FROM room WHERE id = 'R1'")) == "一单元"
    assert session.scalar(text("SELECT use FROM room WHERE id = 'R1'")) == "住宅"
    assert session.scalar(text("SELECT count(*) FROM person WHERE name = '测试甲'")) == 1


@pytest.mark.parametrize("suffix", [".gpkg", ".shp"])
def test_geopackage_and_shapefile_layers(session, vault, bundle: Path, suffix: str):
    for layer in ("communities", "buildings"):
        frame = gpd.read_file(bundle / f"{layer}.geojson")
        (bundle / f"{layer}.geojson").unlink()
        options = {"encoding": "UTF-8"} if suffix == ".shp" else {}
        frame.set_crs(4490, allow_override=True).to_file(bundle / f"{layer}{suffix}", **options)
    report = load_bundle(session, bundle, vault)
    assert report.errors == [], [str(p) for p in report.errors]
    assert report.counts["buildings"]["inserted"] == 9
    assert session.scalar(text("SELECT count(*) FROM building WHERE footprint IS NULL")) == 1
    assert session.scalar(
        text("SELECT street_name FROM community WHERE code = '420111002001'")
    ) == "关山街道"  # fmt: skip


def test_projected_geopackage_is_reprojected(session, vault, bundle: Path):
    frame = gpd.read_file(bundle / "footprints.geojson").set_crs(4490, allow_override=True)
    (bundle / "footprints.geojson").unlink()
    frame.to_crs(4547).to_file(bundle / "footprints.gpkg")
    report = load_bundle(session, bundle, vault)
    assert report.errors == []
    # F1 was drawn equal to B1; after the round trip through EPSG:4547 it still is (< 1 mm)
    gap = session.scalar(
        text(
            "SELECT ST_HausdorffDistance(f.geom, b.footprint) FROM footprint f, "
            "building b WHERE f.id = 'F1' AND b.id = 'B1'"
        )
    )
    assert gap < 1e-8


def test_two_files_for_one_layer(session, vault, bundle: Path):
    gpd.read_file(bundle / "buildings.geojson").to_file(bundle / "buildings.gpkg")
    with pytest.raises(BundleError, match="two files for one layer"):
        load_bundle(session, bundle, vault)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda b: (b / "bundle.json").write_text('{"crs": "EPSG:3857"}'),
         "bundle.json, field crs: 'EPSG:3857' is not one of EPSG:4490, EPSG:4326, GCJ-02, BD-09"),
        (lambda b: (b / "bundle.json").write_text("{not json"), "bundle.json: is not valid JSON"),
        (lambda b: (b / "buildings.geojson").write_text("[1, 2"),
         "buildings.geojson: is not valid JSON"),
        (lambda b: (b / "buildings.geojson").write_text('{"type": "Feature"}'),
         "buildings.geojson: is not a GeoJSON FeatureCollection"),
        (lambda b: (b / "rooms.csv").write_bytes(b"\xff\xfe\x00\x00\xff"),
         "rooms.csv: is neither UTF-8 nor GB18030/GBK text"),
        (lambda b: [p.unlink() for p in b.iterdir()], "holds none of the bundle files"),
    ],
)  # fmt: skip
def test_unreadable_bundles_get_one_clear_error(cli, bundle: Path, setup, message):
    setup(bundle)
    result = cli("load", bundle)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_missing_directory(cli, tmp_path: Path):
    result = cli("load", tmp_path / "nowhere")
    assert result.exit_code == 1
    assert "is not a directory" in result.stderr
