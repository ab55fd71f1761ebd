"""Organizations (实有单位) and their employees over the hand-drawn bundle.

tests/hand_bundle.py lists the organizations O1..O9 (``uscc(1)``..``uscc(9)``) and four
employments. Expected numbers are worked out from those lists in the comments; the
rates themselves are checked in test_rates.py (org_on_map_rate). Loading, bad input
per field, idempotent reloads, the ``organizations`` collection over HTTP (bbox, paging,
CQL2), the employees route per role with masking and audit rows, and row-level
security for the API role.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pyproj import Transformer
from sqlalchemy import Engine, make_url, text

from api import create_app
from registry.bundle.load import load_bundle
from registry.db import make_engine, transaction
from registry.vault import create_key_file, load_vault

from conftest import (
    API_PASSWORD,
    TEMPLATE,
    api_settings_for,
    bearer,
    create_database,
    drop_database,
    grant,
)
from hand_bundle import (
    AS_OF,
    EMPLOYEES,
    ORGANIZATIONS,
    ORIGIN,
    id_number,
    uscc,
    write_csv,
    write_hand_bundle,
)

C1, C2, C3 = "420111002001", "420111002002", "420111003001"
STREET = "420111002"
CLIENT_IP = "203.0.113.9"
ORG_HEADER = [
    "uscc",
    "name",
    "community_code",
    "room_id",
    "building_id",
    "category",
    "opened",
    "closed",
]
EMPLOYEE_HEADER = ["id_number", "name", "uscc", "position", "started", "ended"]
_TO_GK = Transformer.from_crs("EPSG:4490", "EPSG:4547", always_xy=True)


def local(lon: float, lat: float) -> tuple[float, float]:
    """EPSG:4490 -> the hand bundle's local metres."""
    x, y = _TO_GK.transform(lon, lat)
    return x - ORIGIN[0], y - ORIGIN[1]


def count(session, sql: str, **params: Any) -> int:
    return session.execute(text(sql), params).scalar_one()


# ---------------------------------------------------------------- loading


def test_load_writes_organizations_and_employees(session, vault, tmp_path: Path):
    report = load_bundle(session, write_hand_bundle(tmp_path / "hand"), vault)
    assert report.errors == [] and report.written
    # hand_bundle.ORGANIZATIONS has 9 rows, EMPLOYEES 4, all valid
    assert report.counts["organizations"] == {
        "read": 9,
        "rejected": 0,
        "inserted": 9,
        "updated": 0,
        "unchanged": 0,
    }
    assert report.counts["employees"]["inserted"] == 4
    assert count(session, "SELECT count(*) FROM organization") == 9
    # O1 in room R1 (no building_id of its own), O2 in building B6, O5 nowhere
    rows = session.execute(
        text("SELECT uscc, room_id, building_id FROM organization ORDER BY uscc")
    ).all()
    places = {r.uscc: (r.room_id, r.building_id) for r in rows}
    assert places[uscc(1)] == ("R1", None)
    assert places[uscc(2)] == (None, "B6")
    assert places[uscc(5)] == (None, None)
    # persons: 9 residents (id numbers 1..17) + 2 employees-only (19, 21); 测试甲 (1)
    # is both a resident and O1's manager: one person, not two
    assert count(session, "SELECT count(*) FROM person") == 11
    assert (
        count(
            session,
            "SELECT count(DISTINCT p.id) FROM person p JOIN residence r ON r.person_id = p.id "
            "JOIN employment e ON e.person_id = p.id",
        )
        == 1
    )
    # each employment carries its organization's community: O1 O1 O2 in C1, O8 in C2
    scopes = session.execute(
        text("SELECT community_code, count(*) FROM employment GROUP BY 1 ORDER BY 1")
    ).all()
    assert [tuple(r) for r in scopes] == [(C1, 3), (C2, 1)]
    # identity numbers are stored encrypted: the clear bytes are nowhere in the ciphertext
    assert (
        count(
            session,
            "SELECT count(*) FROM person WHERE position(convert_to(:n, 'UTF8') IN id_cipher) > 0",
            n=id_number(19),
        )
        == 0
    )


def test_reloading_the_same_bundle_changes_nothing(session, vault, tmp_path: Path):
    bundle = write_hand_bundle(tmp_path / "hand")
    assert load_bundle(session, bundle, vault).written
    session.commit()
    stamps = session.execute(text("SELECT max(updated_at) FROM organization")).scalar_one()
    again = load_bundle(session, bundle, vault)
    assert again.errors == [] and again.written
    assert again.counts["organizations"]["unchanged"] == 9
    assert again.counts["organizations"]["inserted"] == 0
    assert again.counts["employees"]["unchanged"] == 4
    assert again.counts["employees"]["inserted"] == 0
    assert count(session, "SELECT count(*) FROM organization") == 9
    assert count(session, "SELECT count(*) FROM employment") == 4
    assert count(session, "SELECT count(*) FROM person") == 11
    assert session.execute(text("SELECT max(updated_at) FROM organization")).scalar_one() == stamps


def test_reload_with_a_moved_organization_moves_its_employments(session, vault, tmp_path):
    bundle = write_hand_bundle(tmp_path / "hand")
    assert load_bundle(session, bundle, vault).written
    # O1 moves to 乙社区 (C2), into B21: its two employments must follow (their scope)
    moved = [
        (*row[:2], C2, "", "B21", *row[5:]) if row[0] == uscc(1) else row for row in ORGANIZATIONS
    ]
    write_csv(bundle / "organizations.csv", ORG_HEADER, moved)
    report = load_bundle(session, bundle, vault)
    assert report.errors == [] and report.counts["organizations"]["updated"] == 1
    assert (
        count(
            session,
            "SELECT count(*) FROM employment WHERE organization_uscc = :u AND community_code = :c",
            u=uscc(1),
            c=C2,
        )
        == 2
    )


def bad_org_rows() -> list[tuple]:
    good = ORGANIZATIONS[0]
    wrong_check = bad_check(uscc(50))
    return [
        (wrong_check, "错校验", C1, "", "", "", "", ""),  # row 2
        ("91420111I0000001X", "短码", C1, "", "", "", "", ""),  # row 3: 17 characters
        (uscc(51), "", C1, "", "", "", "", ""),  # row 4: no name
        (uscc(52), "无社区", "420111009999", "", "", "", "", ""),  # row 5
        (uscc(53), "两处", C1, "R1", "B1", "", "", ""),  # row 6
        (uscc(54), "无房", C1, "R404", "", "", "", ""),  # row 7
        (uscc(55), "无楼", C1, "", "B404", "", "", ""),  # row 8
        (uscc(56), "倒序", C1, "", "", "", "2020-01-01", "2019-12-31"),  # row 9
        (uscc(57), "坏日期", C1, "", "", "", "2020/01/01", ""),  # row 10
        good,  # row 11
        (good[0], "重复", C1, "", "", "", "", ""),  # row 12: duplicate of row 11
    ]


def bad_check(number: str) -> str:
    """``number`` with a wrong last character."""
    return number[:17] + ("0" if number[17] != "0" else "1")


def bad_employee_rows() -> list[tuple]:
    return [
        # row 2: 测试甲's number with a wrong check character
        (
            id_number(1)[:17] + ("0" if id_number(1)[17] != "0" else "1"),
            "坏号",
            uscc(1),
            "",
            "",
            "",
        ),
        (id_number(23), "无单位", uscc(58), "", "", ""),  # row 3: no such organization
        (id_number(25), "被拒单位", uscc(53), "", "", ""),  # row 4: O refused at row 6
        (id_number(1), "别名", uscc(1), "", "", ""),  # row 5: 测试甲 in residents.csv
        (id_number(27), "测试丑", uscc(1), "", "2020-01-01", ""),  # row 6
        (id_number(27), "测试丑", uscc(1), "", "2020-01-01", ""),  # row 7: duplicate of 6
        (id_number(29), "测试寅", uscc(1), "", "2021-01-01", "2020-01-01"),  # row 8
    ]


def test_bad_rows_are_named_and_nothing_is_written(session, vault, tmp_path: Path):
    bundle = write_hand_bundle(tmp_path / "hand")
    write_csv(bundle / "organizations.csv", ORG_HEADER, bad_org_rows())
    write_csv(bundle / "employees.csv", EMPLOYEE_HEADER, bad_employee_rows())
    report = load_bundle(session, bundle, vault)
    assert not report.written
    found = {(p.file, p.row, p.field): p.reason for p in report.errors}
    orgs, emps = "organizations.csv", "employees.csv"
    expected = {
        (orgs, 2, "uscc"): "check character is",
        (orgs, 3, "uscc"): "must have 18 characters, has 17",
        (orgs, 4, "name"): "is required",
        (orgs, 5, "community_code"): "'420111009999' is not in communities",
        (orgs, 6, "building_id"): "give room_id or building_id, not both",
        (orgs, 7, "room_id"): "'R404' is not in rooms",
        (orgs, 8, "building_id"): "'B404' is not in buildings",
        (orgs, 9, "closed"): "2019-12-31 is before opened 2020-01-01",
        (orgs, 10, "opened"): "is not an ISO date",
        (orgs, 12, "uscc"): "duplicate uscc",
        (emps, 2, "id_number"): "invalid identity number",
        (emps, 3, "uscc"): f"{uscc(58)!r} is not in organizations",
        (emps, 4, "uscc"): "refers to a rejected row (organizations.csv row 6)",
        (emps, 5, "name"): "has name '测试甲' at residents.csv row 2",
        (emps, 7, "started"): "duplicate employment of identity number",
        (emps, 8, "ended"): "2020-01-01 is before started 2021-01-01",
    }
    for where, reason in expected.items():
        assert where in found, (where, found)
        assert reason in found[where], (where, found[where])
    # 10 organization errors, 6 employee ones (row 6 of employees is fine), nothing else
    assert len([p for p in report.errors if p.file in (orgs, emps)]) == len(expected)
    assert all("\n" not in str(p) for p in report.errors)
    # no clear identity number in any message
    assert not any(
        id_number(27) in str(p) or id_number(1) in str(p) for p in report.validation.problems
    )
    for table in ("organization", "employment", "person", "building", "community"):
        assert count(session, f"SELECT count(*) FROM {table}") == 0, table


def test_partial_load_writes_the_valid_rows(session, vault, tmp_path: Path):
    bundle = write_hand_bundle(tmp_path / "hand")
    write_csv(bundle / "organizations.csv", ORG_HEADER, bad_org_rows())
    write_csv(bundle / "employees.csv", EMPLOYEE_HEADER, bad_employee_rows())
    report = load_bundle(session, bundle, vault, partial=True)
    assert report.written
    # organizations: only row 11 (O1) is valid; employees: only row 6 (测试丑 at O1)
    assert report.counts["organizations"] == {
        "read": 11,
        "rejected": 10,
        "inserted": 1,
        "updated": 0,
        "unchanged": 0,
    }
    assert report.counts["employees"]["inserted"] == 1
    assert count(session, "SELECT count(*) FROM organization") == 1
    assert count(session, "SELECT count(*) FROM employment") == 1


def test_organizations_may_refer_to_what_the_registry_holds(session, vault, tmp_path: Path):
    """A second bundle of organizations alone, over the first bundle already loaded."""
    first = write_hand_bundle(tmp_path / "hand")
    (first / "organizations.csv").unlink()
    (first / "employees.csv").unlink()
    assert load_bundle(session, first, vault).written
    second = tmp_path / "orgs"
    second.mkdir()
    write_csv(second / "organizations.csv", ORG_HEADER, ORGANIZATIONS)
    write_csv(second / "employees.csv", EMPLOYEE_HEADER, EMPLOYEES)
    report = load_bundle(session, second, vault)
    assert report.errors == [], report.errors
    assert count(session, "SELECT count(*) FROM organization") == 9
    assert count(session, "SELECT count(*) FROM employment") == 4
    assert count(session, "SELECT count(*) FROM person") == 11


def test_cli_rates_carry_the_organization_fields(cli, tmp_path: Path):
    import json

    assert cli("load", write_hand_bundle(tmp_path / "hand")).exit_code == 0
    result = cli("rates", "--as-of", AS_OF, "--format", "json", "--level", "city")
    (city,) = json.loads(result.stdout)
    # 6 active organizations, 3 on the map (see test_rates.py's docstring)
    assert (city["organizations"], city["organizations_on_map"]) == (6, 3)
    assert city["org_on_map_rate"] == pytest.approx(0.5)
    assert cli("rates", "--recount", "--as-of", AS_OF).exit_code == 0


# ---------------------------------------------------------------- the API


@pytest.fixture(scope="module")
def hand_db(server_url, template_url, tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A database with the hand bundle loaded, its key file, and an owner engine."""
    home = tmp_path_factory.mktemp("orgs")
    key_file = home / "keys.json"
    create_key_file(key_file)
    url = create_database(server_url, TEMPLATE)
    engine = make_engine(url)
    with transaction(engine) as session:
        report = load_bundle(session, write_hand_bundle(home / "hand"), load_vault(key_file))
        assert report.written, report.errors
    yield {"url": url, "key_file": key_file, "home": home, "owner": engine}
    engine.dispose()
    drop_database(server_url, url)


@pytest.fixture(scope="module")
def client(hand_db) -> Iterator[TestClient]:
    settings = api_settings_for(
        hand_db["url"], hand_db["home"] / "api", key_file=hand_db["key_file"]
    )
    with TestClient(create_app(settings), client=(CLIENT_IP, 50000)) as client:
        yield client


@pytest.fixture(scope="module")
def tokens(hand_db) -> dict[str, str]:
    accounts = {
        "officer": ("officer", (C1,)),
        "officer2": ("officer", (C2,)),
        "station": ("station", (STREET,)),
        "analyst": ("analyst", (STREET,)),
        "gis": ("gis", (STREET,)),
        "admin": ("admin", ()),
    }
    return {
        key: grant(hand_db["url"], f"orgs-{key}", role, scope)
        for key, (role, scope) in accounts.items()
    }


def get(client: TestClient, token: str, url: str, **params: Any):
    return client.get(url, params=params, headers=bearer(token))


def all_pages(client: TestClient, token: str, url: str) -> tuple[list[dict], int]:
    features, pages = [], 0
    while url:
        response = client.get(url, headers=bearer(token))
        assert response.status_code == 200, response.text
        page = response.json()
        features += page["features"]
        pages += 1
        url = next((link["href"] for link in page["links"] if link["rel"] == "next"), None)
    return features, pages


def is_active(opened: str, closed: str, today: dt.date) -> bool:
    return (not opened or dt.date.fromisoformat(opened) <= today) and (
        not closed or dt.date.fromisoformat(closed) > today
    )


def test_collection_lists_every_organization_with_its_properties(client, tokens):
    response = get(client, tokens["admin"], "/collections/organizations/items", limit=100)
    assert response.status_code == 200, response.text
    features = {f["id"]: f for f in response.json()["features"]}
    assert sorted(features) == sorted(row[0] for row in ORGANIZATIONS)  # all 9
    today = dt.date.today()
    for code, name, community, room, _, category, opened, closed in ORGANIZATIONS:
        props = features[code]["properties"]
        assert props["name"] == name and props["community_code"] == community
        assert props["room_id"] == (room or None) and props["category"] == category
        assert props["opened"] == (opened or None) and props["closed"] == (closed or None)
        assert props["active"] is is_active(opened, closed, today)
    # building_id: the room's building when placed in a room (R1 and R2 are in B1)
    assert features[uscc(1)]["properties"]["building_id"] == "B1"
    assert features[uscc(9)]["properties"]["building_id"] == "B1"
    assert features[uscc(5)]["properties"]["building_id"] is None
    # geometry: a point inside the footprint (B1 is x 100..140, y 100..140 m; B21 is
    # x 1300..1340), null when the building is not on the map (B6 no footprint, B5
    # demolished) or the organization is placed nowhere (O5)
    boxes = {1: (100, 140), 3: (100, 140), 9: (100, 140), 4: (200, 240), 6: (200, 240)}
    for serial, (low, high) in boxes.items():
        geometry = features[uscc(serial)]["geometry"]
        assert geometry["type"] == "Point"
        x, y = local(*geometry["coordinates"])
        assert low < x < high and 100 < y < 140, (serial, x, y)
    x, y = local(*features[uscc(8)]["geometry"]["coordinates"])
    assert 1300 < x < 1340 and 100 < y < 140
    for serial in (2, 5, 7):
        assert features[uscc(serial)]["geometry"] is None


def test_collection_bbox_paging_and_filters(client, tokens):
    token = tokens["admin"]
    url = "/collections/organizations/items"
    # a box around B1 only (local 90..150 m, in lon/lat): O1, O3 and O9 stand in it
    (lon0, lat0), (lon1, lat1) = (
        Transformer.from_crs("EPSG:4547", "EPSG:4490", always_xy=True).transform(
            ORIGIN[0] + x, ORIGIN[1] + y
        )
        for x, y in ((90, 90), (150, 150))
    )
    body = get(client, token, url, bbox=f"{lon0},{lat0},{lon1},{lat1}").json()
    assert sorted(f["id"] for f in body["features"]) == sorted([uscc(1), uscc(3), uscc(9)])
    # paging by 2: 9 organizations in 5 pages, each once, in id order
    features, pages = all_pages(client, token, f"{url}?limit=2")
    assert pages == 5 and [f["id"] for f in features] == sorted(r[0] for r in ORGANIZATIONS)
    # CQL2: category retail is O1, O4, O8; opened before mid-2019 is O1 and O3
    body = get(client, token, url, filter="category = 'retail'").json()
    assert sorted(f["id"] for f in body["features"]) == sorted([uscc(1), uscc(4), uscc(8)])
    body = get(client, token, url, filter="opened < '2019-06-01'").json()
    assert sorted(f["id"] for f in body["features"]) == sorted([uscc(1), uscc(3)])
    body = get(client, token, url, community_code=C2).json()
    assert sorted(f["id"] for f in body["features"]) == sorted([uscc(8), uscc(9)])
    # one feature by id; a queryables schema with the boolean
    one = get(client, token, f"{url}/{uscc(8)}").json()
    assert one["properties"]["name"] == "辛超市"
    queryables = get(client, token, "/collections/organizations/queryables").json()
    assert queryables["properties"]["active"]["type"] == "boolean"


def test_collection_is_scoped_by_jurisdiction(client, tokens):
    # an officer of 甲社区 sees its 7 organizations (O1..O7), of 乙社区 its 2 (O8, O9)
    for token, serials in ((tokens["officer"], range(1, 8)), (tokens["officer2"], (8, 9))):
        body = get(client, token, "/collections/organizations/items").json()
        assert sorted(f["id"] for f in body["features"]) == sorted(uscc(n) for n in serials)


def audit_rows(hand_db, user: str) -> list[Any]:
    with hand_db["owner"].connect() as conn:
        return conn.execute(
            text(
                "SELECT action, target_ids, detail, host(client_ip) AS ip, purpose "
                "FROM audit_log WHERE user_name = :u ORDER BY id"
            ),
            {"u": user},
        ).all()


def person_id(hand_db, name: str) -> str:
    """The person's id as the owner reads it (names are unique in the hand bundle)."""
    with hand_db["owner"].connect() as conn:
        return str(conn.scalar(text("SELECT id FROM person WHERE name = :n"), {"n": name}))


def test_employees_for_officers_masked_and_audited(client, tokens, hand_db):
    before = len(audit_rows(hand_db, "orgs-officer"))
    response = get(client, tokens["officer"], f"/organizations/{uscc(1)}/employees")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    # O1: 测试甲 (店长, from 2019-03-01) and 测试癸 (店员, from 2024-01-01), earliest first
    assert body["masked"] is True and body["numberReturned"] == 2
    first, second = body["employees"]
    assert (first["name"], first["position"], first["started"]) == ("测*", "店长", "2019-03-01")
    assert first["id_number"] == "*" * 14 + id_number(1)[-4:]
    assert (second["name"], second["position"]) == ("测*", "店员")
    assert second["id_number"] == "*" * 14 + id_number(19)[-4:]
    assert id_number(1) not in response.text and id_number(19) not in response.text
    rows = audit_rows(hand_db, "orgs-officer")[before:]
    assert len(rows) == 1
    (row,) = rows
    assert row.action == "read_persons" and row.ip == CLIENT_IP
    assert sorted(row.target_ids) == sorted(
        [person_id(hand_db, "测试甲"), person_id(hand_db, "测试癸")]
    )
    assert row.detail == {"organization_uscc": uscc(1)}


def test_employees_unmasked_with_a_purpose(client, tokens, hand_db):
    url = f"/organizations/{uscc(2)}/employees"
    assert get(client, tokens["station"], url, unmask="true").status_code == 400  # no purpose
    response = get(client, tokens["station"], url, unmask="true", purpose="核查")
    assert response.status_code == 200, response.text
    (employee,) = response.json()["employees"]  # O2: 测试癸 as 护士, 2020..2023
    assert (employee["name"], employee["id_number"]) == ("测试癸", id_number(19))
    assert employee["ended"] == "2023-12-31"
    actions = [r.action for r in audit_rows(hand_db, "orgs-station")[-2:]]
    assert actions == ["read_persons", "unmask"]


@pytest.mark.parametrize("role", ["analyst", "gis", "admin"])
def test_employees_are_refused_to_other_roles(client, tokens, hand_db, role):
    before = len(audit_rows(hand_db, f"orgs-{role}"))
    response = get(client, tokens[role], f"/organizations/{uscc(1)}/employees")
    assert response.status_code == 403
    assert id_number(1)[-4:] not in response.text
    assert len(audit_rows(hand_db, f"orgs-{role}")) == before


def test_employees_outside_the_jurisdiction_or_malformed(client, tokens):
    # O1 is 甲社区's: an officer of 乙社区 does not see it
    response = get(client, tokens["officer2"], f"/organizations/{uscc(1)}/employees")
    assert response.status_code == 404
    response = get(client, tokens["officer"], "/organizations/91420111000000010X/employees")
    assert response.status_code == 400
    assert "check character" in response.json()["detail"]
    response = get(client, tokens["officer"], "/organizations/not-a-code/employees")
    assert response.status_code == 400 and "\n" not in response.json()["detail"]


def test_coverage_report_carries_the_organization_rate(client, tokens):
    response = get(client, tokens["admin"], "/reports/coverage", level="community", as_of=AS_OF)
    assert response.status_code == 200, response.text
    rows = {r["code"]: r for r in response.json()}
    # see test_rates.py: 甲 4 active, 1 on the map; 乙 2 and 2; 丙 none (null rate)
    assert (rows[C1]["organizations"], rows[C1]["organizations_on_map"]) == (4, 1)
    assert rows[C1]["org_on_map_rate"] == pytest.approx(0.25)
    assert rows[C2]["org_on_map_rate"] == pytest.approx(1.0)
    assert rows[C3]["org_on_map_rate"] is None


# ---------------------------------------------------------------- row-level security


@pytest.fixture
def as_api(hand_db) -> Iterator[Any]:
    url = make_url(hand_db["url"]).set(username="registry_api", password=API_PASSWORD)
    engine: Engine = make_engine(url.render_as_string(hide_password=False))
    with engine.connect() as conn:
        conn.begin()
        try:
            yield conn
        finally:
            conn.rollback()
    engine.dispose()


def set_context(conn, role: str, scope: str) -> None:
    conn.execute(
        text(
            "SELECT set_config('registry.user', 'rls-orgs', true), "
            "set_config('registry.role', :r, true), set_config('registry.scope', :s, true)"
        ),
        {"r": role, "s": scope},
    )


def test_rls_scopes_organizations_and_employments(as_api):
    assert as_api.scalar(text("SELECT count(*) FROM organization")) == 0  # no context
    set_context(as_api, "officer", C1)
    # O1..O7 are 甲社区's; employments of O1 (2) and O2 (1)
    assert as_api.scalar(text("SELECT count(*) FROM organization")) == 7
    assert as_api.scalar(text("SELECT count(*) FROM employment")) == 3
    # 测试癸 (19) is an employee only, yet visible through the employment; 测试子 (21)
    # works for O8 in 乙社区 and is not
    tails = set(as_api.scalars(text("SELECT id_tail FROM person")))
    assert id_number(19)[-4:] in tails and id_number(21)[-4:] not in tails


def test_rls_gives_analysts_organizations_but_no_employment(as_api):
    set_context(as_api, "analyst", STREET)
    # 甲 and 乙 are in street 420111002: all 9 organizations, no personal data
    assert as_api.scalar(text("SELECT count(*) FROM organization")) == 9
    assert as_api.scalar(text("SELECT count(*) FROM employment")) == 0
    assert as_api.scalar(text("SELECT count(*) FROM person")) == 0


def test_rls_refuses_writes_outside_the_scope(as_api):
    set_context(as_api, "officer", C2)
    updated = as_api.execute(
        text("UPDATE organization SET name = 'x' WHERE uscc = :u"), {"u": uscc(1)}
    ).rowcount
    assert updated == 0  # O1 is 甲社区's: invisible, so untouched


def test_employees_csv_columns_are_documented():
    """docs/bundle.md names the columns the loader reads."""
    doc = (Path(__file__).parents[1] / "docs" / "bundle.md").read_text(encoding="utf-8")
    for name in EMPLOYEE_HEADER + ORG_HEADER:
        assert f"`{name}`" in doc
    assert "employees.csv" in doc and "organizations.csv" in doc


@pytest.mark.parametrize("suffix", [".gpkg", ".fgb", ".geojson", ".csv"])
def test_export_the_organizations(cli, tmp_path: Path, suffix: str):
    import pyogrio

    assert cli("load", write_hand_bundle(tmp_path / "hand")).exit_code == 0
    out = tmp_path / f"orgs{suffix}"
    result = cli("export", "organizations", out)
    assert result.exit_code == 0, result.output
    frame = pyogrio.read_dataframe(out)
    # 9 organizations; FlatGeobuf leaves out those without geometry (O2 in B6, O5, O7)
    expected = 6 if suffix == ".fgb" else 9
    assert len(frame) == expected
    row = frame[frame["uscc"] == uscc(8)].iloc[0]
    assert row["name"] == "辛超市" and str(row["opened"])[:10] == AS_OF  # CSV reads a date
    assert "active" in frame.columns


def test_gdal_copies_the_sample_organizations(live_server, sample_db_url, admin_token, tmp_path):
    """GDAL's OAPIF driver pages through the collection (10 a request) and keeps every
    organization of the 光谷 sample, with the same codes and names as the database."""
    import os
    import subprocess

    import pyogrio

    out = tmp_path / "orgs.gpkg"
    env = {**os.environ, "GDAL_HTTP_HEADERS": f"Authorization: Bearer {admin_token}"}
    copy = subprocess.run(
        ["ogr2ogr", "-f", "GPKG", str(out), f"OAPIF:{live_server.url}", "organizations"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert copy.returncode == 0, copy.stderr
    table = pyogrio.read_dataframe(out)
    engine = make_engine(sample_db_url)
    with engine.connect() as conn:
        rows = dict(conn.execute(text("SELECT uscc, name FROM organization")).all())
    engine.dispose()
    assert len(rows) > 100  # the sample has 150: enough to need many pages
    assert dict(zip(table["uscc"], table["name"], strict=True)) == rows
