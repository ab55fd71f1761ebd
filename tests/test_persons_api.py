"""Persons over HTTP: residents of a room, a room, search by identity number.

Expected residents come from the database, read as its owner (no row-level security),
and clear names and numbers from the sample's own residents.csv, never from the API.
Every read must leave its audit row; no identity number may appear in clear in an
answer that was not unmasked, nor in the log.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from sqlalchemy import create_engine, text

from api import create_app
from api.persons import KeyFile
from registry import audit
from registry.cli import SAMPLE_BUNDLE
from registry.persons import mask_name, mask_number
from registry.vault import create_key_file, load_vault

from conftest import bearer, grant

CLIENT_IP = "203.0.113.7"
COMMUNITY = "420111002009"  # 汽标社区
OTHER_COMMUNITY = "420111002005"  # 南望社区
STREET = "420111002"  # 关山街道: every community of the sample
PURPOSE = "核查 2026-11 流动人口登记"
ACTIVE = "(moved_out IS NULL OR moved_out > current_date)"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sql(sample_db_url):
    """Queries as the owner: the truth the API is compared with."""
    engine = create_engine(sample_db_url)

    def run(statement: str, **params: Any) -> list[Any]:
        with engine.connect() as conn:
            return conn.execute(text(statement), params).all()

    yield run
    engine.dispose()


@pytest.fixture(scope="module")
def fixture_numbers() -> dict[tuple[str, str, str], str]:
    """Clear identity numbers of the sample by (room, name, moved_in), from the bundle."""
    with open(SAMPLE_BUNDLE / "residents.csv", encoding="utf-8") as rows:
        return {
            (r["room_id"], r["name"], r["moved_in"]): r["id_number"] for r in csv.DictReader(rows)
        }


@pytest.fixture(scope="module")
def all_numbers() -> list[str]:
    with open(SAMPLE_BUNDLE / "residents.csv", encoding="utf-8") as rows:
        return [r["id_number"] for r in csv.DictReader(rows)]


@pytest.fixture(scope="module")
def tokens(sample_db_url) -> dict[str, str]:
    accounts = {
        "officer": ("officer", (COMMUNITY,)),
        "other-officer": ("officer", (OTHER_COMMUNITY,)),
        "station": ("station", (STREET,)),
        "analyst": ("analyst", (STREET,)),
        "gis": ("gis", (STREET,)),
        "admin": ("admin", ()),
    }
    return {
        key: grant(sample_db_url, f"persons-{key}", role, jurisdiction)
        for key, (role, jurisdiction) in accounts.items()
    }


@pytest.fixture(scope="module")
def client(api_settings) -> Iterator[TestClient]:
    """The API as seen from a fixed client address, so audit rows can be checked."""
    with TestClient(create_app(api_settings), client=(CLIENT_IP, 50000)) as client:
        yield client


@pytest.fixture(scope="module")
def room(sql) -> dict[str, Any]:
    """A room of COMMUNITY with at least two current residents and one who moved out,
    all registered to the room's own community; its residences as the owner sees them."""
    room_id = sql(
        f"""
        SELECT r.room_id FROM residence r
        JOIN room ON room.id = r.room_id JOIN building b ON b.id = room.building_id
        WHERE b.community_code = :c
        GROUP BY r.room_id
        HAVING count(*) FILTER (WHERE {ACTIVE}) >= 2
           AND count(*) FILTER (WHERE NOT {ACTIVE}) >= 1
           AND bool_and(r.community_code = :c)
        ORDER BY r.room_id LIMIT 1
        """,
        c=COMMUNITY,
    )[0].room_id
    (row,) = sql(
        "SELECT room.id, room.building_id, b.name AS building_name, b.community_code, "
        "room.unit, room.floor, room.number, room.use "
        "FROM room JOIN building b ON b.id = room.building_id WHERE room.id = :r",
        r=room_id,
    )
    residences = sql(
        f"SELECT p.id AS person_id, p.name, p.id_tail, r.category, r.moved_in, r.moved_out, "
        f"r.room_id, r.community_code, {ACTIVE} AS active "
        "FROM residence r JOIN person p ON p.id = r.person_id WHERE r.room_id = :r "
        "ORDER BY r.moved_in NULLS FIRST, r.id",
        r=room_id,
    )
    return {**row._asdict(), "residences": residences}


def masked(residence) -> dict[str, Any]:
    return {
        "person_id": residence.person_id,
        "name": residence.name[0] + "*",  # no compound surname in the sample
        "id_number": "*" * 14 + residence.id_tail,
        "category": residence.category,
        "moved_in": residence.moved_in.isoformat() if residence.moved_in else None,
        "moved_out": residence.moved_out.isoformat() if residence.moved_out else None,
        "room_id": residence.room_id,
        "community_code": residence.community_code,
    }


def clear_number(numbers, residence) -> str:
    moved_in = residence.moved_in.isoformat() if residence.moved_in else ""
    return numbers[(residence.room_id, residence.name, moved_in)]


@pytest.fixture
def audit_rows(sql) -> Iterator[Any]:
    """The audit rows written since the test began, oldest first."""
    start = sql("SELECT coalesce(max(id), 0) AS id FROM audit_log")[0].id

    def rows(user: str | None = None) -> list[Any]:
        found = sql(
            "SELECT user_name, role, host(client_ip) AS ip, action, target_ids, purpose, "
            "detail::text AS detail FROM audit_log WHERE id > :start ORDER BY id",
            start=start,
        )
        return [r for r in found if user is None or r.user_name == user]

    yield rows


# ---------------------------------------------------------------- masking


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("张伟", "张*"),
        ("杨平勇", "杨*"),
        ("欧阳修", "欧阳*"),
        ("司马相如", "司马*"),
        ("诸葛亮", "诸葛*"),
        ("上官婉儿", "上官*"),
        ("欧阳", "欧*"),  # surname 欧, given name 阳
        ("东方", "东*"),
        (" 王芳 ", "王*"),
        ("", ""),
    ],
)
def test_names_are_masked_to_the_surname(name, expected):
    assert mask_name(name) == expected


def test_numbers_are_masked_to_the_last_four():
    assert mask_number("4354") == "**************4354"
    assert mask_number("282X") == "**************282X"


# ---------------------------------------------------------------- reading a room


def test_residents_of_a_room_are_masked(client, tokens, room, fixture_numbers, audit_rows):
    response = client.get(
        "/persons", params={"room_id": room["id"]}, headers=bearer(tokens["officer"])
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["masked"] is True
    assert body["residents"] == [masked(r) for r in room["residences"]]
    assert body["numberReturned"] == len(room["residences"])
    for residence in room["residences"]:
        assert clear_number(fixture_numbers, residence) not in response.text
        assert residence.name not in response.text
    (row,) = audit_rows("persons-officer")
    assert row.action == "read_persons"
    assert row.role == "officer"
    assert row.ip == CLIENT_IP
    assert sorted(row.target_ids) == sorted({str(r.person_id) for r in room["residences"]})
    assert row.purpose is None


def test_a_room_with_its_current_residents(client, tokens, room, audit_rows):
    response = client.get(f"/rooms/{room['id']}", headers=bearer(tokens["officer"]))
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    for key in ("id", "building_id", "building_name", "community_code", "unit", "floor"):
        assert body[key] == room[key], key
    assert (body["number"], body["use"]) == (room["number"], room["use"])
    current = [masked(r) for r in room["residences"] if r.active]
    assert 2 <= len(current) < len(room["residences"])
    assert body["residents"] == current
    (row,) = audit_rows("persons-officer")
    assert (row.action, row.ip) == ("read_persons", CLIENT_IP)
    assert sorted(row.target_ids) == sorted(str(r["person_id"]) for r in current)


def test_unmask_needs_a_purpose(client, tokens, room, audit_rows):
    headers = bearer(tokens["officer"])
    for params in (
        {"unmask": "true"},
        {"unmask": "true", "purpose": "   "},
        {"unmask": "true", "purpose": "x" * 501},
    ):
        for path, extra in (("/persons", {"room_id": room["id"]}), (f"/rooms/{room['id']}", {})):
            response = client.get(path, params={**params, **extra}, headers=headers)
            assert response.status_code == 400, (path, params, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")
            assert "purpose" in response.json()["detail"]
    assert audit_rows() == []


def test_unmask_with_a_purpose_shows_and_audits(client, tokens, room, fixture_numbers, audit_rows):
    response = client.get(
        "/persons",
        params={"room_id": room["id"], "unmask": "true", "purpose": PURPOSE},
        headers=bearer(tokens["station"]),
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["masked"] is False
    assert [(r["name"], r["id_number"]) for r in body["residents"]] == [
        (r.name, clear_number(fixture_numbers, r)) for r in room["residences"]
    ]
    ids = sorted({str(r.person_id) for r in room["residences"]})
    read, unmask = audit_rows("persons-station")
    assert (read.action, unmask.action) == ("read_persons", "unmask")
    for row in (read, unmask):
        assert (row.role, row.ip, row.purpose) == ("station", CLIENT_IP, PURPOSE)
        assert sorted(row.target_ids) == ids
        for residence in room["residences"]:
            assert clear_number(fixture_numbers, residence) not in row.detail


@pytest.mark.parametrize("role", ["analyst", "gis", "admin"])
def test_other_roles_may_not_read_persons(client, tokens, room, role, audit_rows):
    headers = bearer(tokens[role])
    unmask = {"unmask": "true", "purpose": PURPOSE}
    requests = [
        ("GET", "/persons", {"room_id": room["id"]}, None),
        ("GET", "/persons", {"room_id": room["id"], **unmask}, None),
        ("GET", f"/rooms/{room['id']}", {}, None),
        ("GET", f"/rooms/{room['id']}", unmask, None),
        ("POST", "/persons/search", {}, {"id_number": "11010519491231002X", "purpose": PURPOSE}),
    ]
    for method, path, params, body in requests:
        response = client.request(method, path, params=params, json=body, headers=headers)
        assert response.status_code == 403, (path, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["detail"] == f"role {role} may not read persons"
    assert audit_rows() == []


def test_anonymous_requests_are_refused(client, room):
    for method, path, params in (
        ("GET", "/persons", {"room_id": room["id"]}),
        ("GET", f"/rooms/{room['id']}", {}),
        ("POST", "/persons/search", {}),
    ):
        response = client.request(method, path, params=params)
        assert response.status_code == 401, path
        assert response.headers["content-type"].startswith("application/problem+json")


def test_a_room_outside_the_jurisdiction_does_not_exist(client, tokens, room, audit_rows):
    headers = bearer(tokens["other-officer"])
    response = client.get(f"/rooms/{room['id']}", headers=headers)
    assert response.status_code == 404
    assert response.json()["detail"] == f"no room {room['id']}"
    assert client.get("/rooms/GG-no-such-room", headers=headers).json()["detail"] == (
        "no room GG-no-such-room"
    )  # the same answer as for a room that exists elsewhere
    response = client.get("/persons", params={"room_id": room["id"]}, headers=headers)
    assert response.status_code == 200
    assert response.json()["residents"] == []
    (row,) = audit_rows("persons-other-officer")  # the empty read; a 404 reads no one
    assert (row.action, row.target_ids) == ("read_persons", [])


def test_a_resident_registered_elsewhere_is_seen_there_only(client, sql, sample_db_url):
    """A residence is seen where it is registered, not where its room's building is:
    the sample has residents registered to another community than their room's."""
    moved = sql(
        "SELECT r.room_id, r.person_id, r.community_code, b.community_code AS building_code "
        "FROM residence r JOIN room ON room.id = r.room_id "
        "JOIN building b ON b.id = room.building_id "
        "WHERE r.community_code <> b.community_code ORDER BY r.id LIMIT 1"
    )
    assert moved, "the sample lost its residents registered outside their room's community"
    (moved,) = moved

    def seen(code: str) -> tuple[list[int], int]:
        token = grant(sample_db_url, f"persons-officer-{code}", "officer", (code,))
        residents = client.get(
            "/persons", params={"room_id": moved.room_id}, headers=bearer(token)
        ).json()["residents"]
        room = client.get(f"/rooms/{moved.room_id}", headers=bearer(token))
        return [r["person_id"] for r in residents], room.status_code

    persons, room_status = seen(moved.building_code)
    assert moved.person_id not in persons
    assert room_status == 200
    persons, room_status = seen(moved.community_code)
    assert moved.person_id in persons
    assert room_status == 404  # the building is not theirs


# ---------------------------------------------------------------- search


def search(client, token: str, number: str, **extra: Any):
    return client.post(
        "/persons/search",
        json={"id_number": number, "purpose": PURPOSE, **extra},
        headers=bearer(token),
    )


def test_search_finds_the_person_in_the_jurisdiction(
    client, tokens, room, fixture_numbers, audit_rows
):
    residence = next(r for r in room["residences"] if r.active)
    number = clear_number(fixture_numbers, residence)
    response = search(client, tokens["officer"], number)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert [r["person_id"] for r in body["residents"]] == [residence.person_id]
    assert body["residents"][0] == masked(residence)
    assert number not in response.text
    (row,) = audit_rows("persons-officer")
    assert (row.action, row.ip, row.purpose) == ("search_identity", CLIENT_IP, PURPOSE)
    assert row.target_ids == [str(residence.person_id)]
    assert number not in row.detail and number[-4:] not in str(row.target_ids)

    # lower-case check character and surrounding spaces are the same number
    assert search(client, tokens["station"], f" {number.lower()} ").json()["residents"] == [
        masked(residence)
    ]


def test_search_in_another_jurisdiction_finds_nothing(
    client, tokens, room, fixture_numbers, audit_rows
):
    number = clear_number(fixture_numbers, room["residences"][-1])
    response = search(client, tokens["other-officer"], number)
    assert response.status_code == 200
    assert response.json() == {"masked": True, "residents": [], "numberReturned": 0}
    (row,) = audit_rows("persons-other-officer")
    assert (row.action, row.target_ids) == ("search_identity", [])


def test_search_unmasked(client, tokens, room, fixture_numbers, audit_rows):
    residence = next(r for r in room["residences"] if r.active)
    number = clear_number(fixture_numbers, residence)
    response = search(client, tokens["officer"], number, unmask=True)
    assert response.status_code == 200, response.text
    (found,) = response.json()["residents"]
    assert (found["name"], found["id_number"]) == (residence.name, number)
    searched, unmask = audit_rows("persons-officer")
    assert (searched.action, unmask.action) == ("search_identity", "unmask")
    assert unmask.target_ids == [str(residence.person_id)]
    assert (unmask.purpose, unmask.ip) == (PURPOSE, CLIENT_IP)


def test_search_needs_a_purpose(client, tokens, room, fixture_numbers):
    number = clear_number(fixture_numbers, room["residences"][0])
    headers = bearer(tokens["officer"])
    for body in ({"id_number": number}, {"id_number": number, "purpose": " "}):
        response = client.post("/persons/search", json=body, headers=headers)
        assert response.status_code == 400, response.text
        assert "purpose" in response.json()["detail"]
        assert number not in response.text


def test_malformed_numbers_are_shown_masked(client, tokens, fixture_numbers, room):
    number = clear_number(fixture_numbers, room["residences"][0])
    wrong_check = number[:17] + ("0" if number[17] != "0" else "1")
    cases = {
        number[:17]: "*************" + number[13:17],  # one character short
        wrong_check: "*" * 14 + wrong_check[14:],
        number[:16] + "A" + number[17]: "*" * 14 + number[14:16] + "A" + number[17],
    }
    for raw, shown in cases.items():
        response = search(client, tokens["officer"], raw)
        assert response.status_code == 400, raw
        detail = response.json()["detail"]
        assert shown in detail
        assert raw not in response.text
        assert number[6:14] not in response.text  # nor the birth date
        assert "expected" not in detail  # nor the right check character
    for bad in (42011119750602313, "", "x" * 65, "4201\x0011975060231"):
        response = search(client, tokens["officer"], bad)  # type: ignore[arg-type]
        assert response.status_code == 400, bad
        assert response.headers["content-type"].startswith("application/problem+json")


def test_no_identity_number_in_the_log(client, tokens, room, fixture_numbers, all_numbers, caplog):
    caplog.set_level(logging.DEBUG)
    numbers = [clear_number(fixture_numbers, r) for r in room["residences"]]
    for number in numbers:
        assert search(client, tokens["officer"], number).status_code == 200
        assert search(client, tokens["other-officer"], number).status_code == 200
        assert search(client, tokens["station"], number, unmask=True).status_code == 200
        assert search(client, tokens["officer"], number[:17]).status_code == 400
        assert search(client, tokens["officer"], number[:17] + "Y").status_code == 400
    client.get(
        "/persons",
        params={"room_id": room["id"], "unmask": "true", "purpose": PURPOSE},
        headers=bearer(tokens["officer"]),
    )
    assert caplog.records, "the log was captured"
    logged = caplog.text + "".join(str(record.args) for record in caplog.records)
    for number in {*numbers, *all_numbers}:
        assert number not in logged


def test_a_failed_audit_returns_nothing(api_settings, tokens, room, fixture_numbers, monkeypatch):
    """The audit row is written in the read's transaction: if it fails, no data leaves."""
    original = audit.entry

    def broken(principal, action, **kwargs):
        return original(principal, action, **kwargs).values(action="not-an-action")

    monkeypatch.setattr(audit, "entry", broken)
    number = clear_number(fixture_numbers, room["residences"][0])
    app = create_app(api_settings)
    with TestClient(app, raise_server_exceptions=False, client=(CLIENT_IP, 50000)) as failing:
        for response in (
            failing.get(
                "/persons",
                params={"room_id": room["id"], "unmask": "true", "purpose": PURPOSE},
                headers=bearer(tokens["officer"]),
            ),
            search(failing, tokens["officer"], number, unmask=True),
        ):
            assert response.status_code == 500
            assert number not in response.text
            assert all(r.name not in response.text for r in room["residences"])


# ---------------------------------------------------------------- the key file


def test_without_the_key_file_only_masked_reads_work(
    api_settings, tokens, room, fixture_numbers, tmp_path, audit_rows
):
    settings = api_settings.model_copy(update={"key_file": tmp_path / "missing.json"})
    number = clear_number(fixture_numbers, room["residences"][0])
    headers = bearer(tokens["officer"])
    with TestClient(create_app(settings), client=(CLIENT_IP, 50000)) as keyless:
        masked_read = keyless.get("/persons", params={"room_id": room["id"]}, headers=headers)
        assert masked_read.status_code == 200
        for response in (
            keyless.get(
                "/persons",
                params={"room_id": room["id"], "unmask": "true", "purpose": PURPOSE},
                headers=headers,
            ),
            search(keyless, tokens["officer"], number),
        ):
            assert response.status_code == 503, response.text
            assert "missing.json" not in response.text  # the log says where, not the client
    assert [row.action for row in audit_rows("persons-officer")] == ["read_persons"]


def test_a_changed_key_file_is_read_again(tmp_path):
    """After ``registry keys rotate`` replaces the file, the next search uses its keys."""
    path, other = tmp_path / "keys.json", tmp_path / "other.json"
    create_key_file(path)
    create_key_file(other)
    keys = KeyFile(path)
    first, stamp = keys.changed()
    keys.vault, keys.stamp = first, stamp
    assert keys.changed() is None
    os.replace(other, path)
    second, _ = keys.changed()
    assert second.fingerprint == load_vault(path).fingerprint != first.fingerprint


# ---------------------------------------------------------------- the API document


def test_the_api_document_declares_the_persons_paths(client):
    paths = client.get("/api").json()["paths"]
    assert set(paths["/persons"]) == {"get"}
    assert set(paths["/rooms/{room_id}"]) == {"get"}
    assert set(paths["/persons/search"]) == {"post"}
    search_op = paths["/persons/search"]["post"]
    assert not [p for p in search_op.get("parameters", []) if p["name"] == "id_number"]
    for operation in (paths["/persons"]["get"], search_op):
        assert {"400", "401", "403"} <= set(operation["responses"])


def test_fuzzed_persons_requests_never_fail(live_server, tokens):
    """schemathesis over the persons operations as an officer (the suite-wide test runs
    as an admin, who gets 403 before any parameter is read)."""
    schema = schemathesis.openapi.from_url(live_server.url + "/api")
    operations = [
        result.ok()
        for result in schema.get_all_operations()
        if result.ok().path in ("/persons", "/rooms/{room_id}", "/persons/search")
    ]
    assert len(operations) == 3
    failures: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=30,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def exercise(case) -> None:
                response = case.call(base_url=live_server.url, headers=bearer(tokens["officer"]))
                case.validate_response(response, checks=[not_a_server_error])
                if 400 <= response.status_code < 500:
                    content_type = response.headers.get("content-type", [""])
                    if isinstance(content_type, list):
                        content_type = content_type[0]
                    assert content_type.startswith("application/problem+json"), case.path
                    assert response.json()["detail"]

            try:
                exercise()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE, operation.path
            except Exception as exc:
                failures.append(f"{mode.value} {operation.method.upper()} {operation.path}: {exc}")
    assert not failures, "\n\n".join(failures)
