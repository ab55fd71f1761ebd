"""Permanent building ids: splits and merges through the repository, the CLI and the API
(docs/lineage.md), against a real PostGIS loaded with the hand-drawn bundle.

Expected numbers are worked out by hand from tests/hand_bundle.py (local metres, x east,
y north) plus what :func:`extras` adds:

  甲社区 C1 before: buildings 7, on the map 6, labelled 3 (B1, B7, B8), footprints 6,
  covered 3 (F1, F2, F3); active residents 5, placed 2 (甲 in R1, 丙 in R2, both in B1)
  while 丙 has not moved out (2026-12-31), else 4 and 1.
  B1 100..140 x 100..140: rooms R1 (甲, 庚, 壬: 3 residences), R2 (乙, 丙: 2) and R3
  (added, empty); addresses A1 (plate 5 m south at x 120) and A1E (added, plate at
  (135, 95), 5 m south); organization 丙饭店 placed in B1 itself, 甲商店 in room R1 and
  壬工作室 (乙社区's) in room R2; B2 has 丁书店 and 己网吧 placed in it.

  Split of B1 into W 100..120 and E 120..140: W takes R1, R3, A1, O1; E takes R2, A1E.
  Then C1: buildings 8, on the map 7, labelled 4 (W by A1 at 5 m, E by A1E at 5 m, B7,
  B8), footprints 6, covered 3 (F1 = W ∪ E); residents unchanged (rooms keep their ids).
  W holds 2 rooms / 3 residences, E 1 room / 2 residences: 3 rooms, 5 residences in all.

  Merge of B1 and B2 (200..240, plate A2 200 m away): one building, labelled (A1), so
  C1: buildings 6, on the map 5, labelled 3, covered 3 (F1 by it, F2 67 % by it).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from shapely.geometry import mapping
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from api import create_app
from registry import counts, lineage
from registry.bundle.load import load_bundle
from registry.db import make_engine, transaction
from registry.rates import compute_rates
from registry.vault import load_vault
from registry.verification import (
    BuildingNotFoundError,
    InvalidInputError,
    StaleBuildingError,
    VerificationConflictError,
)

from conftest import API_PASSWORD, api_settings_for, bearer, grant
from hand_bundle import at, square, uscc, write_hand_bundle

C1, C2 = "420111002001", "420111002002"
STREET = "420111002"
PROBLEM = "application/problem+json"
# of the hand bundle: O1 丙饭店 placed in B1 itself; O2 in room R1, O9 (乙社区's) in room R2
O1, O2, O9 = uscc(3), uscc(1), uscc(9)
BING_ACTIVE = dt.date.today() < dt.date(2026, 12, 31)
C1_RESIDENTS, C1_PLACED = (5, 2) if BING_ACTIVE else (4, 1)
ACCOUNTS = {
    "li": ("officer", (C1,)),
    "zhao": ("officer", (C2,)),
    "station": ("station", (STREET,)),
    "analyst": ("analyst", (STREET,)),
    "gis": ("gis", (STREET,)),
    "admin": ("admin", ()),
}


def outline(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    return json.loads(json.dumps(mapping(square(x0, y0, x1, y1))))


WEST, EAST = outline(100, 100, 120, 140), outline(120, 100, 140, 140)


def good_parts() -> list[dict[str, Any]]:
    return [
        {"geometry": WEST, "rooms": ["R1", "R3"], "addresses": ["A1"], "organizations": [O1]},
        {"geometry": EAST, "rooms": ["R2"], "addresses": ["A1E"], "floors": 3},
    ]


def as_parts(raw: list[dict[str, Any]]) -> list[lineage.Part]:
    return [
        lineage.Part(
            p["geometry"],
            p.get("rooms", []),
            p.get("addresses", []),
            p.get("organizations", []),
            p.get("floors"),
        )
        for p in raw
    ]


# ---------------------------------------------------------------- fixtures


def extras(conn: Any) -> None:
    """R3 (empty) in B1 and a second address A1E of B1."""
    plate = at(135, 95)
    conn.execute(text("INSERT INTO room (id, building_id, number) VALUES ('R3', 'B1', '501')"))
    conn.execute(
        text(
            "INSERT INTO address (code, community_code, building_id, road, door_plate) "
            "VALUES ('A1E', :c, 'B1', '珞喻路', ST_SetSRID(ST_MakePoint(:x, :y), 4490))"
        ),
        {"c": C1, "x": plate.x, "y": plate.y},
    )


@pytest.fixture
def hand_db(db_url: str, sample_key_file, tmp_path) -> str:
    engine = make_engine(db_url)
    try:
        with transaction(engine) as session:
            report = load_bundle(
                session, write_hand_bundle(tmp_path / "hand"), load_vault(sample_key_file)
            )
            assert report.errors == []
            extras(session.connection())
    finally:
        engine.dispose()
    return db_url


@pytest.fixture
def sql(hand_db: str) -> Iterator[Any]:
    """Statements as the owner (no row-level security): the truth to compare with."""
    engine = create_engine(hand_db)

    def run(statement: str, **params: Any) -> list[Any]:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return result.all() if result.returns_rows else []

    yield run
    engine.dispose()


@pytest.fixture
def owner(hand_db: str) -> Iterator[Session]:
    engine = make_engine(hand_db)
    with sessionmaker(engine)() as session:
        yield session
    engine.dispose()


class Api:
    def __init__(self, client: TestClient, tokens: dict[str, str]) -> None:
        self.client, self.tokens = client, tokens

    def __call__(self, method: str, path: str, who: str = "li", **kwargs: Any) -> httpx.Response:
        headers = {**bearer(self.tokens[who]), **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def split(self, building_id: str, parts: Any, who: str = "li", **kwargs: Any):
        return self("POST", f"/buildings/{building_id}/split", who, json={"parts": parts}, **kwargs)

    def merge(self, ids: list[str], who: str = "li", **body: Any) -> httpx.Response:
        return self("POST", "/buildings/merge", who, json={"ids": ids, **body})


@pytest.fixture
def api(hand_db: str, sample_key_file, tmp_path) -> Iterator[Api]:
    tokens = {name: grant(hand_db, name, role, scope) for name, (role, scope) in ACCOUNTS.items()}
    settings = api_settings_for(hand_db, tmp_path, key_file=sample_key_file)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield Api(client, tokens)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, f"{response.status_code} {response.text}"
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["detail"]
    return body


# ---------------------------------------------------------------- checks


def placement(sql) -> dict[str, Any]:
    """Where every room, address and organization is, and how many residences each room
    holds: compared before and after to show nothing was lost."""
    return {
        "rooms": dict(sql("SELECT id, building_id FROM room ORDER BY id")),
        "residences": dict(
            sql("SELECT room_id, count(*) FROM residence GROUP BY room_id ORDER BY 1")
        ),
        "residence_ids": [r.id for r in sql("SELECT id FROM residence ORDER BY id")],
        "addresses": dict(sql("SELECT code, building_id FROM address ORDER BY code")),
        "organizations": dict(
            sql("SELECT uscc, coalesce(building_id, 'room ' || room_id) FROM organization")
        ),
    }


def c1_counts(session: Session) -> tuple:
    (row,) = compute_rates(session, code=C1)
    assert counts.differences(session) == []  # the counters equal the definitions
    return (
        row["buildings"],
        row["buildings_on_map"],
        row["buildings_labeled"],
        row["footprints"],
        row["footprints_covered"],
        row["residents"],
        row["residents_on_map"],
    )


BEFORE = (7, 6, 3, 6, 3, C1_RESIDENTS, C1_PLACED)
AFTER_SPLIT = (8, 7, 4, 6, 3, C1_RESIDENTS, C1_PLACED)
AFTER_MERGE = (6, 5, 3, 6, 3, C1_RESIDENTS, C1_PLACED)


def nothing_written(sql, before: dict[str, Any]) -> None:
    assert sql("SELECT count(*) FROM building_lineage")[0][0] == 0
    assert sql("SELECT count(*) FROM building")[0][0] == 9  # the hand bundle's, none new
    assert placement(sql) == before


def check_split(sql, done: dict[str, Any]) -> tuple[str, str]:
    west, east = (s["id"] for s in done["successors"])
    assert west.startswith(f"N{C1}-") and east.startswith(f"N{C1}-") and west != east
    after = placement(sql)
    assert {r: b for r, b in after["rooms"].items() if r in ("R1", "R2", "R3")} == {
        "R1": west,
        "R3": west,
        "R2": east,
    }
    assert after["addresses"]["A1"] == west and after["addresses"]["A1E"] == east
    assert after["organizations"][O1] == west
    assert (after["organizations"][O2], after["organizations"][O9]) == ("room R1", "room R2")
    # residences untouched: R1 3, R2 2 -> W 3, E 2
    assert after["residences"]["R1"] == 3 and after["residences"]["R2"] == 2
    assert sql("SELECT count(*) FROM building WHERE id = 'B1'")[0][0] == 0
    rows = sql(
        "SELECT kind, predecessor_id, successor_id FROM building_lineage ORDER BY successor_id"
    )
    assert [tuple(r) for r in rows] == sorted(
        [("split", "B1", west), ("split", "B1", east)], key=lambda r: r[2]
    )
    (w,) = sql("SELECT floors, status, verification FROM building WHERE id = :i", i=west)
    (e,) = sql("SELECT floors, status, verification FROM building WHERE id = :i", i=east)
    assert tuple(w) == (6, "in_use", "unverified")  # inherited floors
    assert tuple(e) == (3, "in_use", "unverified")  # given floors
    return west, east


# ---------------------------------------------------------------- repository


def test_split_keeps_every_room_residence_address_and_organization(owner, sql):
    before = placement(sql)
    assert c1_counts(owner) == BEFORE
    done = lineage.split_building(owner, "B1", as_parts(good_parts()), "tester", "two halves")
    owner.commit()
    west, east = check_split(sql, done)
    assert done["moved"] == {"rooms": 3, "addresses": 2, "organizations": 1, "residences": 5}
    assert [(s["rooms"], s["residences"]) for s in done["successors"]] == [
        (["R1", "R3"], 3),
        (["R2"], 2),
    ]
    after = placement(sql)
    assert after["residence_ids"] == before["residence_ids"]  # no residence lost or added
    assert len(after["rooms"]) == len(before["rooms"])
    assert c1_counts(owner) == AFTER_SPLIT
    # the lineage, both ways
    found = lineage.lineage(owner, "B1")
    assert found["retired"] and not found["current"]
    assert sorted(found["successors"]) == sorted([west, east])
    assert sorted(found["current_successors"]) == sorted([west, east])
    assert lineage.lineage(owner, west)["predecessors"] == ["B1"]
    assert lineage.lineage(owner, "nothing-here") is None


def test_a_retired_id_is_refused_forever(owner, sql, hand_db, tmp_path, sample_key_file):
    done = lineage.split_building(owner, "B1", as_parts(good_parts()), "tester")
    owner.commit()
    successors = sorted(s["id"] for s in done["successors"])
    with pytest.raises(DBAPIError) as refused:
        sql(f"INSERT INTO building (id, community_code) VALUES ('B1', '{C1}')")
    assert refused.value.orig.sqlstate == "RG410"
    message = str(refused.value.orig)
    assert f"building id B1 was retired by split {done['event_id']}" in message
    assert all(s in message for s in successors)
    # a bundle that still lists B1: a row error naming the file, feature and field
    report = load_bundle(owner, write_hand_bundle(tmp_path / "again"), load_vault(sample_key_file))
    owner.rollback()
    assert not report.written
    retired = [p for p in report.errors if p.field == "id"]
    assert [(p.file, p.row) for p in retired] == [("buildings.geojson", 1)]  # B1 is feature 1
    assert "retired by split" in retired[0].reason
    assert sql("SELECT count(*) FROM building WHERE id = 'B1'")[0][0] == 0
    # a merge later takes a new number too: the split's ids never come back
    merged = lineage.merge_buildings(owner, successors, "tester")
    owner.commit()
    assert merged["successors"][0]["id"] not in successors
    chain = lineage.lineage(owner, "B1")
    assert chain["current_successors"] == [merged["successors"][0]["id"]]
    assert [e["kind"] for e in chain["events"]] == ["split", "merge"]
    assert c1_counts(owner) == BEFORE  # one building again, where B1 was, labelled by A1


def test_merge_moves_everything_to_one_new_building(owner, sql):
    before = placement(sql)
    done = lineage.merge_buildings(owner, ["B2", "B1"], "tester", "one compound")
    owner.commit()
    (new,) = (s["id"] for s in done["successors"])
    after = placement(sql)
    assert {r for r, b in after["rooms"].items() if b == new} == {"R1", "R2", "R3"}
    assert {a for a, b in after["addresses"].items() if b == new} == {"A1", "A1E", "A2"}
    assert {o for o, b in after["organizations"].items() if b == new} == {
        O1,
        uscc(4),
        uscc(6),
    }  # B1's 丙饭店, B2's 丁书店 and 己网吧
    assert after["residence_ids"] == before["residence_ids"]
    assert done["moved"] == {"rooms": 3, "addresses": 3, "organizations": 3, "residences": 5}
    assert sorted(done["retired"]) == ["B1", "B2"]
    assert sql("SELECT count(*) FROM building WHERE id IN ('B1', 'B2')")[0][0] == 0
    # the union of the two squares: 1600 + 1600 m²
    (area,) = sql("SELECT ST_Area(geography(footprint)) FROM building WHERE id = :i", i=new)
    assert area[0] == pytest.approx(3200, rel=1e-3)
    assert c1_counts(owner) == AFTER_MERGE


@pytest.mark.parametrize(
    ("building_id", "parts", "error", "words"),
    [
        ("B1", [good_parts()[0]], InvalidInputError, "from 2 to"),
        ("B1", [good_parts()[0], {**good_parts()[1], "rooms": []}], InvalidInputError,
         "rooms R2: not assigned to any part"),
        ("B1", [good_parts()[0], {**good_parts()[1], "rooms": ["R2", "R21"]}],
         InvalidInputError, "rooms R21: not a room of building B1"),
        ("B1", [good_parts()[0], {**good_parts()[1], "rooms": ["R2", "R1"]}],
         InvalidInputError, "rooms R1: assigned to more than one part"),
        ("B1", [good_parts()[0], {**good_parts()[1], "addresses": []}], InvalidInputError,
         "addresses A1E: not assigned"),
        ("B1", [good_parts()[0], {**good_parts()[1], "geometry": {"type": "Point",
         "coordinates": [114.4, 30.5]}}], InvalidInputError, "parts[2].geometry"),
        ("B1", [good_parts()[0], {**good_parts()[1], "geometry": outline(0, 0, 0.5, 0.5)}],
         InvalidInputError, "parts[2].geometry: 0.25 m²"),
        ("B5", [{"geometry": outline(400, 100, 420, 140), "rooms": ["R5"]},
                {"geometry": outline(420, 100, 440, 140)}], VerificationConflictError,
         "demolished"),
        ("B999", good_parts(), BuildingNotFoundError, "no building B999"),
    ],
)  # fmt: skip
def test_bad_splits_are_refused_and_write_nothing(owner, sql, building_id, parts, error, words):
    before = placement(sql)
    with pytest.raises(error) as refused:
        lineage.split_building(owner, building_id, as_parts(parts), "tester")
    owner.rollback()
    assert words in str(refused.value)
    assert "\n" not in str(refused.value)
    nothing_written(sql, before)


@pytest.mark.parametrize(
    ("ids", "error", "words"),
    [
        (["B1"], InvalidInputError, "at least 2 different buildings"),
        (["B1", "B1"], InvalidInputError, "at least 2 different buildings"),
        (["B1", "B21"], InvalidInputError, "B1 in 420111002001, B21 in 420111002002"),
        (["B1", "B5"], VerificationConflictError, "B5 is demolished"),
        (["B1", "B999"], BuildingNotFoundError, "no building B999"),
    ],
)
def test_bad_merges_are_refused_and_write_nothing(owner, sql, ids, error, words):
    before = placement(sql)
    with pytest.raises(error) as refused:
        lineage.merge_buildings(owner, ids, "tester")
    owner.rollback()
    assert words in str(refused.value)
    nothing_written(sql, before)


def test_a_split_based_on_a_stale_version_is_refused(owner, sql):
    sql("UPDATE building SET name = 'renamed' WHERE id = 'B1'")  # v1 -> v2
    before = placement(sql)
    with pytest.raises(StaleBuildingError):
        lineage.split_building(owner, "B1", as_parts(good_parts()), "t", expected_version=1)
    owner.rollback()
    nothing_written(sql, before)


# ---------------------------------------------------------------- API


def test_api_split_then_the_old_id_is_gone(api, sql, owner):
    etag = api("GET", "/buildings/B1").headers["etag"]
    response = api.split("B1", good_parts(), headers={"If-Match": etag})
    assert response.status_code == 201, response.text
    done = response.json()
    west, east = check_split(sql, done)
    assert response.headers["location"] == f"/buildings/{west}"
    # an officer counts the residences of the jurisdiction: 5 less 壬 (乙社区's, in R1)
    assert done["moved"]["residences"] == 4
    assert c1_counts(owner) == AFTER_SPLIT

    gone = problem(api("GET", "/buildings/B1"), 410)
    assert sorted(gone["successors"]) == sorted([west, east])
    assert {link["href"].rsplit("/", 1)[-1] for link in gone["links"]} >= {west, east}
    item = problem(api("GET", "/collections/buildings/items/B1"), 410)
    assert sorted(item["successors"]) == sorted([west, east])
    assert api("GET", f"/collections/buildings/items/{west}").status_code == 200
    problem(api("GET", "/collections/buildings/items/B404"), 404)
    found = api("GET", "/buildings/B1/lineage").json()
    assert found["retired"] and sorted(found["successors"]) == sorted([west, east])
    assert api("GET", f"/buildings/{east}/lineage").json()["predecessors"] == ["B1"]
    panel = api("GET", f"/buildings/{east}").json()
    assert [r["id"] for r in panel["rooms"]] == ["R2"] and panel["residents"] == (
        1 if BING_ACTIVE else 0  # 丙 only: 乙 moved out on 2026-01-01
    )
    # a second split of the retired id: 410 again, nothing more written
    problem(api.split("B1", good_parts()), 410)
    assert sql("SELECT count(*) FROM building_lineage")[0][0] == 2
    (audit,) = sql("SELECT user_name, target_ids, detail FROM audit_log WHERE action = "
                   "'verification'")  # fmt: skip
    assert audit.user_name == "li" and audit.detail["action"] == "split"
    assert sorted(audit.target_ids) == sorted(["B1", west, east])


def test_api_merge_by_a_station(api, sql, owner):
    response = api.merge(["B1", "B2"], "station", note="one compound", floors=9)
    assert response.status_code == 201, response.text
    (new,) = (s["id"] for s in response.json()["successors"])
    assert sql("SELECT floors FROM building WHERE id = :i", i=new)[0][0] == 9
    assert c1_counts(owner) == AFTER_MERGE
    for old in ("B1", "B2"):
        assert problem(api("GET", f"/buildings/{old}"), 410)["successors"] == [new]
    (audit,) = sql("SELECT detail FROM audit_log WHERE action = 'verification'")
    assert audit.detail["action"] == "merge"


@pytest.mark.parametrize(
    ("who", "status"), [("analyst", 403), ("gis", 403), ("zhao", 404)]
)  # zhao (officer of C2) cannot see B1 at all
def test_api_refuses_non_editors_and_other_jurisdictions(api, sql, who, status):
    before = placement(sql)
    problem(api.split("B1", good_parts(), who), status)
    problem(api.merge(["B1", "B2"], who), status)
    nothing_written(sql, before)
    assert sql("SELECT count(*) FROM audit_log WHERE action = 'verification'")[0][0] == 0


def test_api_refuses_bad_requests_with_problems(api, sql):
    before = placement(sql)
    etag = api("GET", "/buildings/B1").headers["etag"]
    sql("UPDATE building SET name = 'renamed' WHERE id = 'B1'")
    before = placement(sql)
    stale = problem(api.split("B1", good_parts(), headers={"If-Match": etag}), 409)
    assert stale["current"]["name"] == "renamed"
    unassigned = [good_parts()[0], {**good_parts()[1], "rooms": []}]
    assert "R2: not assigned" in problem(api.split("B1", unassigned), 422)["detail"]
    foreign = [good_parts()[0], {**good_parts()[1], "rooms": ["R2", "R21"]}]
    assert "R21: not a room of building B1" in problem(api.split("B1", foreign), 422)["detail"]
    twice = [good_parts()[0], {**good_parts()[1], "organizations": [O1]}]
    assert "more than one part" in problem(api.split("B1", twice), 422)["detail"]
    bad = [good_parts()[0], {**good_parts()[1], "geometry": {"type": "Polygon"}}]
    assert "parts[2].geometry" in problem(api.split("B1", bad), 422)["detail"]
    demolished = [{"geometry": outline(400, 100, 420, 140), "rooms": ["R5"]},
                  {"geometry": outline(420, 100, 440, 140)}]  # fmt: skip
    assert "demolished" in problem(api.split("B5", demolished), 409)["detail"]
    problem(api.split("B999", good_parts()), 404)
    problem(api.split("B1", "not a list"), 400)
    assert "one community" in problem(api.merge(["B1", "B21"], "admin"), 422)["detail"]
    assert "at least 2" in problem(api.merge(["B1"]), 422)["detail"]
    problem(api.merge(["B1", "B999"]), 404)
    problem(api("GET", "/buildings/B999/lineage"), 404)
    nothing_written(sql, before)
    assert sql("SELECT count(*) FROM audit_log WHERE action = 'verification'")[0][0] == 0


def test_a_split_leaving_rows_the_officer_cannot_see_is_refused(api, sql):
    """An address of 乙社区 naming B1 is invisible to li (甲社区): li cannot assign it, so
    B1 cannot be retired by li; nothing is written. The station (both communities) can."""
    sql(f"INSERT INTO address (code, community_code, building_id) VALUES ('AX', '{C2}', 'B1')")
    before = placement(sql)
    refused = problem(api.split("B1", good_parts()), 403)
    assert "B1" in refused["detail"] and "cannot see" in refused["detail"]
    nothing_written(sql, before)
    parts = good_parts()
    parts[1]["addresses"] = ["A1E", "AX"]
    assert api.split("B1", parts, "station").status_code == 201
    assert sql("SELECT building_id FROM address WHERE code = 'AX'")[0][0] != "B1"


def test_the_api_role_deletes_only_what_the_lineage_retires(hand_db, sql):
    """registry_api has no DELETE on building; registry_retire_building refuses a building
    no split or merge retired, and one outside the caller's scope."""
    url = make_url(hand_db).set(username="registry_api", password=API_PASSWORD)
    engine = create_engine(url.render_as_string(hide_password=False))

    def attempt(statement: str, role: str, scope: str) -> str:
        with engine.connect() as conn:
            conn.execute(
                text(
                    "SELECT set_config('registry.user', 'x', true), "
                    "set_config('registry.role', :r, true), set_config('registry.scope', :s, true)"
                ),
                {"r": role, "s": scope},
            )
            with pytest.raises(DBAPIError) as refused:
                conn.execute(text(statement))
            conn.rollback()
            return str(refused.value.orig)

    try:
        assert "permission denied" in attempt("DELETE FROM building WHERE id = 'B7'", "admin", "")
        retire = "SELECT registry_retire_building('B7')"
        assert "not retired by a split or merge" in attempt(retire, "admin", "")
        assert "may not retire building B7" in attempt(retire, "officer", C2)
        assert "may not retire building B7" in attempt(retire, "analyst", STREET)
    finally:
        engine.dispose()
    assert sql("SELECT count(*) FROM building WHERE id = 'B7'")[0][0] == 1


def test_the_lineage_is_append_only(owner, sql):
    lineage.split_building(owner, "B1", as_parts(good_parts()), "tester")
    owner.commit()
    for statement in (
        "UPDATE building_lineage SET successor_id = 'B2'",
        "DELETE FROM building_lineage",
        "TRUNCATE building_lineage",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            sql(statement)
    assert sql("SELECT count(*) FROM building_lineage")[0][0] == 2


def test_a_browser_session_needs_its_csrf_token(hand_db, sample_key_file, tmp_path, sql):
    password = "correct horse battery staple"
    grant(hand_db, "sun", "officer", (C1,), password=password)
    settings = api_settings_for(hand_db, tmp_path, key_file=sample_key_file)
    with TestClient(create_app(settings), raise_server_exceptions=False) as browser:
        signed = browser.post(
            "/login",
            data={"name": "sun", "password": password},
            headers={"Accept": "application/json"},
        )
        csrf = signed.json()["csrf_token"]
        problem(browser.post("/buildings/B1/split", json={"parts": good_parts()}), 403)
        assert sql("SELECT count(*) FROM building_lineage")[0][0] == 0
        done = browser.post(
            "/buildings/B1/split", json={"parts": good_parts()}, headers={"X-CSRF-Token": csrf}
        )
        assert done.status_code == 201, done.text
    check_split(sql, done.json())


# ---------------------------------------------------------------- CLI


def parts_file(path, parts: list[dict[str, Any]]) -> Any:
    features = [
        {
            "type": "Feature",
            "geometry": p["geometry"],
            "properties": {k: v for k, v in p.items() if k != "geometry"},
        }
        for p in parts
    ]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_cli_split_merge_and_lineage(cli, hand_db, sql, owner, tmp_path):
    result = cli("buildings", "split", "B1", "--parts", parts_file(tmp_path / "p.geojson",
                 good_parts()), "--note", "two halves", "--by", "li")  # fmt: skip
    assert result.exit_code == 0, result.output
    (done_west, done_east) = sorted(
        r.successor_id for r in sql("SELECT successor_id FROM building_lineage")
    )
    assert "B1 split into" in result.output
    assert "2 rooms, 3 residences, 1 addresses, 1 organizations" in result.output  # W
    assert "1 rooms, 2 residences, 1 addresses, 0 organizations" in result.output  # E
    assert c1_counts(owner) == AFTER_SPLIT
    owner.rollback()

    shown = cli("buildings", "lineage", "B1")
    assert shown.exit_code == 0 and "B1: retired" in shown.output
    assert done_west in shown.output and done_east in shown.output

    union = tmp_path / "outline.geojson"
    union.write_text(json.dumps({"type": "Feature", "geometry": outline(100, 100, 140, 140)}))
    merged = cli("buildings", "merge", done_west, done_east, "--outline", union)
    assert merged.exit_code == 0, merged.output
    (new,) = sql("SELECT id FROM building WHERE id NOT IN ('B2','B3','B4','B5','B6','B7',"
                 "'B8','B21')")  # fmt: skip
    assert new.id in merged.output
    assert c1_counts(owner) == BEFORE
    owner.rollback()
    as_json = json.loads(cli("buildings", "lineage", "B1", "--format", "json").output)
    assert as_json["current_successors"] == [new.id]
    (audit,) = sql("SELECT count(*) FROM audit_log WHERE action = 'verification'")
    assert audit[0] == 2


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["merge", "B1"], "at least 2 different buildings"),
        (["merge", "B1", "B21"], "one community"),
        (["merge", "B1", "B999"], "no building B999"),
        (["split", "B1", "--parts", "missing.geojson"], "no such file"),
        (["lineage", "B999"], "no building id B999"),
    ],
)
def test_cli_errors_are_one_line(cli, hand_db, sql, tmp_path, args, words):
    before = placement(sql)
    result = cli("buildings", *[str(tmp_path / a) if a.endswith(".geojson") else a for a in args])
    assert result.exit_code == 1
    assert words in result.output and "Traceback" not in result.output
    nothing_written(sql, before)


def test_cli_unassigned_room_and_reloaded_bundle(cli, hand_db, sql, tmp_path):
    before = placement(sql)
    parts = [good_parts()[0], {**good_parts()[1], "rooms": []}]
    result = cli("buildings", "split", "B1", "--parts", parts_file(tmp_path / "p.json", parts))
    assert result.exit_code == 1 and "rooms R2: not assigned to any part" in result.output
    nothing_written(sql, before)
    assert cli("buildings", "split", "B1", "--parts",
               parts_file(tmp_path / "p.json", good_parts())).exit_code == 0  # fmt: skip
    bundle = write_hand_bundle(tmp_path / "again")
    (bundle / "residents.csv").unlink()  # no identity keys needed
    loaded = cli("load", bundle)
    assert loaded.exit_code == 1 and "Traceback" not in loaded.output
    assert "buildings.geojson, feature 1, field id" in loaded.output
    assert "retired by split" in loaded.output
    assert sql("SELECT count(*) FROM building WHERE id = 'B1'")[0][0] == 0
