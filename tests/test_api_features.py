"""OGC API – Features over the sample registry: resources, paging, CRS, filters and errors.

Expected values come from the database itself (SQL over the same tables) or from pyproj,
never from the API under test.
"""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from fastapi import Request
from fastapi.testclient import TestClient
from pyproj import Transformer
from sqlalchemy import create_engine, text

from api import create_app
from registry.auth import Principal

from conftest import LiveServer, api_settings_for, bearer, grant

EPSG = "http://www.opengis.net/def/crs/EPSG/0/"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"


@pytest.fixture(scope="module")
def sample_sql(sample_db_url):
    engine = create_engine(sample_db_url)

    def run(sql: str, **params):
        with engine.connect() as conn:
            return conn.execute(text(sql), params).all()

    yield run
    engine.dispose()


def all_pages(client, url: str) -> tuple[list[dict], int]:
    """Follow rel=next links from ``url``; the features and the number of pages."""
    features, pages = [], 0
    while url:
        response = client.get(url)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["numberReturned"] == len(page["features"])
        features += page["features"]
        pages += 1
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
    return features, pages


# ---------------------------------------------------------------- resources


def test_landing_page_links(api_client):
    body = api_client.get("/").json()
    rels = {link["rel"]: link for link in body["links"]}
    for rel in ("self", "service-desc", "service-doc", "conformance", "data"):
        assert rel in rels
    assert rels["service-desc"]["type"] == "application/vnd.oai.openapi+json;version=3.0"
    tiling = rels["http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes"]["href"]
    assert api_client.get(tiling).json()["tileMatrixSets"][0]["id"] == "WebMercatorQuad"
    assert api_client.get(rels["service-desc"]["href"]).json()["openapi"].startswith("3.0")


def test_conformance_declares_core_crs_and_filter(api_client):
    classes = api_client.get("/conformance").json()["conformsTo"]
    for suffix in (
        "features-1/1.0/conf/core",
        "features-1/1.0/conf/geojson",
        "features-1/1.0/conf/oas30",
        "features-2/1.0/conf/crs",
        "features-3/1.0/conf/filter",
        "cql2/1.0/conf/cql2-text",
    ):
        assert any(c.endswith(suffix) for c in classes), suffix


def test_collections_describe_public_data_only(api_client, sample_sql):
    collections = api_client.get("/collections").json()["collections"]
    ids = [c["id"] for c in collections]
    assert ids == [
        "communities",
        "buildings",
        "addresses",
        "footprints",
        "coverage-gaps",
        "organizations",
    ]
    assert not {"persons", "person", "rooms", "room", "residents"} & set(ids)
    buildings = next(c for c in collections if c["id"] == "buildings")
    assert buildings["itemType"] == "feature"
    assert buildings["storageCrs"] == EPSG + "4490"
    assert {CRS84, EPSG + "4326", EPSG + "4490", EPSG + "3857", EPSG + "4547"} <= set(
        buildings["crs"]
    )
    ((minx, miny, maxx, maxy),) = sample_sql(
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) "
        "FROM (SELECT ST_Extent(footprint) e FROM building) x"
    )
    box = buildings["extent"]["spatial"]["bbox"][0]
    assert box[0] <= minx + 1e-3 and box[2] >= maxx - 1e-3
    assert box[1] <= miny + 1e-3 and box[3] >= maxy - 1e-3
    assert api_client.get("/collections/buildings").json()["id"] == "buildings"
    links = {link["rel"]: link["href"] for link in buildings["links"]}
    tilesets = api_client.get(links["http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector"])
    assert tilesets.status_code == 200


def test_communities_carry_their_rates(api_client):
    """Rates as properties, for a choropleth: the same values as GET /reports-free compute."""
    from registry.db import make_engine, transaction
    from registry.rates import compute_rates

    features = api_client.get("/collections/communities/items").json()["features"]
    engine = make_engine(
        api_client.app.state.settings.database_url.replace(
            "postgresql+psycopg", "postgresql+psycopg"
        )
    )
    with transaction(engine) as session:
        expected = {r["code"]: r for r in compute_rates(session)}
    engine.dispose()
    assert {f["id"] for f in features} == set(expected)
    for feature in features:
        row = expected[feature["id"]]
        for field in (
            "buildings",
            "buildings_on_map",
            "on_map_rate",
            "coverage_rate",
            "labeling_rate",
            "population_on_map_rate",
        ):
            assert feature["properties"][field] == pytest.approx(row[field]), field


def test_queryables_are_a_json_schema(api_client):
    response = api_client.get("/collections/buildings/queryables")
    assert response.headers["content-type"].startswith("application/schema+json")
    schema = response.json()
    assert schema["$id"].endswith("/collections/buildings/queryables")
    assert schema["properties"]["floors"]["type"] == "integer"
    assert schema["properties"]["verification"]["enum"] == [
        "unverified",
        "verified",
        "corrected",
        "not_found",
        "disputed",
    ]
    assert "geometry" in schema["properties"]
    assert "$ref" not in json.dumps(schema)


# ---------------------------------------------------------------- paging


def test_paging_walks_every_building_exactly_once(api_client, sample_sql):
    expected = [r.id for r in sample_sql("SELECT id FROM building ORDER BY id")]
    first = api_client.get("/collections/buildings/items?limit=37").json()
    assert first["numberMatched"] == len(expected)
    features, pages = all_pages(api_client, "/collections/buildings/items?limit=37")
    assert [f["id"] for f in features] == expected
    assert pages == -(-len(expected) // 37)


def test_next_pages_omit_number_matched_and_keep_filters(api_client):
    first = api_client.get("/collections/buildings/items?limit=5&status=in_use").json()
    next_href = next(link["href"] for link in first["links"] if link["rel"] == "next")
    query = parse_qs(urlparse(next_href).query)
    assert query["status"] == ["in_use"] and query["limit"] == ["5"]
    second = api_client.get(next_href).json()
    assert "numberMatched" not in second  # no COUNT on later pages
    assert second["numberReturned"] == 5


def test_limit_above_maximum_is_served_as_maximum(api_client, sample_sql):
    ((total,),) = sample_sql("SELECT count(*) FROM address")
    page = api_client.get("/collections/addresses/items?limit=1000000").json()
    assert page["numberReturned"] == min(total, 10_000)


def engine_with_one_community(db_url: str):
    """An engine on a fresh database holding one community, 420111002005."""
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO community (code, name, street_code, district_code) "
                "VALUES ('420111002005', '南望社区', '420111002', '420111')"
            )
        )
    return engine


def test_keyset_pages_stay_correct_under_concurrent_inserts(db_url, tmp_path):
    """A row inserted before the cursor while a client pages is neither seen twice nor
    shifts the next page, as OFFSET paging would."""
    engine = engine_with_one_community(db_url)
    with engine.begin() as conn:
        for n in range(2, 12, 2):
            conn.execute(
                text("INSERT INTO building (id, community_code) VALUES (:id, '420111002005')"),
                {"id": f"B{n:02d}"},
            )
    app = create_app(api_settings_for(db_url, tmp_path))
    with TestClient(app, headers=bearer(grant(db_url))) as client:
        first = client.get("/collections/buildings/items?limit=2").json()
        assert [f["id"] for f in first["features"]] == ["B02", "B04"]
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO building (id, community_code) VALUES ('B01', '420111002005'), "
                    "('B05', '420111002005')"
                )
            )
        href = next(link["href"] for link in first["links"] if link["rel"] == "next")
        rest, _ = all_pages(client, href)
    engine.dispose()
    assert [f["id"] for f in rest] == ["B05", "B06", "B08", "B10"]


# ---------------------------------------------------------------- bbox and CRS


def test_bbox_returns_exactly_the_intersecting_features(api_client, sample_sql):
    box = (114.39, 30.505, 114.395, 30.51)
    expected = {
        r.id
        for r in sample_sql(
            "SELECT id FROM building WHERE ST_Intersects(footprint, "
            "ST_MakeEnvelope(:a, :b, :c, :d, 4490))",
            a=box[0],
            b=box[1],
            c=box[2],
            d=box[3],
        )
    }
    assert expected  # the box is chosen to hold some buildings
    bbox = ",".join(map(str, box))
    got = {
        f["id"]
        for f in api_client.get(f"/collections/buildings/items?bbox={bbox}").json()["features"]
    }
    assert got == expected
    # EPSG:4326 axis order is latitude first
    lat_first = f"{box[1]},{box[0]},{box[3]},{box[2]}"
    swapped = api_client.get(
        f"/collections/buildings/items?bbox={lat_first}&bbox-crs={EPSG}4326"
    ).json()["features"]
    assert {f["id"] for f in swapped} == expected


def first_ring(feature):
    return feature["geometry"]["coordinates"][0][0]


@pytest.mark.parametrize("epsg", [4547, 3857])
def test_crs_parameter_transforms_as_pyproj_does(api_client, epsg):
    reference = api_client.get(f"/collections/buildings/items/GG-0002?crs={EPSG}4490")
    assert reference.headers["content-crs"] == f"<{EPSG}4490>"
    lat_lon = first_ring(reference.json())
    response = api_client.get(f"/collections/buildings/items/GG-0002?crs={EPSG}{epsg}")
    assert response.headers["content-crs"] == f"<{EPSG}{epsg}>"
    projected = first_ring(response.json())
    to_target = Transformer.from_crs(4490, epsg, always_xy=True)
    for (lat, lon), got in zip(lat_lon, projected, strict=True):
        easting, northing = to_target.transform(lon, lat)
        expected = (northing, easting) if epsg == 4547 else (easting, northing)  # EPSG axis order
        assert got == pytest.approx(expected, abs=0.01)


def test_crs84_is_lon_lat_and_epsg_4326_is_lat_lon(api_client):
    crs84 = api_client.get("/collections/addresses/items?limit=1").json()["features"][0]
    epsg4326 = api_client.get(f"/collections/addresses/items?limit=1&crs={EPSG}4326").json()[
        "features"
    ][0]
    lon, lat = crs84["geometry"]["coordinates"]
    assert 113 < lon < 115 and 29 < lat < 32
    assert epsg4326["geometry"]["coordinates"] == pytest.approx([lat, lon], abs=1e-7)


# ---------------------------------------------------------------- filters


def test_property_filters_are_applied_by_the_server(api_client, sample_sql):
    code = sample_sql("SELECT community_code FROM building GROUP BY 1 ORDER BY count(*) DESC")[0][0]
    expected = {
        r.id
        for r in sample_sql(
            "SELECT id FROM building WHERE community_code = :c AND floors = 6", c=code
        )
    }
    page = api_client.get(f"/collections/buildings/items?community_code={code}&floors=6").json()
    assert {f["id"] for f in page["features"]} == expected
    assert page["numberMatched"] == len(expected)


def test_cql2_filter(api_client, sample_sql):
    expected = {
        r.id
        for r in sample_sql("SELECT id FROM building WHERE floors >= 10 AND use = 'residential'")
    }
    page = api_client.get(
        "/collections/buildings/items", params={"filter": "floors >= 10 AND use = 'residential'"}
    ).json()
    assert {f["id"] for f in page["features"]} == expected
    spatial = api_client.get(
        "/collections/buildings/items",
        params={"filter": "S_INTERSECTS(geometry, BBOX(114.39, 30.505, 114.395, 30.51))"},
    ).json()
    box = api_client.get("/collections/buildings/items?bbox=114.39,30.505,114.395,30.51").json()
    assert {f["id"] for f in spatial["features"]} == {f["id"] for f in box["features"]}


def test_datetime_filters_buildings_by_verification_time(db_url, tmp_path):
    engine = engine_with_one_community(db_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO building (id, community_code, verified_at) VALUES "
                "('A', '420111002005', '2026-01-20T10:00:00Z'), "
                "('B', '420111002005', '2026-03-01T10:00:00Z'), ('C', '420111002005', NULL)"
            )
        )
    engine.dispose()
    app = create_app(api_settings_for(db_url, tmp_path))
    with TestClient(app, headers=bearer(grant(db_url))) as client:

        def ids(value):
            body = client.get(f"/collections/buildings/items?datetime={value}").json()
            return [f["id"] for f in body["features"]]

        # not analysed, no footprints: the extent falls back to computing, and finds none
        extent = client.get("/collections/buildings").json()["extent"]["spatial"]["bbox"]
        assert extent == [[-180, -90, 180, 90]]
        assert ids("2026-01-20") == ["A"]
        assert ids("2026-01-20T") == ["A"]  # GDAL 3.6 sends a date with a trailing T
        assert ids("2026-02-01T00:00:00Z/..") == ["B"]
        assert ids("../2026-12-31") == ["A", "B"]


# ---------------------------------------------------------------- items, formats, errors


def test_single_feature_and_html(api_client):
    feature = api_client.get("/collections/buildings/items/GG-0002")
    assert feature.headers["content-type"] == "application/geo+json"
    body = feature.json()
    assert body["id"] == "GG-0002" and body["type"] == "Feature"
    assert body["properties"]["name"] == "光谷資本大廈"
    page = api_client.get("/collections/buildings/items?limit=3&f=html")
    assert page.headers["content-type"].startswith("text/html")
    assert "光谷資本大廈" in api_client.get("/collections/buildings/items/GG-0002?f=html").text
    assert "<table>" in page.text and "http://" not in page.text.split("<ul>")[0]


@pytest.mark.parametrize(
    ("url", "status", "says"),
    [
        ("/collections/buildings/items?bbox=114.4,30.5,114.3,30.6", 400, "greater than maximum"),
        ("/collections/buildings/items?bbox=1,2,3", 400, "4 or 6 numbers"),
        ("/collections/buildings/items?bbox=a,b,c,d", 400, "numbers"),
        ("/collections/buildings/items?crs=EPSG:9999", 400, "unsupported CRS"),
        ("/collections/buildings/items?bbox-crs=urn:nope&bbox=1,2,3,4", 400, "bbox-crs"),
        ("/collections/buildings/items?limit=-1", 400, "limit"),
        ("/collections/buildings/items?limit=ten", 400, "limit"),
        ("/collections/buildings/items?floors=many", 400, "floors"),
        ("/collections/buildings/items?status=ruined", 400, "status"),
        ("/collections/buildings/items?colour=red", 400, "unknown query parameter 'colour'"),
        ("/collections/buildings/items?filter=floors%20%3E", 400, "filter"),
        ("/collections/buildings/items?filter-lang=cql2-json", 400, "filter-lang"),
        ("/collections/buildings/items?datetime=yesterday", 400, "datetime"),
        ("/collections/buildings/items?f=xml", 400, "'f'"),
        ("/collections/buildings/items?after=%00", 400, "NUL"),
        ("/collections/persons/items", 404, "no collection 'persons'"),
        ("/collections/rooms", 404, "no collection"),
        ("/collections/buildings/items/no-such-building", 404, "no feature"),
    ],
)
def test_bad_requests_are_problem_json(api_client, url, status, says):
    response = api_client.get(url)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == status
    assert says in problem["detail"]


# ---------------------------------------------------------------- timeouts and disconnects


def add_slow_route(app):
    """A test-only route that runs a long query through the API's own pool."""

    async def slow(request: Request) -> dict:
        async with request.app.state.database.unscoped() as conn:
            await conn.execute(text("SELECT pg_sleep(30)"))
        return {"done": True}

    async def slow_scoped(request: Request) -> dict:
        # as the read paths do: a transaction carrying a principal, rolled back at the end
        reader = Principal("slow-reader", "admin", ())
        async with request.app.state.database.scoped(reader) as conn:
            await conn.execute(text("SELECT pg_sleep(30)"))
        return {"done": True}

    app.add_api_route("/test-only/slow", slow)
    app.add_api_route("/test-only/slow-scoped", slow_scoped)


def test_statement_timeout_answers_503(sample_db_url, tmp_path):
    app = create_app(api_settings_for(sample_db_url, tmp_path, statement_timeout_ms=300))
    add_slow_route(app)
    with TestClient(app) as client:
        started = time.monotonic()
        response = client.get("/test-only/slow")
    assert response.status_code == 503
    assert time.monotonic() - started < 10
    assert "longer than the server allows" in response.json()["detail"]


def test_query_is_cancelled_when_the_client_goes_away(sample_db_url, tmp_path):
    app = create_app(api_settings_for(sample_db_url, tmp_path))
    add_slow_route(app)
    engine = create_engine(sample_db_url)

    def running() -> int:
        with engine.connect() as conn:
            return conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'registry-api' "
                    "AND state = 'active' AND query LIKE '%pg_sleep%'"
                )
            ).scalar_one()

    with LiveServer(app) as server:
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(server.url + "/test-only/slow", timeout=1.0)
        deadline = time.monotonic() + 10
        while running() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert running() == 0
    engine.dispose()


def test_a_read_cancelled_mid_transaction_is_no_server_error(sample_db_url, tmp_path, caplog):
    """A map drops tile requests all the time (panning, zooming): the cancelled read's
    connection is invalidated quietly, nothing is logged as an application error, and the
    pool goes on serving."""
    app = create_app(api_settings_for(sample_db_url, tmp_path, pool_size=1, max_overflow=0))
    add_slow_route(app)
    with LiveServer(app) as server, caplog.at_level(logging.ERROR):
        for _ in range(3):
            with pytest.raises(httpx.ReadTimeout):
                httpx.get(server.url + "/test-only/slow-scoped", timeout=0.5)
        time.sleep(1.0)  # the server notices each disconnect and cancels its handler
        assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
        # the only connection of the pool was handed back usable (or replaced)
        assert httpx.get(server.url + "/collections/buildings", timeout=5).status_code == 401
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
