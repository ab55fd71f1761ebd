"""Vector tiles: MVT and GeoJSON tiles checked against the database, TileJSON, OGC API –
Tiles paths, ETag/304, gzip, zoom ranges, the feature cap, edits invalidating exactly
the tiles they touch, and every client error."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mapbox_vector_tile
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from api import create_app
from api import tiles as api_tiles
from registry import collections, tiles
from registry.db import make_engine
from registry.rates import compute_rates

from conftest import api_settings_for, bearer, grant

MVT = "application/vnd.mapbox-vector-tile"
HALF_WORLD = math.pi * 6378137.0


# ---------------------------------------------------------------- the standard formulas


def tile_xy(lon: float, lat: float, z: int) -> tuple[int, int]:
    """Slippy-map tile of a point (the OpenStreetMap wiki's formula)."""
    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


def tile_lonlat_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    n = 2**z

    def lat(row: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y)


def md5_feature_id(text_id: str) -> int:
    return int.from_bytes(hashlib.md5(text_id.encode()).digest()[:8], "big") & (2**63 - 1)


def decode(content: bytes) -> dict[str, Any]:
    return mapbox_vector_tile.decode(content)


def ids_of(layer: dict[str, Any]) -> set[str]:
    return {f["properties"]["id"] for f in layer["features"]}


def coordinates(geometry: dict[str, Any]) -> Iterator[tuple[float, float]]:
    def walk(value: Any) -> Iterator[tuple[float, float]]:
        if isinstance(value[0], (int, float)):
            yield value[0], value[1]
        else:
            for item in value:
                yield from walk(item)

    yield from walk(geometry["coordinates"])


# ---------------------------------------------------------------- the sample


@pytest.fixture(scope="module")
def sample(sample_db_url: str) -> Iterator[Engine]:
    engine = make_engine(sample_db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def tile16(sample: Engine) -> tuple[int, int, int]:
    """The z16 tile holding building GG-0001's point on surface."""
    with sample.connect() as conn:
        lon, lat = conn.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(footprint) AS p "
                "FROM building WHERE id = 'GG-0001') s"
            )
        ).one()
    return (16, *tile_xy(lon, lat, 16))


def building_ids(engine: Engine, z: int, x: int, y: int, margin: float, table: str) -> set[str]:
    """Ids of features whose geometry meets the tile widened by ``margin`` (a tile fraction).

    With margin 0 only features sharing area (or, for points, a point) with the tile count.
    """
    geom = {"building": "footprint", "footprint": "geom", "address": "door_plate"}[table]
    key = {"address": "code"}.get(table, "id")
    sql = f"""
        SELECT {key} FROM {table}, ST_TileEnvelope(:z, :x, :y) AS env,
             ST_Transform({geom}, 3857) AS g
        WHERE {geom} IS NOT NULL
          AND CASE WHEN :margin > 0
                   THEN ST_Intersects(g, ST_Expand(env, :margin * (ST_XMax(env) - ST_XMin(env))))
                   WHEN GeometryType(g) = 'POINT' THEN ST_Intersects(g, env)
                   ELSE ST_Area(ST_Intersection(g, env)) > 0 END
    """
    with engine.connect() as conn:
        rows = conn.execute(text(sql), {"z": z, "x": x, "y": y, "margin": margin})
        return {r[0] for r in rows}


def test_mvt_tile_matches_the_database(api_client, sample, tile16):
    z, x, y = tile16
    response = api_client.get(f"/tiles/buildings/{z}/{x}/{y}.mvt")
    assert response.status_code == 200
    assert response.headers["content-type"] == MVT
    layers = decode(response.content)
    assert set(layers) == {"buildings"}
    layer = layers["buildings"]
    assert layer["extent"] == 4096
    found = ids_of(layer)
    inside = building_ids(sample, z, x, y, 0, "building")
    buffered = building_ids(sample, z, x, y, 64 / 4096, "building")
    assert "GG-0001" in inside
    assert inside <= found <= buffered
    with sample.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT id, name, community_code, floors, use, status, verification "
                "FROM building WHERE id = ANY(:ids)"
            ),
            {"ids": sorted(found)},
        ).mappings()
        expected = {r["id"]: {k: v for k, v in r.items() if v is not None} for r in rows}
    for feature in layer["features"]:
        props = feature["properties"]
        assert feature["id"] == md5_feature_id(props["id"]) == tiles.feature_id(props["id"])
        assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
        assert "updated_at" not in props
        shown = {k: v for k, v in props.items() if k != "address_label"}
        assert shown == expected[props["id"]]
    gg1 = next(f for f in layer["features"] if f["properties"]["id"] == "GG-0001")
    assert gg1["properties"]["address_label"] == "珞喻路 743号"
    assert isinstance(gg1["properties"]["floors"], int)


def test_points_layer(api_client, sample, tile16):
    z, x, y = tile16
    layer = decode(api_client.get(f"/tiles/addresses/{z}/{x}/{y}.mvt").content)["addresses"]
    inside = building_ids(sample, z, x, y, 0, "address")
    assert inside and inside <= ids_of(layer) <= building_ids(sample, z, x, y, 1 / 64, "address")
    assert all(f["geometry"]["type"] == "Point" for f in layer["features"])
    assert all(f["properties"]["label"] for f in layer["features"])


def test_multi_layer_tile_has_both_layers(api_client, tile16):
    z, x, y = tile16
    both = decode(api_client.get(f"/tiles/buildings,footprints/{z}/{x}/{y}.mvt").content)
    assert list(both) == ["buildings", "footprints"]
    for name in both:
        alone = decode(api_client.get(f"/tiles/{name}/{z}/{x}/{y}.mvt").content)[name]
        assert ids_of(both[name]) == ids_of(alone) != set()


def test_geojson_tile_is_clipped_and_matches_the_mvt(api_client, sample, tile16):
    z, x, y = tile16
    response = api_client.get(f"/tiles/buildings/{z}/{x}/{y}.geojson")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/geo+json"
    collection = response.json()
    assert collection["type"] == "FeatureCollection"
    west, south, east, north = tile_lonlat_bounds(z, x, y)
    eps = 1e-6
    for feature in collection["features"]:
        assert feature["layer"] == "buildings"
        assert feature["geometry"]["type"] == "MultiPolygon"
        assert "id" not in feature["properties"]
        for lon, lat in coordinates(feature["geometry"]):
            assert west - eps <= lon <= east + eps and south - eps <= lat <= north + eps
    geojson_ids = {f["id"] for f in collection["features"]}
    mvt_ids = ids_of(
        decode(api_client.get(f"/tiles/buildings/{z}/{x}/{y}.mvt").content)["buildings"]
    )
    assert geojson_ids == building_ids(sample, z, x, y, 0, "building")
    assert geojson_ids <= mvt_ids
    # any MVT extra lies in the clipping buffer only
    assert mvt_ids - geojson_ids <= building_ids(sample, z, x, y, 64 / 4096, "building")
    # a feature crossing the tile's edge is cut at it
    clipped = [
        f
        for f in collection["features"]
        if any(lon == pytest.approx(west, abs=eps) for lon, _ in coordinates(f["geometry"]))
    ]
    assert clipped


def test_multi_layer_geojson_names_each_feature_layer(api_client, tile16):
    z, x, y = tile16
    features = api_client.get(f"/tiles/buildings,footprints/{z}/{x}/{y}.geojson").json()["features"]
    assert {f["layer"] for f in features} == {"buildings", "footprints"}
    footprint = next(f for f in features if f["layer"] == "footprints")
    assert set(footprint["properties"]) == {"source", "community_code"}


def test_communities_tile_carries_the_rates_as_numbers(api_client, sample):
    z, (x, y) = 12, tile_xy(114.395, 30.508, 12)
    layer = decode(api_client.get(f"/tiles/communities/{z}/{x}/{y}.mvt").content)["communities"]
    with Session(sample) as session:
        rates = {r["code"]: r for r in compute_rates(session)}
    assert len(layer["features"]) == 6  # every community with a boundary
    for feature in layer["features"]:
        props = feature["properties"]
        expected = rates[props["code"]]
        for name in ("buildings", "buildings_on_map", "footprints", "residents"):
            assert props[name] == expected[name] and isinstance(props[name], int)
        for name in ("on_map_rate", "coverage_rate", "labeling_rate"):
            assert isinstance(props[name], float)
            assert props[name] == pytest.approx(expected[name])


def test_coverage_gaps_tile(api_client, sample):
    with sample.connect() as conn:
        gap, lon, lat = conn.execute(
            text(
                "SELECT id, ST_X(anchor), ST_Y(anchor) FROM footprint_cover "
                "JOIN footprint USING (id) WHERE NOT covered ORDER BY id LIMIT 1"
            )
        ).one()
        z, (x, y) = 16, tile_xy(lon, lat, 16)
        inside = {
            r[0]
            for r in conn.execute(
                text(
                    "SELECT id FROM footprint_cover WHERE NOT covered AND ST_Intersects("
                    "ST_Transform(geom, 3857), ST_Expand(ST_TileEnvelope(:z, :x, :y), :m))"
                ),
                {"z": z, "x": x, "y": y, "m": 2 * HALF_WORLD / 2**z / 64},
            )
        }
    response = api_client.get(f"/tiles/coverage-gaps/{z}/{x}/{y}.mvt")
    layer = decode(response.content)["coverage-gaps"]
    assert gap in ids_of(layer) == inside
    share = layer["features"][0]["properties"]["covered_share"]
    assert isinstance(share, float) and 0 <= share < 0.5


def test_tilejson(api_client, sample):
    response = api_client.get("/tiles/buildings,footprints.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["tilejson"] == "3.0.0"
    assert doc["tiles"] == ["http://testserver/tiles/buildings,footprints/{z}/{x}/{y}.mvt"]
    assert (doc["minzoom"], doc["maxzoom"]) == (12, 22)
    with sample.connect() as conn:
        box = conn.execute(
            text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM (SELECT ST_Extent(g) e "
                "FROM (SELECT footprint g FROM building UNION ALL SELECT geom FROM footprint) u) s"
            )
        ).one()
    assert doc["bounds"] == pytest.approx(list(box))
    layers = {layer["id"]: layer for layer in doc["vector_layers"]}
    assert list(layers) == ["buildings", "footprints"]
    fields = layers["buildings"]["fields"]
    assert fields["id"] == fields["name"] == fields["verified_at"] == "String"
    assert fields["floors"] == "Number"
    assert "updated_at" not in fields
    assert (layers["buildings"]["minzoom"], layers["buildings"]["maxzoom"]) == (12, 22)


def test_ogc_tiles_paths(api_client, tile16):
    z, x, y = tile16
    listing = api_client.get("/collections/buildings/tiles").json()
    (tileset,) = listing["tilesets"]
    assert tileset["tileMatrixSetURI"] == tiles.TMS_URI
    assert tileset["dataType"] == "vector"
    rels = {link["rel"]: link for link in tileset["links"]}
    assert rels["self"]["href"] == "http://testserver/collections/buildings/tiles/WebMercatorQuad"
    assert rels["http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"]["href"].endswith(
        "/tileMatrixSets/WebMercatorQuad"
    )
    assert rels["item"]["templated"] is True
    assert rels["item"]["href"].endswith("/WebMercatorQuad/{tileMatrix}/{tileRow}/{tileCol}")

    meta = api_client.get("/collections/buildings/tiles/WebMercatorQuad").json()
    limits = {lim["tileMatrix"]: lim for lim in meta["tileMatrixSetLimits"]}
    assert list(limits) == [str(level) for level in range(12, 23)]
    lim16 = limits["16"]
    assert lim16["minTileCol"] <= x <= lim16["maxTileCol"]
    assert lim16["minTileRow"] <= y <= lim16["maxTileRow"]
    (layer,) = meta["layers"]
    assert layer["id"] == "buildings" and layer["geometryDimension"] == 2
    assert layer["propertiesSchema"]["properties"]["verified_at"]["format"] == "date-time"

    ogc = api_client.get(f"/collections/buildings/tiles/WebMercatorQuad/{z}/{y}/{x}")
    xyz = api_client.get(f"/tiles/buildings/{z}/{x}/{y}.mvt")
    assert ogc.status_code == 200 and ogc.headers["content-type"] == MVT
    assert ogc.content == xyz.content and ogc.headers["etag"] == xyz.headers["etag"]

    sets = api_client.get("/tileMatrixSets").json()
    assert [s["id"] for s in sets["tileMatrixSets"]] == ["WebMercatorQuad"]
    tms = api_client.get("/tileMatrixSets/WebMercatorQuad").json()
    assert tms["uri"] == tiles.TMS_URI
    assert tms["crs"] == "http://www.opengis.net/def/crs/EPSG/0/3857"
    matrices = tms["tileMatrices"]
    assert [m["id"] for m in matrices] == [str(level) for level in range(25)]
    assert matrices[0]["cellSize"] == pytest.approx(156543.033928041)
    assert matrices[0]["scaleDenominator"] == pytest.approx(559082264.028717)
    assert matrices[16]["matrixWidth"] == matrices[16]["matrixHeight"] == 2**16
    assert matrices[3]["pointOfOrigin"] == pytest.approx([-HALF_WORLD, HALF_WORLD])
    assert all(m["cornerOfOrigin"] == "topLeft" and m["tileWidth"] == 256 for m in matrices)


def test_etag_and_304(api_client, tile16):
    z, x, y = tile16
    path = f"/tiles/buildings/{z}/{x}/{y}.mvt"
    first = api_client.get(path)
    etag = first.headers["etag"]
    assert etag.startswith('"') and first.headers["cache-control"] == "private, no-cache"
    again = api_client.get(path)
    assert again.headers["etag"] == etag and again.content == first.content
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        cached = api_client.get(path, headers={"If-None-Match": header})
        assert cached.status_code == 304, header
        assert cached.content == b""
        assert cached.headers["etag"] == etag
    # the identity representation's tag validates the gzip one too, and the other way
    plain = api_client.get(path, headers={"Accept-Encoding": "identity"})
    assert plain.headers["etag"] != etag
    assert api_client.get(path, headers={"If-None-Match": plain.headers["etag"]}).status_code == 304
    assert api_client.get(path, headers={"If-None-Match": '"stale"'}).status_code == 200
    # other tiles, formats and layer sets have other tags
    others = {
        api_client.get(p).headers["etag"]
        for p in (
            f"/tiles/buildings/{z}/{x}/{y}.geojson",
            f"/tiles/buildings,footprints/{z}/{x}/{y}.mvt",
            f"/tiles/buildings/{z}/{x + 1}/{y}.mvt",
        )
    }
    assert etag not in others and len(others) == 3


def test_gzip_when_accepted(api_client, tile16):
    z, x, y = tile16
    path = f"/tiles/buildings/{z}/{x}/{y}.mvt"
    plain = api_client.get(path, headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers
    assert plain.headers["vary"] == "Accept-Encoding"
    zipped = api_client.get(path, headers={"Accept-Encoding": "gzip, deflate"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["vary"] == "Accept-Encoding"
    assert zipped.content == plain.content  # httpx decoded it
    assert int(zipped.headers["content-length"]) < len(plain.content)
    refused = api_client.get(path, headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in refused.headers
    with api_client.stream("GET", path, headers={"Accept-Encoding": "gzip"}) as raw:
        body = b"".join(raw.iter_raw())
    assert gzip.decompress(body) == plain.content
    geojson = api_client.get(f"/tiles/buildings/{z}/{x}/{y}.geojson")
    assert geojson.headers["content-encoding"] == "gzip" and geojson.json()["features"]


def test_built_tiles_are_cached_by_etag(api_client, tile16, monkeypatch):
    z, x, y = tile16
    builds = []
    render = tiles.render_tile

    def counting(*args, **kwargs):
        builds.append(args[1:])
        return render(*args, **kwargs)

    monkeypatch.setattr(tiles, "render_tile", counting)
    path = f"/tiles/footprints/{z + 1}/{2 * x}/{2 * y}.geojson"
    first = api_client.get(path)
    second = api_client.get(path, headers={"Accept-Encoding": "identity"})
    assert len(builds) == 1 and first.content == second.content

    cache = api_tiles.TileCache(2)
    for key in "abc":
        cache.put(key, tiles.Tile(key.encode(), "mvt", empty=False))
    assert cache.get("a") is None and cache.get("b") is not None
    cache.put("d", tiles.Tile(b"d", "mvt", empty=False))
    assert list(cache.entries) == ["b", "d"]  # c was the least recently used
    small = api_tiles.TileCache(10, max_bytes=5)
    for key in ("ab", "cd", "ef"):
        small.put(key, tiles.Tile(key.encode(), "mvt", empty=False))
    assert list(small.entries) == ["cd", "ef"] and small.bytes == 4  # bytes bound it
    small.put("big", tiles.Tile(b"123456", "mvt", empty=False))  # larger than the whole
    assert "big" not in small.entries
    disabled = api_tiles.TileCache(0)
    disabled.put("a", tiles.Tile(b"a", "mvt", empty=False))
    assert not disabled.entries


def test_layers_outside_their_zoom_range_are_left_out(api_client, tile16):
    x5, y5 = tile_xy(114.39, 30.505, 5)
    low = api_client.get(f"/tiles/buildings/5/{x5}/{y5}.mvt")
    assert low.status_code == 204 and low.content == b""
    assert low.headers["etag"] and low.headers["cache-control"] == "private, no-cache"
    assert (
        api_client.get(
            f"/tiles/buildings/5/{x5}/{y5}.mvt", headers={"If-None-Match": low.headers["etag"]}
        ).status_code
        == 304
    )
    empty = api_client.get(f"/tiles/buildings/5/{x5}/{y5}.geojson")
    assert empty.status_code == 200
    assert empty.json() == {"type": "FeatureCollection", "features": []}
    x23, y23 = tile_xy(114.3905, 30.50854, 23)
    assert api_client.get(f"/tiles/buildings/23/{x23}/{y23}.mvt").status_code == 204
    # communities (from z8) are drawn at z12 but footprints (from z13) are not
    x12, y12 = tile_xy(114.395, 30.508, 12)
    mixed = decode(api_client.get(f"/tiles/footprints,communities/12/{x12}/{y12}.mvt").content)
    assert list(mixed) == ["communities"]


def test_a_tile_without_features_is_204(api_client):
    response = api_client.get("/tiles/buildings/16/0/0.mvt")
    assert response.status_code == 204 and response.headers["etag"]
    assert api_client.get("/tiles/buildings/16/0/0.geojson").json()["features"] == []


# ---------------------------------------------------------------- fresh databases

COMMUNITY = "420111002005"


def add_community(session: Session) -> None:
    session.execute(
        text(
            "INSERT INTO community (code, name, street_code, district_code, boundary) "
            "VALUES (:code, '测试社区', '420111002', '420111', "
            "ST_Multi(ST_MakeEnvelope(114.30, 30.40, 114.50, 30.60, 4490)))"
        ),
        {"code": COMMUNITY},
    )


def add_building(session: Session, id_: str, west: float, south: float, side: float, **extra):
    session.execute(
        text(
            "INSERT INTO building (id, community_code, name, floors, verified_at, footprint) "
            "VALUES (:id, :community, :name, :floors, :verified_at, "
            "ST_Multi(ST_MakeEnvelope(:w, :s, :w + :side, :s + :side, 4490)))"
        ),
        {
            "id": id_,
            "community": COMMUNITY,
            "name": extra.get("name"),
            "floors": extra.get("floors"),
            "verified_at": extra.get("verified_at"),
            "w": west,
            "s": south,
            "side": side,
        },
    )


def tile_path(layers: str, lon: float, lat: float, z: int = 16) -> str:
    x, y = tile_xy(lon, lat, z)
    return f"/tiles/{layers}/{z}/{x}/{y}.mvt"


@pytest.fixture
def fresh_client(db_url: str, tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(api_settings_for(db_url, tmp_path))
    with TestClient(app, headers=bearer(grant(db_url))) as client:
        yield client


def test_feature_cap_keeps_the_largest(session, fresh_client, monkeypatch):
    z = 16
    x, y = tile_xy(114.39, 30.505, z)
    west, south, _, _ = tile_lonlat_bounds(z, x, y)
    add_community(session)
    sides = {f"B{i:02d}": (2 + i) * 1e-5 for i in range(30)}  # 2 m .. 34 m, all over a pixel
    for i, (id_, side) in enumerate(sides.items()):
        add_building(
            session, id_, west + 4e-4 + (i % 6) * 8e-4, south + 4e-4 + (i // 6) * 8e-4, side
        )
    add_building(session, "TINY", west + 3e-3, south + 4.5e-3, 1e-6)  # ~10 cm
    session.commit()
    cap = 5
    capped = dataclasses.replace(collections.BUILDINGS, tile_feature_cap=cap)
    monkeypatch.setitem(collections.COLLECTIONS, "buildings", capped)
    largest = set(sorted(sides, key=sides.get)[-cap:])

    response = fresh_client.get(f"/tiles/buildings/{z}/{x}/{y}.mvt")
    assert response.headers["tile-capped"] == f"buildings;cap={cap}"
    assert ids_of(decode(response.content)["buildings"]) == largest
    geojson = fresh_client.get(f"/tiles/buildings/{z}/{x}/{y}.geojson")
    assert geojson.headers["tile-capped"] == f"buildings;cap={cap}"
    assert {f["id"] for f in geojson.json()["features"]} == largest

    # without the cap every building over a pixel is drawn, and the 10 cm one is not
    monkeypatch.setitem(collections.COLLECTIONS, "buildings", collections.BUILDINGS)
    uncapped = fresh_client.get(f"/tiles/buildings/{z}/{x}/{y}.mvt")
    assert "tile-capped" not in uncapped.headers
    assert ids_of(decode(uncapped.content)["buildings"]) == set(sides)
    # ... until a pixel is smaller than it
    x22, y22 = tile_xy(west + 3e-3 + 5e-7, south + 4.5e-3 + 5e-7, 22)
    close = decode(fresh_client.get(f"/tiles/buildings/22/{x22}/{y22}.mvt").content)
    assert ids_of(close["buildings"]) == {"TINY"}


def test_an_edit_invalidates_exactly_the_tiles_it_touches(session, fresh_client):
    add_community(session)
    add_building(
        session,
        "A",
        114.3901,
        30.5051,
        1e-4,
        name="甲",
        floors=3,
        verified_at="2024-05-01T10:00:00+08:00",
    )
    add_building(session, "B", 114.4201, 30.5301, 1e-4, name="乙", floors=5)
    session.execute(
        text(
            "INSERT INTO address (code, community_code, building_id, road, house_number, "
            "door_plate) VALUES ('ADDR-A', :c, 'A', '鲁磨路', '1号', "
            "ST_SetSRID(ST_MakePoint(114.39015, 30.50515), 4490))"
        ),
        {"c": COMMUNITY},
    )
    session.commit()
    tile_a = tile_path("buildings", 114.39015, 30.50515)
    tile_b = tile_path("buildings", 114.42015, 30.53015)
    assert tile_a != tile_b

    def state(path: str) -> tuple[str, dict[str, Any]]:
        response = fresh_client.get(path)
        assert response.status_code == 200
        (feature,) = decode(response.content)["buildings"]["features"]
        return response.headers["etag"], feature["properties"]

    etag_a, props_a = state(tile_a)
    etag_b, _ = state(tile_b)
    assert props_a["verified_at"] == "2024-05-01T02:00:00Z"
    assert props_a["address_label"] == "鲁磨路 1号"

    session.execute(
        text("UPDATE building SET name = '甲改', floors = 4, updated_at = now() WHERE id = 'A'")
    )
    session.commit()
    etag_a2, props_a2 = state(tile_a)
    assert etag_a2 != etag_a
    assert (props_a2["name"], props_a2["floors"]) == ("甲改", 4)
    assert state(tile_b)[0] == etag_b
    assert fresh_client.get(tile_a, headers={"If-None-Match": etag_a}).status_code == 200
    assert fresh_client.get(tile_b, headers={"If-None-Match": etag_b}).status_code == 304

    # an address edit reaches the tile of the building it labels (address_label)
    session.execute(
        text("UPDATE address SET road = '珞喻路', updated_at = now() WHERE code = 'ADDR-A'")
    )
    session.commit()
    etag_a3, props_a3 = state(tile_a)
    assert etag_a3 != etag_a2 and props_a3["address_label"] == "珞喻路 1号"
    assert state(tile_b)[0] == etag_b

    # deleting a building changes its tile only
    session.execute(text("DELETE FROM address WHERE building_id = 'B'"))
    session.execute(text("DELETE FROM building WHERE id = 'B'"))
    session.commit()
    assert state(tile_a)[0] == etag_a3
    gone = fresh_client.get(tile_b)
    assert gone.status_code == 204 and gone.headers["etag"] != etag_b


def test_coverage_gaps_follow_the_buildings_that_cover_them(session, fresh_client):
    add_community(session)
    for id_, west, south in (("F-A", 114.3901, 30.5051), ("F-B", 114.4201, 30.5301)):
        session.execute(
            text(
                "INSERT INTO footprint (id, source, geom) VALUES (:id, 'test', "
                "ST_Multi(ST_MakeEnvelope(:w, :s, :w + 1e-4, :s + 1e-4, 4490)))"
            ),
            {"id": id_, "w": west, "s": south},
        )
    session.commit()
    tile_a = tile_path("coverage-gaps", 114.39015, 30.50515)
    tile_b = tile_path("coverage-gaps", 114.42015, 30.53015)
    first_a, first_b = fresh_client.get(tile_a), fresh_client.get(tile_b)
    assert ids_of(decode(first_a.content)["coverage-gaps"]) == {"F-A"}

    # a building drawn over F-A closes its gap: tile A changes, tile B does not
    add_building(session, "A", 114.3901, 30.5051, 1e-4)
    session.commit()
    after_a = fresh_client.get(tile_a)
    assert after_a.status_code == 204 and after_a.headers["etag"] != first_a.headers["etag"]
    assert fresh_client.get(tile_b).headers["etag"] == first_b.headers["etag"]


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("path", "status", "parameter"),
    [
        ("/tiles/nope/16/0/0.mvt", 404, "collections"),
        ("/tiles/buildings,nope/16/0/0.geojson", 404, "collections"),
        ("/tiles/,/16/0/0.mvt", 400, "collections"),
        ("/tiles/nope.json", 404, "collections"),
        ("/tiles/buildings/25/0/0.mvt", 400, "z"),
        ("/tiles/buildings/-1/0/0.mvt", 400, "z"),
        ("/tiles/buildings/a/0/0.mvt", 400, "z"),
        ("/tiles/buildings/2/4/0.mvt", 400, "x"),
        ("/tiles/buildings/2/-1/0.mvt", 400, "x"),
        ("/tiles/buildings/2/1.5/0.geojson", 400, "x"),
        ("/tiles/buildings/2/0/4.mvt", 400, "y"),
        ("/tiles/buildings/2/0/y.mvt", 400, "y"),
        ("/collections/nope/tiles", 404, "collectionId"),
        ("/collections/buildings,footprints/tiles/WebMercatorQuad", 400, "collectionId"),
        ("/collections/buildings/tiles/WorldCRS84Quad", 404, "tileMatrixSetId"),
        ("/collections/buildings/tiles/WorldCRS84Quad/1/0/0", 404, "tileMatrixSetId"),
        ("/collections/buildings/tiles/WebMercatorQuad/25/0/0", 400, "tileMatrix"),
        ("/collections/buildings/tiles/WebMercatorQuad/x/0/0", 400, "tileMatrix"),
        ("/collections/buildings/tiles/WebMercatorQuad/1/2/0", 400, "tileRow"),
        ("/collections/buildings/tiles/WebMercatorQuad/1/0/2", 400, "tileCol"),
        ("/tileMatrixSets/WorldCRS84Quad", 404, "tileMatrixSetId"),
    ],
)
def test_errors_are_problems_naming_the_parameter(api_client, path, status, parameter):
    response = api_client.get(path)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    assert [e["parameter"] for e in body["errors"]] == [parameter]
    assert repr(parameter) in body["detail"]


def test_a_residents_change_reaches_the_communities_tiles_through_the_rates(session, fresh_client):
    """Rates read rooms and residents, which have no geometry: the counters' triggers
    bump the community's cells (migration 0005), so its tiles change and a far tile not."""
    add_community(session)
    add_building(session, "A", 114.3901, 30.5051, 1e-4)
    session.execute(text("INSERT INTO room (id, building_id, number) VALUES ('R1', 'A', '101')"))
    session.execute(
        text(
            "INSERT INTO community (code, name, street_code, district_code, boundary) "
            "VALUES ('420111002006', '远社区', '420111002', '420111', "
            "ST_Multi(ST_MakeEnvelope(114.60, 30.40, 114.70, 30.50, 4490)))"
        )
    )
    session.commit()
    near = tile_path("communities", 114.3902, 30.5052, 12)
    far = tile_path("communities", 114.65, 30.45, 12)
    assert near != far
    first_near, first_far = fresh_client.get(near), fresh_client.get(far)
    assert first_near.status_code == first_far.status_code == 200
    person = session.execute(
        text(
            "INSERT INTO person (id_hmac, id_cipher, id_tail, name) "
            "VALUES ('\\x01', '\\x02', '0001', '测试') RETURNING id"
        )
    ).scalar_one()
    session.execute(
        text(
            "INSERT INTO residence (person_id, room_id, community_code, category) "
            "VALUES (:p, 'R1', :c, 'household')"
        ),
        {"p": person, "c": COMMUNITY},
    )
    session.commit()
    after = fresh_client.get(near, headers={"If-None-Match": first_near.headers["etag"]})
    assert after.status_code == 200 and after.headers["etag"] != first_near.headers["etag"]
    (feature,) = decode(after.content)["communities"]["features"]
    assert feature["properties"]["residents_on_map"] == 1
    again = fresh_client.get(far, headers={"If-None-Match": first_far.headers["etag"]})
    assert again.status_code == 304
