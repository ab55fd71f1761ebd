"""The quality-check catalogue (registry/checks.py): each check fires on a crafted case of
the hand-drawn bundle (tests/hand_bundle.py, distances in metres on the ground) and stays
quiet on clean data; findings close when the data is fixed; ``registry checks``;
``GET /reports/checks`` per role and jurisdiction; finding counts in the coverage report.

The hand bundle as loaded is already dirty in six findings, worked out from its tables:
A2's door plate is 200 m north of B2 and A3's 35 m north of B3 (A8 is 25 m, under 30);
B8 is drawn inside C2 though registered in C1; 己 lives in R5 of demolished B5; 壬 is
registered in C2 but lives in R1 of C1's B1; C3 has no boundary. Nothing else: every
building has 6 floors and rooms are on floors 1-4; B3 and B4 are 4 m apart; no address
has a house number, so none can be a duplicate.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from registry import checks
from registry.bundle.load import load_bundle
from registry.db import make_engine
from registry.rates import FIELDS
from registry.settings import RegistryError

from conftest import bearer, grant
from hand_bundle import AS_OF, square, write_hand_bundle
from test_rates import C1, C2, C3

DATE = dt.date.fromisoformat(AS_OF)
HAND_FINDINGS = {
    ("building_outside_community", C1, "B8"),
    ("residents_in_demolished", C1, "B5"),
    ("community_without_boundary", C3, C3),
    ("door_plate_far", C1, "A2"),
    ("door_plate_far", C1, "A3"),
    ("resident_community_mismatch", C1, "B1"),
}

# the 光谷 sample as of its expected_counts.json date (data/fixtures/guanggu/README.md):
# the door plates about 200 m from GG-0010, GG-0077, GG-0128, GG-0197 and the far one of
# GG-0056, whose two addresses GG-A-0054/GG-A-0055 are the same 鲁磨路41号华光小区2期4栋
# (one far, one near door plate: a duplicate); …9151 in GG-0136 and …9410 in GG-0056
# registered to 420111002046; 长江社区 without boundary. The 7 pairs of intersecting
# outlines share at most 9% of the smaller one, no room is above its building's floors
# (the top rooms are on the top floor), and GG-0054's residents all moved out in 2020.
SAMPLE_AS_OF = "2026-11-29"
SAMPLE_PUBLIC = {
    ("duplicate_addresses", "420111002023", "GG-A-0054"),
    ("community_without_boundary", "420111002026", "420111002026"),
    ("door_plate_far", "420111002005", "GG-A-0188"),
    ("door_plate_far", "420111002009", "GG-A-0009"),
    ("door_plate_far", "420111002009", "GG-A-0123"),
    ("door_plate_far", "420111002023", "GG-A-0054"),
    ("door_plate_far", "420111002023", "GG-A-0075"),
}
SAMPLE_PERSONS = {
    ("resident_community_mismatch", "420111002009", "GG-0136"),
    ("resident_community_mismatch", "420111002023", "GG-0056"),
}
PERSON_CHECKS = ["residents_in_demolished", "resident_community_mismatch"]


@pytest.fixture
def hand(session: Session, vault, engine: Engine, tmp_path: Path) -> Engine:
    report = load_bundle(session, write_hand_bundle(tmp_path / "hand"), vault)
    assert report.errors == []
    session.commit()
    return engine


def run(engine: Engine, *codes: str, as_of: dt.date = DATE, **kwargs) -> list[dict]:
    chosen = [checks.BY_CODE[c] for c in codes] if codes else None
    with Session(engine) as session:
        return checks.run_checks(session, chosen, as_of=as_of, **kwargs)


def keys(rows: list[dict]) -> set[tuple[str, str, str]]:
    return {(r["check"], r["community_code"], r["target_id"]) for r in rows}


def execute(engine: Engine, sql: str, **params) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql), params)


def add_building(engine: Engine, bid: str, shape, status: str = "in_use") -> None:
    execute(
        engine,
        "INSERT INTO building (id, community_code, footprint, floors, status) "
        "VALUES (:id, :c, ST_Multi(ST_GeomFromText(:wkt, 4490)), 6, :status)",
        id=bid,
        c=C1,
        wkt=shape.wkt,
        status=status,
    )


# ---------------------------------------------------------------- the catalogue


def test_the_catalogue_is_complete_and_each_check_has_its_sql():
    assert len(checks.CATALOGUE) == 8 == len(checks.BY_CODE)
    for check in checks.CATALOGUE:
        assert check.severity in checks.SEVERITIES
        assert check.title and check.description and check.fix
        sql = check.sql()
        assert f"-- {check.code}:" in sql  # each file documents its definition
        code = "\n".join(line.split("--")[0] for line in sql.splitlines())
        # bound parameters only, and only :as_of (the filters are added around the query)
        assert set(re.findall(r"(?<![:\w]):(\w+)", code)) <= {"as_of"}, check.code
    assert {c.code for c in checks.CATALOGUE if c.persons} == set(PERSON_CHECKS)
    # errors before warnings, so the default listing shows the worst first
    ranks = [checks.SEVERITIES.index(c.severity) for c in checks.CATALOGUE]
    assert ranks == sorted(ranks)


def test_doctests():
    import doctest

    assert doctest.testmod(checks).failed == 0


def test_bad_codes_and_severities_are_clear_errors():
    with pytest.raises(RegistryError, match="unknown check 'nope'"):
        checks.check_codes(["door_plate_far", "nope"])
    with pytest.raises(RegistryError, match="unknown severity 'fatal'"):
        checks.check_severities(["fatal"])
    chosen, withheld = checks.select_checks(severities=["error"], sees_persons=False)
    assert [c.code for c in chosen] == ["building_outside_community", "duplicate_addresses"]
    assert [c.code for c in withheld] == ["residents_in_demolished"]


# ---------------------------------------------------------------- quiet on clean data


def test_the_hand_bundle_has_exactly_its_six_findings(hand):
    rows = run(hand)
    assert keys(rows) == HAND_FINDINGS
    assert [r["severity"] for r in rows] == ["error"] * 2 + ["warning"] * 4  # errors first
    detail = {(r["check"], r["target_id"]): r["detail"] for r in rows}
    assert detail["door_plate_far", "A2"] == "200 m from building B2"
    assert detail["door_plate_far", "A3"] == "35 m from building B3"
    assert detail["residents_in_demolished", "B5"] == "1 active resident"
    assert detail["resident_community_mismatch", "B1"] == (
        "1 active resident registered in community " + C2
    )
    kinds = {r["check"]: r["target_kind"] for r in rows}
    assert kinds["door_plate_far"] == "address" and kinds["community_without_boundary"] == (
        "community"
    )
    no_geometry = {r["check"] for r in rows if r["geom"] is None}
    assert no_geometry == {"community_without_boundary"}
    # C2 has nothing wrong (壬's finding is filed under B1's community C1)
    assert run(hand, code=C2) == []
    assert keys(run(hand, scope=("420111003",))) == {("community_without_boundary", C3, C3)}


def test_the_sample_has_exactly_its_documented_dirt(sample_db_url: str):
    engine = make_engine(sample_db_url)
    try:
        rows = run(engine, as_of=dt.date.fromisoformat(SAMPLE_AS_OF))
    finally:
        engine.dispose()
    assert keys(rows) == SAMPLE_PUBLIC | SAMPLE_PERSONS
    (duplicate,) = [r for r in rows if r["check"] == "duplicate_addresses"]
    assert duplicate["detail"].endswith(": GG-A-0054, GG-A-0055")


# ---------------------------------------------------------------- each check fires, then closes


def test_door_plate_far_closes_when_the_plate_moves(hand):
    # A3's plate 35 m north of B3 (y 175, outline up to y 140) moves 10 m south: 25 m
    execute(
        hand,
        "UPDATE address SET door_plate = ST_Translate(door_plate, 0, -10 / 111320.0) "
        "WHERE code = 'A3'",
    )
    assert keys(run(hand, "door_plate_far")) == {("door_plate_far", C1, "A2")}
    execute(hand, "UPDATE address SET status = 'retired' WHERE code = 'A2'")
    assert run(hand, "door_plate_far") == []  # only active addresses are checked


def test_building_outside_community_closes_when_the_code_is_fixed(hand):
    assert keys(run(hand, "building_outside_community")) == {
        ("building_outside_community", C1, "B8")
    }
    execute(hand, "UPDATE building SET community_code = :c WHERE id = 'B8'", c=C2)
    assert run(hand, "building_outside_community") == []


def test_buildings_overlap_by_more_than_half_of_the_smaller(hand):
    # B9 x 110..150 over B1 x 100..140: 30 x 40 = 1200 of 1600 m2, 75 %; B11 lies exactly
    # on B5, which is demolished: quiet; B12 x 224..264 over B2 x 200..240: 16 x 40 = 640
    # of 1600 m2, 40 %: quiet
    add_building(hand, "B9", square(110, 100, 150, 140))
    add_building(hand, "B11", square(400, 100, 440, 140))
    add_building(hand, "B12", square(224, 100, 264, 140))
    (finding,) = run(hand, "buildings_overlap")
    assert (finding["target_id"], finding["community_code"]) == ("B1", C1)
    assert finding["detail"].startswith("overlaps building B9 by 75% of the smaller outline")
    # the geometry is the overlap: 1200 m2 (lon/lat degrees here, so compare in 4547)
    with hand.connect() as conn:
        area = conn.scalar(
            text("SELECT ST_Area(ST_Transform(ST_GeomFromWKB(:g, 4490), 4547))"),
            {"g": finding["geom"]},
        )
    assert area == pytest.approx(1200, rel=1e-3)
    execute(hand, "UPDATE building SET status = 'demolished' WHERE id = 'B9'")
    assert run(hand, "buildings_overlap") == []


def test_room_above_floors_closes_when_the_floor_count_is_fixed(hand):
    # B1 gets 3 floors: R2 on floor 4 is above them, R1 on floor 3 is not
    execute(hand, "UPDATE building SET floors = 3 WHERE id = 'B1'")
    (finding,) = run(hand, "room_above_floors")
    assert (finding["target_kind"], finding["target_id"]) == ("room", "R2")
    assert finding["detail"] == "floor 4 of a 3-floor building B1"
    execute(hand, "UPDATE building SET floors = 4 WHERE id = 'B1'")
    assert run(hand, "room_above_floors") == []


def test_residents_in_demolished_count_the_active_ones(hand):
    # B1 demolished: at AS_OF its rooms hold 甲 (R1), 丙 (R2, out 2026-12-31) and 壬 (R1)
    # active; 乙 moved out on 2026-01-01 and 庚 on AS_OF itself, so they are not
    execute(hand, "UPDATE building SET status = 'demolished' WHERE id = 'B1'")
    found = {r["target_id"]: r["detail"] for r in run(hand, "residents_in_demolished")}
    assert found == {"B1": "3 active residents", "B5": "1 active resident"}
    later = run(hand, "residents_in_demolished", as_of=dt.date(2027, 1, 1))
    assert {r["target_id"]: r["detail"] for r in later}["B1"] == "2 active residents"  # 丙 out
    # 己 moves out of B5; B1 is rebuilt
    execute(
        hand,
        "UPDATE residence SET moved_out = '2026-01-01' WHERE room_id = 'R5'",
    )
    execute(hand, "UPDATE building SET status = 'in_use' WHERE id = 'B1'")
    assert run(hand, "residents_in_demolished") == []


def test_resident_community_mismatch_closes_when_the_community_is_fixed(hand):
    # R21 (B21, C2) gets two residents of C1: a second finding, under C2
    execute(
        hand,
        "UPDATE residence SET room_id = 'R21' WHERE community_code = :c "
        "AND room_id IN ('R1') AND moved_out IS NULL",
        c=C1,
    )  # 甲 moves into R21
    found = {(r["community_code"], r["target_id"]): r["detail"] for r in run(
        hand, "resident_community_mismatch")}  # fmt: skip
    assert found == {
        (C1, "B1"): f"1 active resident registered in community {C2}",  # 壬
        (C2, "B21"): f"1 active resident registered in community {C1}",  # 甲
    }
    execute(hand, "UPDATE residence SET community_code = :c2 WHERE room_id = 'R21'", c2=C2)
    execute(hand, "UPDATE residence SET community_code = :c1 WHERE room_id = 'R1'", c1=C1)
    assert run(hand, "resident_community_mismatch") == []


def test_duplicate_addresses_by_normalized_components(hand):
    # A1 "99号" and A2 "九十九号" on 珞喻路 in C1 are one address once normalized; A3 "99号附1号"
    # is another; A4 "99号" is retired; A21 "99号" is in C2
    for code, number in [("A1", "99号"), ("A2", "九十九号"), ("A3", "99号附1号"),
                         ("A4", "99号"), ("A21", "99号")]:  # fmt: skip
        execute(hand, "UPDATE address SET house_number = :n WHERE code = :c", n=number, c=code)
    execute(hand, "UPDATE address SET status = 'retired' WHERE code = 'A4'")
    (finding,) = run(hand, "duplicate_addresses")
    assert (finding["community_code"], finding["target_id"]) == (C1, "A1")
    assert finding["detail"] == "2 addresses 珞喻路99号: A1, A2"
    assert finding["severity"] == "error"
    # a building number tells them apart
    execute(hand, "UPDATE address SET building_no = '2栋' WHERE code = 'A2'")
    assert run(hand, "duplicate_addresses") == []
    execute(hand, "UPDATE address SET building_no = '二栋' WHERE code = 'A1'")  # = 2栋 again
    assert keys(run(hand, "duplicate_addresses")) == {("duplicate_addresses", C1, "A1")}
    execute(hand, "UPDATE address SET status = 'retired' WHERE code = 'A2'")
    assert run(hand, "duplicate_addresses") == []


def test_community_without_boundary_closes_when_one_is_loaded(hand):
    assert keys(run(hand, "community_without_boundary")) == {("community_without_boundary", C3, C3)}
    execute(
        hand,
        "UPDATE community SET boundary = ST_Multi(ST_GeomFromText(:wkt, 4490)) WHERE code = :c",
        wkt=square(0, 2000, 1000, 3000).wkt,
        c=C3,
    )
    assert run(hand, "community_without_boundary") == []


# ---------------------------------------------------------------- the CLI


@pytest.fixture
def hand_cli(cli, tmp_path: Path):
    assert cli("load", write_hand_bundle(tmp_path / "hand")).exit_code == 0
    return cli


def test_cli_formats(hand_cli):
    result = hand_cli("checks", "--as-of", AS_OF, "--format", "json")
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["as_of"] == AS_OF
    assert {(f["check"], f["community_code"], f["target_id"]) for f in body["findings"]} == (
        HAND_FINDINGS
    )
    assert list(body["findings"][0]) == list(checks.FIELDS)

    result = hand_cli("checks", "--as-of", AS_OF, "--format", "csv", "--check", "door_plate_far")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["target_id"], r["wkt"].split(" ")[0]) for r in rows] == [
        ("A2", "POINT"),
        ("A3", "POINT"),
    ]

    result = hand_cli("checks", "--as-of", AS_OF, "--format", "geojson", "--severity", "error")
    collection = json.loads(result.stdout)
    assert collection["type"] == "FeatureCollection"
    assert [(f["properties"]["check"], f["geometry"]["type"]) for f in collection["features"]] == [
        ("building_outside_community", "MultiPolygon"),
        ("residents_in_demolished", "MultiPolygon"),
    ]

    result = hand_cli("checks", "--as-of", AS_OF, "--code", "420111002")  # C1 and C2: 5
    assert result.exit_code == 0 and "5 findings" in result.stdout
    assert "A3" in result.stdout and C3 not in result.stdout

    result = hand_cli("checks", "--as-of", AS_OF, "--summary", "--format", "csv")
    assert result.stdout.splitlines() == [
        "community_code,findings,findings_error,findings_warning,findings_info",
        f"{C1},5,2,3,0",
        f"{C3},1,0,1,0",
    ]


def test_cli_no_findings_is_success_and_the_catalogue_lists(hand_cli):
    result = hand_cli("checks", "--check", "buildings_overlap", "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["findings"] == []
    listed = hand_cli("checks", "--list")
    assert listed.exit_code == 0
    assert all(check.code in listed.stdout for check in checks.CATALOGUE)
    described = json.loads(hand_cli("checks", "--list", "--format", "json").stdout)
    assert [d["code"] for d in described] == [c.code for c in checks.CATALOGUE]
    assert described[0]["sql"] == "registry/sql/checks/building_outside_community.sql"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--check", "nope"], "unknown check 'nope'"),
        (["--severity", "fatal"], "unknown severity 'fatal'"),
        (["--as-of", "2026-02-30"], "--as-of '2026-02-30' is not a date"),
        (["--code", "42x"], "--code '42x' is not a code prefix"),
        (["--format", "xlsx"], "--format 'xlsx'"),
    ],
)
def test_cli_bad_input_is_one_line(cli, args, message):
    result = cli("checks", *args)
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


# ---------------------------------------------------------------- the API


@pytest.fixture(scope="module")
def tokens(sample_db_url: str) -> dict[str, str]:
    accounts = {
        "admin": ("admin", ()),
        "analyst": ("analyst", ("420111002",)),
        "gis": ("gis", ("420111",)),
        "analyst-009": ("analyst", ("420111002009",)),
        "officer": ("officer", ("420111002009", "420111002046")),
        "officer-023": ("officer", ("420111002023",)),
        "station": ("station", ("420111002",)),
    }
    return {
        key: grant(sample_db_url, f"checks-{key}", role, jurisdiction)
        for key, (role, jurisdiction) in accounts.items()
    }


@pytest.fixture(scope="module")
def client(api_settings) -> Iterator[TestClient]:
    from api import create_app

    with TestClient(create_app(api_settings)) as client:
        yield client


def get(client, token, path="/reports/checks", **params):
    return client.get(path, params={"as_of": SAMPLE_AS_OF, **params}, headers=bearer(token))


def found(response) -> set[tuple[str, str, str]]:
    assert response.status_code == 200, response.text
    return {(f["check"], f["community_code"], f["target_id"]) for f in response.json()["findings"]}


@pytest.mark.parametrize("role", ["admin", "analyst", "gis"])
def test_roles_without_persons_get_the_public_checks_only(client, tokens, role):
    response = get(client, tokens[role])
    assert found(response) == SAMPLE_PUBLIC
    body = response.json()
    assert [n["check"] for n in body["not_run"]] == PERSON_CHECKS
    assert not set(PERSON_CHECKS) & set(body["checks"])


def test_person_roles_get_resident_counts_in_their_jurisdiction(client, tokens):
    assert found(get(client, tokens["station"])) == SAMPLE_PUBLIC | SAMPLE_PERSONS
    # an officer of 009 and 046 sees …9151 (046) in GG-0136 (009); …9410 lives in
    # GG-0056 of 023, outside the jurisdiction
    assert found(get(client, tokens["officer"])) == {
        ("door_plate_far", "420111002009", "GG-A-0009"),
        ("door_plate_far", "420111002009", "GG-A-0123"),
        ("resident_community_mismatch", "420111002009", "GG-0136"),
    }
    # an officer of 023 alone cannot see the residence registered in 046: no finding
    officer_023 = found(get(client, tokens["officer-023"]))
    assert officer_023 == {
        ("duplicate_addresses", "420111002023", "GG-A-0054"),
        ("door_plate_far", "420111002023", "GG-A-0054"),
        ("door_plate_far", "420111002023", "GG-A-0075"),
    }
    assert get(client, tokens["officer"]).json()["not_run"] == []


def test_jurisdiction_scoping(client, tokens):
    # a community without a boundary outside the scope is not listed (community has no RLS)
    assert found(get(client, tokens["analyst-009"])) == {
        ("door_plate_far", "420111002009", "GG-A-0009"),
        ("door_plate_far", "420111002009", "GG-A-0123"),
    }
    response = get(client, tokens["analyst-009"], code="420111002023")
    assert response.status_code == 403
    assert found(get(client, tokens["admin"], code="420111002026")) == {
        ("community_without_boundary", "420111002026", "420111002026")
    }
    assert get(client, tokens["admin"], code="420111002099").status_code == 404


def test_api_formats_and_filters(client, tokens):
    response = get(client, tokens["admin"], check="door_plate_far", format="geojson")
    assert response.headers["content-type"].startswith("application/geo+json")
    features = response.json()["features"]
    assert len(features) == 5 and {f["geometry"]["type"] for f in features} == {"Point"}
    lon, lat = features[0]["geometry"]["coordinates"]
    assert 114.38 < lon < 114.41 and 30.50 < lat < 30.52  # RFC 7946 order

    response = get(client, tokens["admin"], severity="error", format="csv")
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text.lstrip("\ufeff"))))
    assert [(r["check"], r["target_id"]) for r in rows] == [("duplicate_addresses", "GG-A-0054")]
    assert rows[0]["wkt"].startswith("MULTIPOINT")

    many = client.get(
        "/reports/checks",
        params=[("check", "door_plate_far"), ("check", "community_without_boundary"),
                ("as_of", SAMPLE_AS_OF)],
        headers=bearer(tokens["admin"]),
    )  # fmt: skip
    assert len(found(many)) == 6


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"check": "nope"}, "check"),
        ({"severity": "fatal"}, "severity"),
        ({"as_of": "2026-02-30"}, "as_of"),
        ({"code": "42x"}, "code"),
        ({"format": "xlsx"}, "format"),
    ],
)
def test_api_bad_parameters_are_problems(client, tokens, params, parameter):
    response = get(client, tokens["admin"], **params)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert f"'{parameter}'" in problem["detail"]
    assert [e["parameter"] for e in problem["errors"]] == [parameter]


def test_api_catalogue(client, tokens):
    response = client.get("/reports/checks/catalogue", headers=bearer(tokens["gis"]))
    assert response.status_code == 200
    assert [c["code"] for c in response.json()] == [c.code for c in checks.CATALOGUE]
    assert client.get("/reports/checks/catalogue").status_code == 401  # signed-in only


# ---------------------------------------------------------------- the coverage report


def test_coverage_report_counts_findings_per_community(client, tokens):
    params = {"as_of": SAMPLE_AS_OF, "findings": "true"}
    response = client.get("/reports/coverage", params=params, headers=bearer(tokens["admin"]))
    assert response.status_code == 200
    rows = {row["code"]: row for row in response.json()}
    for row in rows.values():  # the rates' fields unchanged and first, the counts after
        assert list(row) == [*FIELDS, *checks.SUMMARY_FIELDS]
    counts = {code: (row["findings"], row["findings_error"], row["findings_warning"])
              for code, row in rows.items()}  # fmt: skip
    # from SAMPLE_PUBLIC (an admin does not run the resident checks)
    assert counts == {
        "420111002005": (1, 0, 1),
        "420111002007": (0, 0, 0),
        "420111002009": (2, 0, 2),
        "420111002015": (0, 0, 0),
        "420111002023": (3, 1, 2),
        "420111002026": (1, 0, 1),
        "420111002046": (0, 0, 0),
    }
    street = client.get(
        "/reports/coverage", params={**params, "level": "street"}, headers=bearer(tokens["station"])
    ).json()
    # a station runs the resident checks too: 7 + 2
    assert [(r["code"], r["findings"]) for r in street] == [("420111002", 9)]
    city = client.get(
        "/reports/coverage", params={**params, "level": "city", "f": "csv"},
        headers=bearer(tokens["admin"]),
    )  # fmt: skip
    (row,) = list(csv.DictReader(io.StringIO(city.text.lstrip("\ufeff"))))
    assert list(row) == [*FIELDS, *checks.SUMMARY_FIELDS] and row["findings"] == "7"
    plain = client.get("/reports/coverage", params={"as_of": SAMPLE_AS_OF},
                       headers=bearer(tokens["admin"]))  # fmt: skip
    assert all(list(row) == list(FIELDS) for row in plain.json())  # unchanged without it
