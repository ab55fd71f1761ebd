"""Exports through the API and the CLI, re-read with pyogrio and checked against the database."""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pyproj
import pytest
import shapely
from shapely.geometry.base import BaseGeometry
from sqlalchemy import Engine, func, select, text
from sqlalchemy.orm import Session

from registry import export
from registry.cli import SAMPLE_BUNDLE
from registry.collections import get_collection
from registry.db import make_engine

FORMATS = list(export.FORMATS)
COLLECTIONS = ["buildings", "communities"]
COMMUNITY = "420111002005"  # 南望社区
BOM = b"\xef\xbb\xbf"
CHINA = dt.timezone(dt.timedelta(hours=8))


@dataclass(frozen=True)
class Feature:
    properties: dict[str, Any]
    geometry: BaseGeometry | None


# ---------------------------------------------------------------- what the database holds


def from_database(engine: Engine, collection_id: str, code: str | None = None):
    """Features by id straight from the collection's source, geometry in EPSG:4490."""
    collection = get_collection(collection_id)
    source = collection.source()
    query = select(
        source.c.id,
        *(source.c[n] for n in collection.property_names),
        func.ST_AsBinary(source.c.geom).label("wkb"),
    )
    with engine.connect() as conn:
        rows = conn.execute(query, collection.params()).all()
    features = {
        row.id: Feature(
            dict(zip(collection.property_names, row[1:-1], strict=True)),
            shapely.from_wkb(bytes(row.wkb)) if row.wkb is not None else None,
        )
        for row in rows
    }
    if code:
        key = "code" if collection_id == "communities" else "community_code"
        features = {i: f for i, f in features.items() if f.properties[key].startswith(code)}
    return features


@pytest.fixture(scope="module")
def sample_engine(sample_db_url: str) -> Iterator[Engine]:
    engine = make_engine(sample_db_url)
    yield engine
    engine.dispose()


TO_4547 = pyproj.Transformer.from_crs("EPSG:4490", "EPSG:4547", always_xy=True)


def to_4547(geometry: BaseGeometry) -> BaseGeometry:
    """The expected Gauss–Krüger geometry, computed by pyproj rather than PostGIS."""
    return shapely.transform(geometry, lambda xy: np.column_stack(TO_4547.transform(*xy.T)))


# ---------------------------------------------------------------- what a file holds


def read_file(path: Path, fmt: str) -> tuple[dict[str, Feature], str | None]:
    """Features by id and the declared CRS, read back with pyogrio (CSV with csv)."""
    if fmt == "csv":
        return read_csv(path), None
    meta, _, geometries, fields = pyogrio.raw.read(path, datetime_as_string=True)
    names = list(meta["fields"])
    features = {}
    for i in range(len(geometries)):
        values = {name: plain(fields[j][i]) for j, name in enumerate(names)}
        wkb = geometries[i]
        features[values.pop("id")] = Feature(
            values, shapely.from_wkb(wkb) if wkb is not None else None
        )
    assert len(features) == len(geometries), "ids are unique"
    return features, meta["crs"]


def plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def read_csv(path: Path) -> dict[str, Feature]:
    raw = path.read_bytes()
    assert raw.startswith(BOM), "CSV starts with a UTF-8 BOM for Excel"
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    features = {}
    for row in rows:
        wkt = row.pop("wkt")
        values = {k: (v if v != "" else None) for k, v in row.items()}
        features[values.pop("id")] = Feature(values, shapely.from_wkt(wkt) if wkt else None)
    return features


def assert_same_value(kind: str, expected: Any, actual: Any, where: str) -> None:
    if expected is None:
        assert actual is None, where
    elif kind == "integer":
        assert int(actual) == expected, where
    elif kind == "number":
        assert math.isclose(float(actual), expected, rel_tol=1e-12), where
    elif kind == "date-time":
        value = actual if isinstance(actual, dt.datetime) else dt.datetime.fromisoformat(actual)
        assert abs(value - expected) < dt.timedelta(milliseconds=1), where
    else:
        assert actual == expected, where


def assert_matches(
    actual: dict[str, Feature],
    expected: dict[str, Feature],
    collection_id: str,
    srid: int = 4490,
) -> None:
    assert sorted(actual) == sorted(expected)
    collection = get_collection(collection_id)
    tolerance = 1e-3 if srid == 4547 else 1e-8  # metres / degrees
    for id_, feature in expected.items():
        got = actual[id_]
        assert set(got.properties) == set(collection.property_names)
        for prop in collection.properties:
            value = got.properties[prop.name]
            assert_same_value(prop.type, feature.properties[prop.name], value, f"{id_}.{prop.name}")
        if feature.geometry is None:
            assert got.geometry is None, id_
            continue
        want = to_4547(feature.geometry) if srid == 4547 else feature.geometry
        assert got.geometry.geom_type == collection.geometry_type, id_
        assert shapely.hausdorff_distance(got.geometry, want) < tolerance, id_


def check_export(
    path: Path,
    fmt: str,
    expected: dict[str, Feature],
    collection_id: str,
    srid: int | None = None,
) -> dict[str, Feature]:
    """Compare a written file with the database, allowing for fgb's missing geometries."""
    features, crs = read_file(path, fmt)
    if fmt == "fgb":
        expected = {i: f for i, f in expected.items() if f.geometry is not None}
    srid = srid or (4326 if fmt == "geojson" else 4490)
    assert_matches(features, expected, collection_id, srid)
    if fmt in ("gpkg", "fgb"):
        assert crs == f"EPSG:{srid}"
        assert pyogrio.read_info(path)["layer_name"] == collection_id.replace("-", "_")
    if fmt == "geojson":
        assert crs == "EPSG:4326"  # how GDAL names GeoJSON's lon/lat WGS 84 (CRS84)
        document = json.loads(path.read_text(encoding="utf-8"))
        assert "crs" not in document  # RFC 7946
        assert {f["id"] for f in document["features"]} == set(expected)
    return features


def test_export_collection_returns_the_count(sample_engine, tmp_path):
    path = tmp_path / "communities.gpkg"
    with Session(sample_engine) as session:
        count = export.export_collection(session, "communities", path, "gpkg", "EPSG:4547")
    expected = from_database(sample_engine, "communities")
    assert count == len(expected)
    check_export(path, "gpkg", expected, "communities", srid=4547)


# ---------------------------------------------------------------- API


def get_file(api_client, url: str, tmp_path: Path, fmt: str, **params: str) -> Path:
    """Download an export; check its media type and attachment filename."""
    response = api_client.get(url, params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == export.FORMATS[fmt].media_type
    collection_id = url.rsplit("/", 1)[1].split(".")[0]
    code = f"-{params['code']}" if "code" in params else ""
    filename = f"{collection_id}{code}.{fmt}"
    assert response.headers["content-disposition"] == f'attachment; filename="{filename}"'
    assert int(response.headers["content-length"]) == len(response.content)
    path = tmp_path / filename
    path.write_bytes(response.content)
    return path


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("collection_id", COLLECTIONS)
def test_api_export_matches_the_database(
    api_client, sample_engine, tmp_path, monkeypatch, collection_id, fmt
):
    monkeypatch.setattr("api.exports.BATCH_SIZE", 50)  # several batches, appended
    path = get_file(api_client, f"/exports/{collection_id}.{fmt}", tmp_path, fmt)
    expected = from_database(sample_engine, collection_id)
    features = check_export(path, fmt, expected, collection_id)
    names = {f.properties["name"] for f in features.values()}
    if collection_id == "communities":
        assert "南望社区" in names
    if fmt != "fgb" and collection_id == "buildings":
        assert any(f.geometry is None for f in features.values()), "null geometries kept"


@pytest.mark.parametrize("fmt", ["gpkg", "fgb", "csv"])
def test_api_export_in_gauss_kruger_with_a_code(api_client, sample_engine, tmp_path, fmt):
    url = "/exports/buildings." + fmt
    path = get_file(api_client, url, tmp_path, fmt, crs="EPSG:4547", code=COMMUNITY)
    expected = from_database(sample_engine, "buildings", COMMUNITY)
    assert 0 < len(expected) < len(from_database(sample_engine, "buildings"))
    check_export(path, fmt, expected, "buildings", srid=4547)


def test_api_communities_by_street_code_in_crs84(api_client, sample_engine, tmp_path):
    path = get_file(
        api_client, "/exports/communities.gpkg", tmp_path, "gpkg", crs="CRS84", code="420111002"
    )
    features, crs = read_file(path, "gpkg")
    assert pyproj.CRS(crs) == pyproj.CRS("OGC:CRS84")
    assert_matches(
        features, from_database(sample_engine, "communities", "420111002"), "communities", srid=4326
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_api_export_of_nothing_is_a_valid_empty_file(api_client, tmp_path, fmt):
    path = get_file(api_client, "/exports/buildings." + fmt, tmp_path, fmt, code="9")
    features, _ = read_file(path, fmt)
    assert features == {}
    if fmt == "csv":
        header = path.read_bytes().decode("utf-8-sig").splitlines()
        assert header == [",".join(["id", *get_collection("buildings").property_names, "wkt"])]
    elif fmt != "geojson":
        info = pyogrio.read_info(path)
        assert list(info["fields"]) == ["id", *get_collection("buildings").property_names]
        assert info["geometry_type"] == "MultiPolygon" and info["crs"] == "EPSG:4490"


def test_api_documents_the_export_route(api_client):
    operation = api_client.get("/api").json()["paths"]["/exports/{collection}.{ext}"]["get"]
    assert {p["name"] for p in operation["parameters"]} == {"collection", "ext", "crs", "code"}


def assert_problem(response, status: int, parameter: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["detail"]
    if parameter:
        assert parameter in body["detail"]
        assert [e["parameter"] for e in body["errors"]] == [parameter]
    return body


@pytest.mark.parametrize(
    "url",
    ["/exports/persons.csv", "/exports/rooms.gpkg", "/exports/person.geojson", "/exports/x.fgb"],
)
def test_api_unknown_or_private_collections_are_404(api_client, url):
    body = assert_problem(api_client.get(url), 404)
    assert "no collection" in body["detail"]


@pytest.mark.parametrize(
    ("url", "params", "parameter"),
    [
        ("/exports/buildings.shp", {}, "ext"),
        ("/exports/buildings", {}, "ext"),
        ("/exports/buildings.gpkg", {"crs": "EPSG:9999"}, "crs"),
        ("/exports/buildings.geojson", {"crs": "EPSG:4547"}, "crs"),
        ("/exports/buildings.csv", {"code": "4201a"}, "code"),
        ("/exports/buildings.csv", {"code": "4201110020051"}, "code"),
        ("/exports/buildings.csv", {"code": ""}, "code"),
    ],
)
def test_api_bad_parameters_are_400(api_client, url, params, parameter):
    assert_problem(api_client.get(url, params=params), 400, parameter)


# ---------------------------------------------------------------- CLI


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """An empty directory for the CLI's files (tmp_path also holds the CLI's home)."""
    directory = tmp_path / "out"
    directory.mkdir()
    return directory


@pytest.fixture
def loaded(cli, engine) -> Engine:
    result = cli("load", SAMPLE_BUNDLE)
    assert result.exit_code == 0, result.output
    return engine


def test_cli_exports_every_format(cli, loaded, out, monkeypatch):
    monkeypatch.setattr(export, "BATCH_SIZE", 50)  # several batches, appended
    for collection_id in COLLECTIONS:
        expected = from_database(loaded, collection_id)
        for fmt in FORMATS:
            path = out / f"{collection_id}.{fmt}"
            result = cli("export", collection_id, path)
            assert result.exit_code == 0, result.output
            written = len(check_export(path, fmt, expected, collection_id))
            assert f"wrote {written} features to {path}" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(
        f"{c}.{f}" for c in COLLECTIONS for f in FORMATS
    ), "no temporary files left"


@pytest.mark.filterwarnings("ignore:.*(extension|non conformant):RuntimeWarning")
def test_cli_export_crs_code_and_explicit_format(cli, loaded, out):
    with loaded.begin() as conn:  # the sample has no verification times: give two some
        conn.execute(
            text(
                "UPDATE building SET verification = 'verified', verified_at = :at "
                "WHERE id IN (SELECT id FROM building WHERE community_code = :code "
                "ORDER BY id LIMIT 2)"
            ),
            {"at": dt.datetime(2025, 3, 1, 9, 30, 15, tzinfo=CHINA), "code": COMMUNITY},
        )
    expected = from_database(loaded, "buildings", COMMUNITY)
    assert sum(f.properties["verified_at"] is not None for f in expected.values()) == 2
    for fmt in ("gpkg", "fgb", "csv"):
        path = out / f"out-{fmt}.data"
        options = ["--crs", "EPSG:4547", "--code", COMMUNITY, "--format", fmt]
        result = cli("export", "buildings", path, *options)
        assert result.exit_code == 0, result.output
        check_export(path, fmt, expected, "buildings", srid=4547)
    path = out / "communities.geojson"
    assert cli("export", "communities", path, "--code", "420111002").exit_code == 0
    expected = from_database(loaded, "communities", "420111002")
    check_export(path, "geojson", expected, "communities")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["persons", "out.csv"], "no collection 'persons'"),
        (["rooms", "out.gpkg"], "no collection 'rooms'"),
        (["buildings", "out.shp"], "cannot tell the format"),
        (["buildings", "out.gpkg", "--format", "xlsx"], "unknown format 'xlsx'"),
        (["buildings", "out.gpkg", "--crs", "EPSG:9999"], "unsupported CRS 'EPSG:9999'"),
        (["buildings", "out.geojson", "--crs", "EPSG:4547"], "always CRS84"),
        (["buildings", "out.csv", "--code", "42x"], "must be 1 to 12 digits"),
        (["buildings", "no-such-dir/out.csv"], "does not exist"),
    ],
)
def test_cli_errors_are_messages(cli, out, monkeypatch, args, message):
    monkeypatch.chdir(out)
    result = cli("export", *args)
    assert result.exit_code == 1
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert list(out.iterdir()) == [], "no file left behind"


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_failure_mid_export_leaves_the_old_file(cli, loaded, out, monkeypatch, fmt):
    """A failure after some batches were written neither leaves a partial file nor
    touches the file it would have replaced."""
    batches = 0
    real_write = export.write_batches

    def failing(spec, path, rows):
        def counted():
            nonlocal batches
            for batch in rows:
                batches += 1
                if batches == 3:
                    raise export.RegistryError("disk full (simulated)")
                yield batch

        return real_write(spec, path, counted())

    monkeypatch.setattr(export, "BATCH_SIZE", 20)
    monkeypatch.setattr(export, "write_batches", failing)
    target = out / f"buildings.{fmt}"
    target.write_text("previous export", encoding="utf-8")
    result = cli("export", "buildings", target)
    assert result.exit_code == 1
    assert "disk full (simulated)" in result.stderr
    assert [p.name for p in out.iterdir()] == [target.name]
    assert target.read_text(encoding="utf-8") == "previous export"
