"""GET /reports/coverage and /reports/gaps over the 光谷 sample, and coverage_gaps().

Rates are checked against compute_rates and the independently computed
expected_counts.json; gap lists against SQL written independently of the registry's.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import shape
from sqlalchemy import Engine, bindparam, func, select, text
from sqlalchemy.orm import Session

from registry.db import make_engine
from registry.gaps import GAPS, LISTED, coverage_gaps, packaged_sql
from registry.output import RATE_TITLES
from registry.rates import COUNTS, FIELDS, LEVELS, RATES, compute_rates

from conftest import bearer

EXPECTED = json.loads(
    (Path(__file__).parents[1] / "data/fixtures/guanggu/expected_counts.json").read_text("utf-8")
)
AS_OF = EXPECTED["as_of"]
COMMUNITY = "420111002005"  # 南望社区
EMPTY = "420111002026"  # 长江社区: no boundary, nothing in it
REMOTE = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


@pytest.fixture(scope="module")
def sample_engine(sample_db_url: str) -> Iterator[Engine]:
    engine = make_engine(sample_db_url).execution_options(postgresql_readonly=True)
    yield engine
    engine.dispose()


@pytest.fixture
def sample_session(sample_engine: Engine) -> Iterator[Session]:
    with Session(sample_engine) as session:
        yield session
        session.rollback()


def rates(session: Session, level: str = "community", code: str | None = None) -> list[dict]:
    rows = compute_rates(session, level, code, dt.date.fromisoformat(AS_OF))  # type: ignore[arg-type]
    return json.loads(json.dumps(rows))  # as the CLI prints them


def get_coverage(api_client, **params: str):
    return api_client.get("/reports/coverage", params={"as_of": AS_OF, **params})


# ---------------------------------------------------------------- JSON


@pytest.mark.parametrize("level", LEVELS)
def test_json_is_compute_rates(api_client, sample_session, level):
    response = get_coverage(api_client, level=level)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-as-of"] == AS_OF
    assert response.json() == rates(sample_session, level)
    assert all(list(row) == list(FIELDS) for row in response.json())


def test_json_counts_match_expected_counts(api_client):
    rows = {row["code"]: row for row in get_coverage(api_client).json()}
    assert set(rows) == {c["code"] for c in EXPECTED["communities"]}
    for expected in EXPECTED["communities"]:
        row = rows[expected["code"]]
        assert row["name"] == expected["name"]
        for field in (*COUNTS, "on_map_rate", "coverage_rate", "labeling_rate"):
            assert row[field] == pytest.approx(expected[field]), (expected["code"], field)
        assert row["population_on_map_rate"] == pytest.approx(expected["population_on_map_rate"])
    assert all(rows[EMPTY][field] is None for field in FIELDS if field.endswith("_rate"))


def test_json_code_prefix(api_client, sample_session):
    response = get_coverage(api_client, level="street", code="420111")
    assert response.json() == rates(sample_session, "street", "420111")
    assert [r["code"] for r in get_coverage(api_client, code=COMMUNITY).json()] == [COMMUNITY]


def test_as_of_defaults_to_today(api_client):
    response = api_client.get("/reports/coverage")
    assert response.status_code == 200
    assert response.headers["x-as-of"] == dt.date.today().isoformat()


# ---------------------------------------------------------------- CSV


def test_csv(api_client, sample_session):
    response = get_coverage(api_client, f="csv", code="420111002")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    disposition = response.headers["content-disposition"]
    assert disposition == 'attachment; filename="rates-community-420111002-2026-11-29.csv"'
    assert response.content.startswith(b"\xef\xbb\xbf")
    body = response.content.decode("utf-8-sig")
    assert body.splitlines()[0] == ",".join(FIELDS)
    assert "南望社区" in body and "华中科技大学社区" in body
    parsed = list(csv.DictReader(io.StringIO(body)))
    expected = [
        {k: "" if v is None else str(v) for k, v in row.items()}
        for row in rates(sample_session, code="420111002")
    ]
    assert parsed == expected


# ---------------------------------------------------------------- HTML


def tags(page: str) -> list[str]:
    return re.findall(r"<(?:script|link)\b[^>]*>", page, re.IGNORECASE)


def assert_offline(page: str) -> None:
    assert not [t for t in tags(page) if REMOTE.search(t)]
    # nothing at all points a script or stylesheet at the web
    for tag in tags(page):
        assert "http://" not in tag and "https://" not in tag, tag


def test_html_page(api_client):
    response = get_coverage(api_client, f="html")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "<table>" in page and "<th>覆盖率 coverage</th>" in page
    for expected in EXPECTED["communities"]:
        assert expected["name"] in page
    assert "95.9% (47/49)" in page  # 南望社区 on the map, numerator/denominator shown
    assert "— (0/0)" in page  # 长江社区's null rates
    assert "L.map(" in page and "L.geoJson(" in page and "bindTooltip(" in page
    assert '<script src="/static/vendor/leaflet/leaflet.js"></script>' in page
    assert '<link rel="stylesheet" href="/static/vendor/leaflet/leaflet.css"/>' in page
    assert "tileLayer" not in page  # no basemap configured: no base layer
    assert_offline(page)
    for src in ("leaflet.js", "leaflet.css", "images/layers.png", "images/marker-icon.png"):
        assert api_client.get(f"/static/vendor/leaflet/{src}").status_code == 200, src


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("rate", RATES)
def test_html_levels_and_rates(api_client, level, rate):
    response = get_coverage(api_client, f="html", level=level, rate=rate)
    assert response.status_code == 200
    page = response.text
    assert f"<strong>{RATE_TITLES[rate]}</strong>" in page  # the rate the map shows
    assert "L.geoJson(" in page
    assert_offline(page)


def test_html_street_outline_is_the_union(api_client):
    page = get_coverage(api_client, f="html", level="street").text
    assert '"id": "420111002"' in page and "关山街道" in page


def test_html_basemap(api_settings, admin_token):
    from fastapi.testclient import TestClient

    from api import create_app

    url = "https://tiles.example.org/{z}/{x}/{y}.png"
    settings = api_settings.model_copy(update={"basemap_url": url})
    with TestClient(create_app(settings), headers=bearer(admin_token)) as client:
        page = client.get("/reports/coverage", params={"f": "html", "as_of": AS_OF}).text
    assert "L.tileLayer(" in page and url in page
    assert "tiles.example.org" in page.split("L.tileLayer(", 1)[1].split("attribution", 1)[1]
    assert_offline(page)


def test_html_escapes_names(sample_session):
    from api.report_map import coverage_page

    row = rates(sample_session, code=COMMUNITY)[0] | {"name": "<b>x</b>"}
    page = coverage_page(
        [row],
        {},
        level="community",
        code=None,
        as_of=dt.date(2026, 1, 1),
        rate="on_map_rate",
    )
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_outlines(sample_session):
    from api.report_map import outlines

    communities = outlines(sample_session, "community", None)
    assert len(communities) == 6 and EMPTY not in communities
    street = shape(outlines(sample_session, "street", None)["420111002"])
    assert street.is_valid
    total = sum(shape(g).area for g in communities.values())
    assert street.area == pytest.approx(total, rel=0.01)
    assert 114.38 < street.bounds[0] < street.bounds[2] < 114.41  # lon first
    assert 30.49 < street.bounds[1] < street.bounds[3] < 30.52


# ---------------------------------------------------------------- gaps


def get_gaps(api_client, **params: Any):
    return api_client.get("/reports/gaps", params={"as_of": AS_OF, **params})


def test_gap_counts_are_complements(api_client, sample_session):
    response = get_gaps(api_client)
    assert response.status_code == 200
    assert response.headers["x-as-of"] == AS_OF
    body = response.json()
    assert body["as_of"] == AS_OF and body["limit"] == 1000
    gaps = {row["code"]: row for row in body["communities"]}
    rows = rates(sample_session)
    assert list(gaps) == [row["code"] for row in rows]
    for row in rows:
        for gap, (whole, part) in GAPS.items():
            assert gaps[row["code"]][gap]["count"] == row[whole] - row[part], (row["code"], gap)
        assert gaps[row["code"]]["name"] == row["name"]
        for gap in LISTED:
            listed = gaps[row["code"]][gap]
            assert len(listed["ids"]) == listed["count"] and not listed["truncated"]
            assert listed["ids"] == sorted(listed["ids"])
        # residents are personal data: a count, never a list
        assert gaps[row["code"]]["residents_not_on_map"] == {
            "count": row["residents"] - row["residents_on_map"]
        }
    assert sum(g["buildings_not_on_map"]["count"] for g in gaps.values()) > 0


INDEPENDENT = {
    "buildings_not_on_map": """
        SELECT id FROM building
        WHERE community_code = :code AND status IN ('in_use', 'under_construction')
          AND coalesce(ST_NPoints(footprint), 0) = 0
    """,
    "buildings_not_labeled": """
        SELECT b.id FROM building b
        WHERE b.community_code = :code AND b.status <> 'demolished'
          AND ST_NPoints(b.footprint) > 0
          AND coalesce((
              SELECT min(ST_Distance(a.door_plate::geography, b.footprint::geography))
              FROM address a
              WHERE a.building_id = b.id AND a.status = 'active'
          ), 1e9) > 30
    """,
    "footprints_not_covered": """
        SELECT f.id FROM footprint f
        JOIN community c ON c.code = :code AND ST_Within(ST_PointOnSurface(f.geom), c.boundary)
        WHERE coalesce(ST_Area(ST_Intersection(f.geom, (
                  SELECT ST_Union(footprint) FROM building
                  WHERE status <> 'demolished' AND ST_NPoints(footprint) > 0
              ))::geography), 0) < 0.5 * ST_Area(f.geom::geography)
    """,
}


@pytest.mark.parametrize("gap", LISTED)
def test_gap_ids_are_really_gaps(api_client, sample_engine, gap):
    communities = get_gaps(api_client).json()["communities"]
    with sample_engine.connect() as conn:
        for community in communities:
            found = conn.scalars(text(INDEPENDENT[gap]), {"code": community["code"]}).all()
            assert sorted(found) == community[gap]["ids"], (community["code"], gap)


def test_gap_lists_are_capped(api_client):
    full = {c["code"]: c for c in get_gaps(api_client).json()["communities"]}
    capped = get_gaps(api_client, limit=1).json()
    assert capped["limit"] == 1
    some_truncated = False
    for community in capped["communities"]:
        for gap in LISTED:
            listed, whole = community[gap], full[community["code"]][gap]
            assert listed["count"] == whole["count"]
            assert listed["ids"] == whole["ids"][:1]
            assert listed["truncated"] == (whole["count"] > 1)
            some_truncated |= listed["truncated"]
    assert some_truncated
    counts_only = get_gaps(api_client, limit=0).json()["communities"]
    for community in counts_only:
        for gap in LISTED:
            assert community[gap]["ids"] == []
            assert community[gap]["count"] == full[community["code"]][gap]["count"]
            assert community[gap]["truncated"] == (community[gap]["count"] > 0)


def test_gaps_code_prefix(api_client):
    body = get_gaps(api_client, code=COMMUNITY).json()
    assert [c["code"] for c in body["communities"]] == [COMMUNITY]
    assert (
        get_gaps(api_client, code="420111002").json()["communities"]
        == (get_gaps(api_client).json()["communities"])
    )


# ---------------------------------------------------------------- coverage_gaps()


def test_coverage_gaps_counts(sample_session):
    gaps = coverage_gaps()
    assert [c.name for c in gaps.columns] == [
        "id",
        "source",
        "community_code",
        "community_name",
        "covered_share",
        "geom",
    ]
    grouped = select(gaps.c.community_code, func.count()).group_by(gaps.c.community_code)
    counts = Counter(dict(sample_session.execute(grouped).all()))
    for row in rates(sample_session):
        assert counts[row["code"]] == row["footprints"] - row["footprints_covered"], row["code"]


def test_coverage_gaps_rows(sample_session):
    gaps = coverage_gaps()
    rows = sample_session.execute(
        select(
            gaps.c.id,
            gaps.c.source,
            gaps.c.community_name,
            gaps.c.covered_share,
            func.ST_SRID(gaps.c.geom).label("srid"),
            func.GeometryType(gaps.c.geom).label("type"),
        )
    ).all()
    assert rows
    for row in rows:
        assert 0 <= row.covered_share < 0.5
        assert row.srid == 4490 and row.type == "MULTIPOLYGON"
        assert row.source == "OpenStreetMap" and row.community_name.endswith("社区")
    assert len({row.id for row in rows}) == len(rows)


def test_coverage_gaps_pages_like_a_collection(sample_session):
    """Wrapped with WHERE id > :after ORDER BY id LIMIT n, as the OGC collection does."""
    assert not text(packaged_sql("coverage_gaps.sql"))._bindparams  # takes no parameters
    gaps = coverage_gaps()
    page = (
        select(gaps.c.id, gaps.c.geom)
        .where(gaps.c.id > bindparam("after"))
        .order_by(gaps.c.id)
        .limit(bindparam("n"))
    )
    seen, after = [], ""
    while batch := sample_session.execute(page, {"after": after, "n": 4}).all():
        seen += [row.id for row in batch]
        after = batch[-1].id
    everything = sample_session.scalars(select(gaps.c.id)).all()
    assert seen == sorted(everything)
    literal_page = select(gaps.c.id).where(gaps.c.id > "osm-5").order_by(gaps.c.id).limit(4)
    explained = literal_page.compile(sample_session.bind, compile_kwargs={"literal_binds": True})
    plan = "\n".join(sample_session.scalars(text(f"EXPLAIN {explained}")))
    # the filter reaches the footprint table, not a scan of the finished subquery
    scan = plan.split("on footprint f", 1)[1].splitlines()
    assert "(id)::text > 'osm-5'::text" in "\n".join(scan[:3]), plan
    assert "coverage_gaps.id >" not in plan, plan


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("path", "params", "parameter"),
    [
        ("/reports/coverage", {"level": "province"}, "level"),
        ("/reports/coverage", {"code": "42011a"}, "code"),
        ("/reports/coverage", {"code": "4201110020051"}, "code"),
        ("/reports/coverage", {"code": ""}, "code"),
        ("/reports/coverage", {"code": "４２０１"}, "code"),
        ("/reports/coverage", {"as_of": "2026-02-30"}, "as_of"),
        ("/reports/coverage", {"as_of": "yesterday"}, "as_of"),
        ("/reports/coverage", {"as_of": "20261129"}, "as_of"),
        ("/reports/coverage", {"f": "xlsx"}, "f"),
        ("/reports/coverage", {"f": "html", "rate": "speed"}, "rate"),
        ("/reports/gaps", {"code": "x"}, "code"),
        ("/reports/gaps", {"as_of": "2026-13-01"}, "as_of"),
        ("/reports/gaps", {"limit": "-1"}, "limit"),
        ("/reports/gaps", {"limit": "lots"}, "limit"),
        ("/reports/gaps", {"limit": "1000001"}, "limit"),
    ],
)
def test_bad_parameters(api_client, path, params, parameter):
    response = api_client.get(path, params=params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 400
    assert f"'{parameter}'" in problem["detail"]
    assert [e["parameter"] for e in problem["errors"]] == [parameter]


@pytest.mark.parametrize("path", ["/reports/coverage", "/reports/gaps"])
@pytest.mark.parametrize("code", ["999", "420111002099"])
def test_unknown_code(api_client, path, code):
    response = api_client.get(path, params={"code": code})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
    assert code in response.json()["detail"]


def test_rate_parameter_lists_every_rate(api_client):
    from typing import get_args

    from api.reports import RateName

    assert get_args(RateName) == tuple(RATES)
    schema = api_client.get("/api").json()
    assert {"/reports/coverage", "/reports/gaps"} <= set(schema["paths"])
