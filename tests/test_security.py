"""Security over HTTP and the CLI: who may call what, and sees which rows; cross-jurisdiction
writes; CSRF; identity numbers never in clear and masked where shown; the audit log;
tokens; SQL injection in every parameter; security headers and body limits.

Row-level security in SQL itself is in test_rls.py. The persons endpoints and key
rotation have tests of their own.

Expected row sets are computed from the database as the owner (who bypasses row-level
security), with an explicit ``LIKE prefix%`` on the community code: never hard-coded.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import io
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import mapbox_vector_tile
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text

import api.reports
from api import create_app
from registry import auth
from registry.bundle.load import load_bundle
from registry.collections import ADDRESSES
from registry.db import make_engine, transaction
from registry.idnumber import mask
from registry.vault import create_key_file, load_vault

from conftest import (
    TEMPLATE,
    api_settings_for,
    bearer,
    create_database,
    drop_database,
    grant,
)
from hand_bundle import RESIDENTS, id_number, write_csv, write_hand_bundle

OFFICER_SCOPE = "420111002005"  # one community of the sample
OTHER_COMMUNITY = "420111002009"  # another one, same street
PROBLEM_JSON = "application/problem+json"

# role -> (account role, jurisdiction); distinct account names: the sample is shared
ROLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "officer": ("officer", (OFFICER_SCOPE,)),
    "station": ("station", ("420111002",)),
    "analyst": ("analyst", ("420111",)),
    "gis": ("gis", ("420111",)),
    "admin": ("admin", ()),
}
EVERYONE = ("anonymous", *ROLES)
SIGNED = tuple(ROLES)
EDITORS = ("officer", "station", "admin")


def prefix_of(role: str) -> str:
    """The LIKE prefix of a role's jurisdiction ('' for admin: everything)."""
    jurisdiction = ROLES[role][1]
    assert len(jurisdiction) <= 1
    return jurisdiction[0] if jurisdiction else ""


def is_problem(response) -> bool:
    return response.headers.get("content-type", "").startswith(PROBLEM_JSON)


# ================================================================ the sample, read-only


@pytest.fixture(scope="module")
def owner(sample_db_url: str) -> Iterator[Engine]:
    engine = make_engine(sample_db_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def tokens(sample_db_url: str) -> dict[str, str]:
    return {
        role: grant(sample_db_url, f"security-{role}", account_role, jurisdiction)
        for role, (account_role, jurisdiction) in ROLES.items()
    }


@pytest.fixture(scope="module")
def client(api_settings) -> Iterator[TestClient]:
    """An anonymous client (headers per request) that reports a 500 instead of raising it."""
    app = create_app(api_settings)
    with TestClient(app, raise_server_exceptions=False, client=("198.51.100.7", 40000)) as c:
        yield c


def headers_of(tokens: dict[str, str], role: str) -> dict[str, str]:
    return {} if role == "anonymous" else bearer(tokens[role])


def owner_set(owner: Engine, sql: str, prefix: str) -> set[str]:
    with owner.connect() as conn:
        return set(conn.scalars(text(sql), {"p": prefix + "%"}))


def buildings_in(owner: Engine, prefix: str) -> set[str]:
    return owner_set(owner, "SELECT id FROM building WHERE community_code LIKE :p", prefix)


def addresses_in(owner: Engine, prefix: str) -> set[str]:
    return owner_set(owner, "SELECT code FROM address WHERE community_code LIKE :p", prefix)


def communities_in(owner: Engine, prefix: str) -> set[str]:
    return owner_set(owner, "SELECT code FROM community WHERE code LIKE :p", prefix)


def tile_xy(lon: float, lat: float, z: int) -> tuple[int, int]:
    n = 2**z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return x, y


@pytest.fixture(scope="module")
def mixed_tile(owner: Engine) -> tuple[int, int, int]:
    """A tile holding buildings of the officer's community and of others (so that
    filtering shows), found from the database: the tile of one of the community's
    buildings at the highest zoom where some other community's building also meets it."""
    with owner.connect() as conn:
        lon, lat = conn.execute(
            text(
                "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(footprint) p "
                "FROM building WHERE community_code = :c AND footprint IS NOT NULL "
                "ORDER BY id LIMIT 1) s"
            ),
            {"c": OFFICER_SCOPE},
        ).one()
        for z in (15, 14, 13, 12):
            x, y = tile_xy(lon, lat, z)
            others = conn.scalar(
                text(
                    "SELECT count(*) FROM building WHERE community_code <> :c AND "
                    "ST_Intersects(footprint_3857, ST_TileEnvelope(:z, :x, :y))"
                ),
                {"c": OFFICER_SCOPE, "z": z, "x": x, "y": y},
            )
            if others >= 3:
                return z, x, y
    raise AssertionError("no tile of the sample mixes communities")


# ---------------------------------------------------------------- role × endpoint

# path, method, body, the roles admitted; every other signed-in role gets 403, anonymous 401
ENDPOINTS: list[tuple[str, str, Any, tuple[str, ...]]] = [
    ("/", "GET", None, EVERYONE),
    ("/?f=html", "GET", None, EVERYONE),
    ("/conformance", "GET", None, EVERYONE),
    ("/api", "GET", None, EVERYONE),
    ("/api.html", "GET", None, EVERYONE),
    ("/login", "GET", None, EVERYONE),
    ("/healthz", "GET", None, EVERYONE),
    ("/session", "GET", None, SIGNED),
    ("/collections", "GET", None, SIGNED),
    ("/collections/buildings", "GET", None, SIGNED),
    ("/collections/buildings/queryables", "GET", None, SIGNED),
    ("/collections/buildings/items", "GET", None, SIGNED),
    ("/collections/addresses/items", "GET", None, SIGNED),
    ("/collections/communities/items", "GET", None, SIGNED),
    ("/tileMatrixSets", "GET", None, SIGNED),
    ("/tiles/buildings.json", "GET", None, SIGNED),
    ("/reports/coverage?f=csv", "GET", None, SIGNED),
    ("/exports/buildings.csv", "GET", None, SIGNED),
    ("/exports/buildings.gpkg", "GET", None, SIGNED),
    ("/exports/addresses.geojson", "GET", None, SIGNED),
    ("/addresses/match", "POST", {"addresses": ["珞喻路1号"]}, EDITORS),
    ("/reviews", "GET", None, EDITORS),
    ("/map", "GET", None, SIGNED),
    ("/map/config", "GET", None, SIGNED),
]


@pytest.mark.parametrize("role", EVERYONE)
@pytest.mark.parametrize(
    ("path", "method", "body", "admitted"), ENDPOINTS, ids=[f"{e[1]} {e[0]}" for e in ENDPOINTS]
)
def test_who_may_call_what(client, tokens, role, path, method, body, admitted):
    response = client.request(method, path, json=body, headers=headers_of(tokens, role))
    if role in admitted:
        assert response.status_code == 200, (role, path, response.text[:300])
    else:
        expected = 401 if role == "anonymous" else 403
        assert response.status_code == expected, (role, path, response.text[:300])
        assert is_problem(response)
        if expected == 401:
            assert response.headers.get("www-authenticate", "").lower().startswith("bearer")


def test_the_api_document_says_how_to_sign_in(client):
    """Clients learn from /api itself: bearer tokens everywhere, 401 declared, but the
    landing page, conformance and the document open to anyone."""
    document = client.get("/api").json()
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert document["security"] == [{"bearerAuth": []}]
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if path in ("/", "/conformance", "/api", "/api.html"):
                assert operation["security"] == [], path
            else:
                assert "401" in operation["responses"], path


@pytest.mark.parametrize("role", EVERYONE)
def test_one_feature_inside_and_outside_the_officers_community(client, tokens, owner, role):
    inside = sorted(buildings_in(owner, OFFICER_SCOPE))[0]
    outside = sorted(buildings_in(owner, OTHER_COMMUNITY))[0]
    headers = headers_of(tokens, role)
    got_inside = client.get(f"/collections/buildings/items/{inside}", headers=headers)
    got_outside = client.get(f"/collections/buildings/items/{outside}", headers=headers)
    if role == "anonymous":
        assert (got_inside.status_code, got_outside.status_code) == (401, 401)
        return
    assert got_inside.status_code == 200
    assert got_inside.json()["id"] == inside
    if role == "officer":
        # outside the jurisdiction it does not exist, for this caller
        assert got_outside.status_code in (403, 404), got_outside.text
        assert is_problem(got_outside)
    else:
        assert got_outside.status_code == 200


@pytest.mark.parametrize("role", EVERYONE)
def test_a_tile_shows_only_the_buildings_in_scope(client, tokens, owner, mixed_tile, role):
    z, x, y = mixed_tile
    path = f"/tiles/buildings/{z}/{x}/{y}.mvt"
    # the admin's tile first: a cached tile must never answer another scope
    admin = client.get(path, headers=bearer(tokens["admin"]))
    assert admin.status_code == 200
    everything = {
        f["properties"]["id"]
        for f in mapbox_vector_tile.decode(admin.content)["buildings"]["features"]
    }
    assert everything - buildings_in(owner, OFFICER_SCOPE), "the tile must mix communities"
    response = client.get(path, headers=headers_of(tokens, role))
    if role == "anonymous":
        assert response.status_code == 401
        return
    assert response.status_code in (200, 204)
    layers = mapbox_vector_tile.decode(response.content) if response.content else {}
    shown = {f["properties"]["id"] for f in layers.get("buildings", {}).get("features", [])}
    in_scope = buildings_in(owner, prefix_of(role))
    assert shown == everything & in_scope, role
    if role == "officer":
        assert shown, "the officer's community has buildings in this tile"
        assert response.headers["etag"] != admin.headers["etag"]


@pytest.mark.parametrize("role", SIGNED)
@pytest.mark.parametrize("collection", ["buildings", "addresses"])
def test_items_are_filtered_to_the_jurisdiction(client, tokens, owner, role, collection):
    response = client.get(
        f"/collections/{collection}/items", params={"limit": 10000}, headers=bearer(tokens[role])
    )
    assert response.status_code == 200
    body = response.json()
    shown = {f["id"] for f in body["features"]}
    expected = (buildings_in if collection == "buildings" else addresses_in)(owner, prefix_of(role))
    assert expected
    assert shown == expected
    assert body.get("numberMatched", len(shown)) == len(expected)


def test_an_officers_html_items_are_filtered_too(client, tokens, owner):
    response = client.get(
        "/collections/buildings/items",
        params={"f": "html", "limit": 10000},
        headers=bearer(tokens["officer"]),
    )
    assert response.status_code == 200
    for outside in sorted(buildings_in(owner, OTHER_COMMUNITY))[:5]:
        assert outside not in response.text


@pytest.mark.parametrize("role", EVERYONE)
def test_reports_cover_only_the_jurisdiction(client, tokens, owner, role):
    headers = headers_of(tokens, role)
    if role == "anonymous":
        for path in ("/reports/coverage", "/reports/gaps"):
            assert client.get(path).status_code == 401
        return
    expected = communities_in(owner, prefix_of(role))
    coverage = client.get("/reports/coverage", headers=headers)
    assert coverage.status_code == 200
    assert {row["code"] for row in coverage.json()} == expected
    gaps = client.get("/reports/gaps", headers=headers)
    assert gaps.status_code == 200
    assert {row["code"] for row in gaps.json()["communities"]} == expected


def test_a_report_of_another_community_is_refused(client, tokens):
    for path in ("/reports/coverage", "/reports/gaps"):
        response = client.get(
            path, params={"code": OTHER_COMMUNITY}, headers=bearer(tokens["officer"])
        )
        assert response.status_code == 403, path
        assert is_problem(response)


@pytest.mark.parametrize("role", SIGNED)
def test_exports_hold_only_the_jurisdiction(client, tokens, owner, role):
    response = client.get("/exports/buildings.csv", headers=bearer(tokens[role]))
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert {row["id"] for row in rows} == buildings_in(owner, prefix_of(role))
    geojson = client.get("/exports/addresses.geojson", headers=bearer(tokens[role]))
    assert geojson.status_code == 200
    codes = {f["properties"]["code"] for f in geojson.json()["features"]}
    assert codes == addresses_in(owner, prefix_of(role))


def an_address_label(owner: Engine, community: str) -> tuple[str, str]:
    """(code, one-line label) of an active address of ``community`` with a house number."""
    source = ADDRESSES.source()
    query = (
        select(source.c.code, source.c.label)
        .where(
            source.c.community_code == community,
            source.c.house_number.is_not(None),
            source.c.status == "active",
        )
        .order_by(source.c.code)
        .limit(1)
    )
    with owner.connect() as conn:
        return tuple(conn.execute(query, ADDRESSES.params()).one())  # type: ignore[return-value]


def test_matching_never_proposes_an_address_outside_the_jurisdiction(client, tokens, owner):
    code, label = an_address_label(owner, OTHER_COMMUNITY)
    admin = client.post(
        "/addresses/match", json={"addresses": [label]}, headers=bearer(tokens["admin"])
    ).json()["results"][0]
    seen_by_admin = {admin["address_code"], *(c["address_code"] for c in admin["candidates"])}
    assert code in seen_by_admin, "control: the admin's matcher finds the address"
    officer = client.post(
        "/addresses/match", json={"addresses": [label]}, headers=bearer(tokens["officer"])
    ).json()["results"][0]
    proposed = {officer["address_code"], *(c["address_code"] for c in officer["candidates"])}
    proposed.discard(None)
    assert proposed <= addresses_in(owner, OFFICER_SCOPE), proposed
    # and again after the admin's matcher was built: no index shared across scopes
    again = client.post(
        "/addresses/match", json={"addresses": [label]}, headers=bearer(tokens["officer"])
    ).json()["results"][0]
    assert again["address_code"] is None or again["address_code"] in addresses_in(
        owner, OFFICER_SCOPE
    )


# ================================================================ a writable hand bundle


@dataclass
class Hand:
    url: str
    engine: Engine
    home: Path
    reviews: dict[str, int]  # name -> review id
    residences: dict[str, int]  # name -> residence id

    def app(self, **overrides: Any):
        return create_app(api_settings_for(self.url, self.home, **overrides))


HAND_REVIEWS = {
    # name: the residence's person (by RESIDENTS name) or None for an unlinked item
    "mine": "测试丁",  # 420111002001, no room
    "theirs": "测试辛",  # 420111002002
    "theirs-control": "测试壬",  # 420111002002
    "unlinked": None,
}


@pytest.fixture(scope="module")
def hand(server_url, template_url, tmp_path_factory) -> Iterator[Hand]:
    """A database of its own with the hand bundle and four review items, for tests that
    write (the sample is shared read-only)."""
    url = create_database(server_url, TEMPLATE)
    tmp = tmp_path_factory.mktemp("security-hand")
    key_file = tmp / "keys.json"
    create_key_file(key_file)
    engine = make_engine(url)
    with transaction(engine) as session:
        report = load_bundle(session, write_hand_bundle(tmp / "bundle"), load_vault(key_file))
        assert report.written, report.errors
        residences = {
            name: session.execute(
                text(
                    "SELECT r.id FROM residence r JOIN person p ON p.id = r.person_id "
                    "WHERE p.name = :n ORDER BY r.id LIMIT 1"
                ),
                {"n": name},
            ).scalar_one()
            for name in {n for n in HAND_REVIEWS.values() if n}
        }
        reviews = {
            name: session.execute(
                text(
                    "INSERT INTO address_review (source, input, parsed, candidates, "
                    "match_status, residence_id) VALUES ('test', :input, '{}', '[]', "
                    "'unmatched', :rid) RETURNING id"
                ),
                {"input": f"珞喻路 {name}", "rid": residences.get(person) if person else None},
            ).scalar_one()
            for name, person in HAND_REVIEWS.items()
        }
    yield Hand(url, engine, tmp, reviews, residences)
    engine.dispose()
    drop_database(server_url, url)


@pytest.fixture(scope="module")
def hand_tokens(hand: Hand) -> dict[str, str]:
    return {
        "officer-1": grant(hand.url, "officer-1", "officer", ("420111002001",)),
        "officer-2": grant(hand.url, "officer-2", "officer", ("420111002002",)),
        "analyst": grant(hand.url, "hand-analyst", "analyst", ("420111",)),
        "admin": grant(hand.url, "hand-admin", "admin"),
    }


@pytest.fixture(scope="module")
def hand_client(hand: Hand) -> Iterator[TestClient]:
    with TestClient(
        hand.app(), raise_server_exceptions=False, client=("198.51.100.20", 40000)
    ) as c:
        yield c


def review_state(hand: Hand, name: str) -> tuple:
    with hand.engine.connect() as conn:
        return tuple(
            conn.execute(
                text(
                    "SELECT v.status, v.room_id, v.resolved_by, r.room_id FROM address_review v "
                    "LEFT JOIN residence r ON r.id = v.residence_id WHERE v.id = :id"
                ),
                {"id": hand.reviews[name]},
            ).one()
        )


def test_the_review_queue_shows_only_the_jurisdictions_items(hand, hand_tokens, hand_client):
    def ids(token: str) -> set[int]:
        seen = set()
        for status in ("open", "accepted", "rejected"):  # other tests decide some items
            response = hand_client.get(f"/reviews?status={status}", headers=bearer(token))
            assert response.status_code == 200
            seen |= {item["id"] for item in response.json()["items"]}
        return seen

    r = hand.reviews
    assert ids(hand_tokens["officer-1"]) == {r["mine"], r["unlinked"]}
    assert ids(hand_tokens["officer-2"]) == {r["theirs"], r["theirs-control"], r["unlinked"]}
    # admin is an editor but sees no residence (migration 0006), so only unlinked items
    assert ids(hand_tokens["admin"]) == {r["unlinked"]}
    assert hand_client.get("/reviews", headers=bearer(hand_tokens["analyst"])).status_code == 403


def test_accepting_another_communitys_review_is_refused_and_changes_nothing(
    hand, hand_tokens, hand_client
):
    before = review_state(hand, "theirs")
    assert before[0] == "open"
    response = hand_client.post(
        f"/reviews/{hand.reviews['theirs']}/accept",
        json={"room_id": "R1"},  # a room of officer-1's own community
        headers=bearer(hand_tokens["officer-1"]),
    )
    assert response.status_code in (403, 404), response.text
    assert is_problem(response)
    assert review_state(hand, "theirs") == before
    rejected = hand_client.post(
        f"/reviews/{hand.reviews['theirs']}/reject",
        json={},
        headers=bearer(hand_tokens["officer-1"]),
    )
    assert rejected.status_code in (403, 404), rejected.text
    assert review_state(hand, "theirs") == before


def test_the_same_accept_works_inside_the_jurisdiction(hand, hand_tokens, hand_client):
    """The control of the test above: officer-2 may place its own resident."""
    response = hand_client.post(
        f"/reviews/{hand.reviews['theirs-control']}/accept",
        json={"room_id": "R21"},
        headers=bearer(hand_tokens["officer-2"]),
    )
    assert response.status_code == 200, response.text
    status, room, by, placed = review_state(hand, "theirs-control")
    assert (status, room, by, placed) == ("accepted", "R21", "officer-2", "R21")


def test_a_resident_cannot_be_placed_in_a_room_outside_the_jurisdiction(
    hand, hand_tokens, hand_client
):
    before = review_state(hand, "mine")
    response = hand_client.post(
        f"/reviews/{hand.reviews['mine']}/accept",
        json={"room_id": "R21"},  # a room of 420111002002
        headers=bearer(hand_tokens["officer-1"]),
    )
    assert 400 <= response.status_code < 500, response.text
    assert review_state(hand, "mine") == before


# ---------------------------------------------------------------- sessions and CSRF


def web_session(hand: Hand, name: str) -> tuple[str, str]:
    """A sign-in session made as the owner (the same call POST /login makes)."""
    with transaction(hand.engine) as session:
        return auth.create_web_session(session, name, dt.timedelta(hours=1))


def test_a_session_cookie_needs_the_csrf_header_to_post(hand, hand_tokens):
    secret, csrf = web_session(hand, "officer-1")
    body = {"addresses": ["珞喻路1号"]}
    with TestClient(hand.app(), client=("198.51.100.21", 40000)) as c:
        c.cookies.set("registry_session", secret)
        assert c.get("/session").status_code == 200  # reads need no header
        assert c.get("/session").json()["csrf_token"] == csrf
        missing = c.post("/addresses/match", json=body)
        assert missing.status_code == 403 and is_problem(missing)
        wrong = c.post("/addresses/match", json=body, headers={"X-CSRF-Token": csrf + "x"})
        assert wrong.status_code == 403
        _, other_csrf = web_session(hand, "officer-1")
        # another session's token does not do either, even of the same account
        assert (
            c.post("/addresses/match", json=body, headers={"X-CSRF-Token": other_csrf})
        ).status_code == 403
        ok = c.post("/addresses/match", json=body, headers={"X-CSRF-Token": csrf})
        assert ok.status_code == 200, ok.text


def test_a_session_cookie_is_not_a_bearer_token_and_vice_versa(hand, hand_tokens):
    secret, _ = web_session(hand, "officer-1")
    with TestClient(hand.app(), client=("198.51.100.22", 40000)) as c:
        assert c.get("/collections", headers=bearer(secret)).status_code == 401
        c.cookies.set("registry_session", hand_tokens["officer-1"])
        assert c.get("/collections").status_code == 401


def test_a_rejected_review_through_a_session_is_recorded_as_the_account(hand, hand_tokens):
    secret, csrf = web_session(hand, "officer-1")
    with TestClient(hand.app(), client=("198.51.100.23", 40000)) as c:
        c.cookies.set("registry_session", secret)
        path = f"/reviews/{hand.reviews['unlinked']}/reject"
        assert c.post(path, json={"by": "someone else"}).status_code == 403
        assert review_state(hand, "unlinked")[0] == "open"
        done = c.post(path, json={"by": "someone else"}, headers={"X-CSRF-Token": csrf})
        assert done.status_code == 200, done.text
    status, _, by, _ = review_state(hand, "unlinked")
    assert (status, by) == ("rejected", "officer-1")


# ---------------------------------------------------------------- sign-in and the audit log

PASSWORD = "correct horse battery staple"
SIGN_IN = "POST /login answers 401 to a wrong password"


def audit_rows(hand: Hand, **where: Any) -> list[dict[str, Any]]:
    clauses = " AND ".join(f"{k} = :{k}" for k in where) or "true"
    with hand.engine.connect() as conn:
        return [
            dict(r)
            for r in conn.execute(
                text(f"SELECT * FROM audit_log WHERE {clauses} ORDER BY id"), where
            ).mappings()
        ]


def json_login(c: TestClient, name: str, password: str):
    return c.post(
        "/login",
        data={"name": name, "password": password},
        headers={"Accept": "application/json"},
    )


def test_sign_in_and_out_are_audited_with_user_role_and_address(hand):
    grant(hand.url, "signer", "station", ("420111002",), password=PASSWORD)
    ip = "198.51.100.30"
    with TestClient(hand.app(), raise_server_exceptions=False, client=(ip, 40000)) as c:
        wrong = json_login(c, "signer", "not the password")
        assert wrong.status_code == 401, f"{SIGN_IN}: {wrong.status_code} {wrong.text}"
        assert is_problem(wrong)
        ok = json_login(c, "signer", PASSWORD)
        assert ok.status_code == 200, f"{SIGN_IN}: {ok.status_code} {ok.text}"
        csrf = ok.json()["csrf_token"]
        cookie = ok.cookies.get("registry_session")
        assert cookie and cookie not in ok.text
        assert "httponly" in ok.headers["set-cookie"].lower()
        assert "samesite=strict" in ok.headers["set-cookie"].lower()
        assert c.get("/session").json()["name"] == "signer"
        out = c.post("/logout", headers={"X-CSRF-Token": csrf})
        assert out.status_code == 204
        c.cookies.set("registry_session", cookie)
        assert c.get("/session").status_code == 401  # the session is revoked, not only forgotten
    rows = audit_rows(hand, user_name="signer")
    actions = [r["action"] for r in rows]
    assert actions == ["login_failed", "login", "logout"]
    for row in rows:
        assert str(row["client_ip"]) == ip
    assert rows[0]["detail"] == {"throttled": False}
    for row in rows[1:]:
        assert (row["role"], row["jurisdiction"]) == ("station", ["420111002"])


def test_the_sixth_failed_sign_in_is_throttled_even_with_the_right_password(hand):
    grant(hand.url, "throttled", "officer", ("420111002001",), password=PASSWORD)
    with TestClient(
        hand.app(), raise_server_exceptions=False, client=("198.51.100.31", 40000)
    ) as c:
        for attempt in range(5):
            failed = json_login(c, "throttled", f"wrong {attempt}")
            assert failed.status_code == 401, f"{SIGN_IN}: {failed.status_code}"
        sixth = json_login(c, "throttled", PASSWORD)
        assert sixth.status_code == 429, sixth.text
        assert is_problem(sixth) and "retry-after" in sixth.headers
        assert "registry_session" not in sixth.cookies
    last = audit_rows(hand, user_name="throttled")[-1]
    assert last["action"] == "login_failed"
    assert last["detail"] == {"throttled": True}


def test_failed_sign_ins_from_one_address_throttle_other_accounts_there(hand):
    """Guessing across many names from one address is throttled too."""
    grant(hand.url, "bystander", "officer", ("420111002001",), password=PASSWORD)
    with TestClient(
        hand.app(), raise_server_exceptions=False, client=("198.51.100.32", 40000)
    ) as c:
        for attempt in range(5):
            failed = json_login(c, f"guess{attempt}", "whatever")
            assert failed.status_code == 401, f"{SIGN_IN}: {failed.status_code}"
        assert json_login(c, "bystander", PASSWORD).status_code == 429
    # from elsewhere, the account signs in: the throttle is per address and per account
    with TestClient(
        hand.app(), raise_server_exceptions=False, client=("198.51.100.33", 40000)
    ) as c:
        assert json_login(c, "bystander", PASSWORD).status_code == 200


def test_the_login_form_answers_html_and_sets_the_cookie(hand):
    grant(hand.url, "former", "analyst", ("420111",), password=PASSWORD)
    with TestClient(
        hand.app(),
        raise_server_exceptions=False,
        follow_redirects=False,
        client=("198.51.100.34", 40000),
    ) as c:
        wrong = c.post("/login", data={"name": "former", "password": "nope", "next": "/"})
        assert wrong.status_code == 401, f"{SIGN_IN}: {wrong.status_code}"
        assert wrong.headers["content-type"].startswith("text/html")
        ok = c.post(
            "/login",
            data={"name": "former", "password": PASSWORD, "next": "//evil.example/"},
        )
        assert ok.status_code == 303
        assert ok.headers["location"] == "/"  # never off-site
        assert "registry_session" in ok.cookies


def test_a_browser_is_sent_to_sign_in_and_back(hand):
    """A page opened without a session goes to the form, and after it to the page."""
    grant(hand.url, "browser", "analyst", ("420111",), password=PASSWORD)
    page = "/reports/coverage?f=html"
    with TestClient(hand.app(), follow_redirects=False, client=("198.51.100.36", 40000)) as c:
        sent = c.get(page, headers={"Accept": "text/html,application/xhtml+xml"})
        assert sent.status_code == 303
        assert sent.headers["location"] == "/login?next=" + quote(page, safe="")
        # a client that asks for JSON still gets the problem, not a redirect
        assert c.get(page, headers={"Accept": "application/json"}).status_code == 401
        signed = c.post("/login", data={"name": "browser", "password": PASSWORD, "next": page})
        assert (signed.status_code, signed.headers["location"]) == (303, page)
        shown = c.get(page, headers={"Accept": "text/html"})
        assert shown.status_code == 200 and "coverage report" in shown.text


def test_an_export_is_audited_with_user_role_and_address(hand, hand_tokens):
    ip = "198.51.100.35"
    with TestClient(hand.app(), raise_server_exceptions=False, client=(ip, 40000)) as c:
        response = c.get("/exports/buildings.csv", headers=bearer(hand_tokens["officer-1"]))
        assert response.status_code == 200
    rows = audit_rows(hand, user_name="officer-1", action="export")
    assert rows, "an export writes an audit row (api/exports.py)"
    row = rows[-1]
    assert (row["role"], row["jurisdiction"], str(row["client_ip"])) == (
        "officer",
        ["420111002001"],
        ip,
    )


def test_gis_sees_small_person_counts_suppressed(hand, hand_tokens, hand_client):
    """Person counts from 1 to 4 are null (features) or "<5" (reports) for gis; the
    admin's own view of the same data says which counts are small."""
    gis = bearer(grant(hand.url, "hand-gis", "gis", ("420111",)))
    admin = bearer(hand_tokens["admin"])

    def features(headers) -> dict[str, dict[str, Any]]:
        response = hand_client.get("/collections/communities/items", headers=headers)
        assert response.status_code == 200
        return {f["id"]: f["properties"] for f in response.json()["features"]}

    seen, truth = features(gis), features(admin)
    small = 0
    for code, props in truth.items():
        for name in ("residents", "residents_on_map"):
            if 1 <= (props[name] or 0) <= 4:
                small += 1
                assert seen[code][name] is None, (code, name)
            else:
                assert seen[code][name] == props[name], (code, name)
    assert small, "the hand bundle has a community with 1 to 4 residents"
    rows = hand_client.get("/reports/coverage", headers=gis).json()
    admin_rows = {r["code"]: r for r in hand_client.get("/reports/coverage", headers=admin).json()}
    for row in rows:
        if 1 <= admin_rows[row["code"]]["residents"] <= 4:
            assert row["residents"] == "<5"


def test_a_cli_export_is_audited(cli, tmp_path: Path):
    assert cli("export", "buildings", tmp_path / "b.csv").exit_code == 0
    result = cli("audit", "--action", "export", "--format", "json")
    (row,) = json.loads(result.stdout)
    assert row["user"].startswith("cli:") and row["detail"]["collection"] == "buildings"


# ---------------------------------------------------------------- identity numbers


NUMBERS = [r[0] for r in RESIDENTS]


def clear_forms(number: str) -> tuple[str, ...]:
    """The number, its UTF-8 bytes in hex (as a bytea prints) and its bare SHA-256."""
    return (number, number.encode().hex(), hashlib.sha256(number.encode()).hexdigest())


def scan_database(engine: Engine) -> list[tuple[str, str]]:
    """(table, form) for every clear form of a fixture number found in any table's rows."""
    found = []
    with engine.connect() as conn:
        tables = conn.scalars(
            text(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1"
            )
        ).all()
        assert {"audit_log", "api_token", "account", "person"} <= set(tables)
        for table in tables:
            for (row,) in conn.execute(text(f'SELECT t::text FROM "{table}" t')):
                for number in NUMBERS:
                    found += [(table, form) for form in clear_forms(number) if form in row]
    return found


def test_no_identity_number_in_clear_anywhere_after_api_use(hand, hand_tokens, hand_client):
    for token in hand_tokens.values():
        headers = bearer(token)
        hand_client.get("/collections/buildings/items", headers=headers)
        hand_client.get("/reports/coverage", headers=headers)
        hand_client.get("/reports/gaps", headers=headers)
        hand_client.get("/exports/buildings.csv", headers=headers)
        hand_client.get("/reviews", headers=headers)
        hand_client.post("/addresses/match", json={"addresses": NUMBERS[:2]}, headers=headers)
    assert scan_database(hand.engine) == []


def test_an_identity_number_typed_as_the_account_name_is_not_kept(hand, hand_client):
    """People type their identity number where the account name goes; the failed sign-in
    is audited, and must not keep the number in clear (nor show it in `registry audit`)."""
    number = id_number(99)  # a valid number of no fixture resident: the scan above stays clean
    response = json_login(hand_client, number, "whatever")
    assert response.status_code == 401, f"{SIGN_IN}: {response.status_code}"
    with hand.engine.connect() as conn:
        rows = conn.scalars(text("SELECT t::text FROM audit_log t")).all()
    leaks = [form for form in clear_forms(number) for row in rows if form in row]
    assert leaks == [], (
        "a failed sign-in stores the typed account name verbatim in audit_log.user_name "
        "(api/database.py sign_in: user_name=name[:64]); an identity number typed there "
        "is kept in clear"
    )


# ---------------------------------------------------------------- masking in the CLI


def bad_number() -> str:
    """The first fixture number with a wrong check character."""
    good = NUMBERS[0]
    return good[:17] + ("1" if good[17] != "1" else "2")


def bundle_with_a_bad_number(tmp_path: Path) -> tuple[Path, str]:
    bundle = write_hand_bundle(tmp_path / "hand")
    bad = bad_number()
    rows = [(bad, *RESIDENTS[0][1:]), *RESIDENTS[1:]]
    write_csv(
        bundle / "residents.csv",
        ["id_number", "name", "community_code", "room_id", "category", "moved_in", "moved_out"],
        rows,
    )
    return bundle, bad


ANY_NUMBER = re.compile(r"\d{17}[\dXx]")


def test_a_bad_identity_number_is_never_printed_in_clear(cli, tmp_path: Path):
    bundle, bad = bundle_with_a_bad_number(tmp_path)
    refused = cli("load", bundle)
    assert refused.exit_code == 1
    shown = refused.output + refused.stderr
    assert "id_number" in shown  # the error is there, naming the field
    assert bad not in shown and bad[:17] not in shown
    assert not ANY_NUMBER.search(shown), ANY_NUMBER.search(shown)

    rejects = tmp_path / "rejects.csv"
    partial = cli("load", bundle, "--partial", "--rejects", rejects)
    assert partial.exit_code == 0, partial.output
    shown = partial.output + partial.stderr
    assert bad not in shown and not ANY_NUMBER.search(shown)
    written = rejects.read_text(encoding="utf-8")
    assert bad not in written and bad[:17] not in written
    assert mask(bad) in written  # **************nnnn: the row can still be found
    assert not ANY_NUMBER.search(written)


def test_registry_audit_never_shows_identity_numbers(cli, registry_env, tmp_path: Path):
    assert cli("load", write_hand_bundle(tmp_path / "hand")).exit_code == 0
    url = registry_env["DATABASE_URL"]
    token = grant(url, "auditee", "station", ("420111002",))
    with TestClient(
        create_app(api_settings_for(url, tmp_path / "api")),
        raise_server_exceptions=False,
        client=("198.51.100.40", 40000),
    ) as c:
        c.get("/exports/buildings.csv", headers=bearer(token))
        c.post("/addresses/match", json={"addresses": NUMBERS[:3]}, headers=bearer(token))
    for args in ((), ("--format", "json")):
        result = cli("audit", *args)
        assert result.exit_code == 0, result.output
        for number in NUMBERS:
            for form in clear_forms(number):
                assert form not in result.output


# ---------------------------------------------------------------- registry audit filters


def test_registry_audit_filters_by_user_date_and_action(cli, registry_env):
    engine = make_engine(registry_env["DATABASE_URL"])
    rows = [
        ("alice", "login", "2026-01-10T09:00:00+08:00"),
        ("alice", "export", "2026-03-01T09:00:00+08:00"),
        ("alice", "export", "2025-12-01T09:00:00+08:00"),
        ("alice", "login", "2026-03-02T09:00:00+08:00"),
        ("bob", "export", "2026-03-02T09:00:00+08:00"),
    ]
    with engine.begin() as conn:
        ids = [
            conn.execute(
                text(
                    "INSERT INTO audit_log (at, user_name, role, client_ip, action) "
                    "VALUES (:at, :u, 'officer', '203.0.113.9', :a) RETURNING id"
                ),
                {"at": dt.datetime.fromisoformat(at), "u": user, "a": action},
            ).scalar_one()
            for user, action, at in rows
        ]
    engine.dispose()
    result = cli(
        "audit", "--user", "alice", "--since", "2026-02-01", "--action", "export",
        "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    records = json.loads(result.stdout)
    assert [r["id"] for r in records] == [ids[1]]
    assert (records[0]["user"], records[0]["action"], records[0]["client_ip"]) == (
        "alice",
        "export",
        "203.0.113.9",
    )
    table = cli("audit", "--user", "alice", "--action", "login")
    lines = [line.split() for line in table.stdout.splitlines() if line.strip()]
    # at, user, role, address, action, ...
    assert [(f[1], f[3], f[4]) for f in lines] == [("alice", "203.0.113.9", "login")] * 2
    assert cli("audit", "--action", "drop table").exit_code == 1
    assert cli("audit", "--since", "yesterday").exit_code == 1


# ---------------------------------------------------------------- tokens


def create_token(cli, name: str, *args: str) -> str:
    result = cli("token", "create", name, *args)
    assert result.exit_code == 0, result.output
    (secret,) = [w for w in result.stdout.split() if w.startswith(auth.TOKEN_PREFIX)]
    return secret


@pytest.fixture
def token_api(registry_env, tmp_path: Path) -> Iterator[TestClient]:
    """The API over the CLI's database; every request looks its token up afresh."""
    settings = api_settings_for(registry_env["DATABASE_URL"], tmp_path / "api")
    with TestClient(create_app(settings), client=("198.51.100.50", 1)) as c:
        yield c


def status_with(c: TestClient, token: str) -> int:
    return c.get("/collections", headers=bearer(token)).status_code


@pytest.fixture
def account(cli) -> str:
    result = cli("users", "add", "tokened", "--role", "officer", "--jurisdiction", "420111002001")
    assert result.exit_code == 0, result.output
    return "tokened"


def test_a_token_with_an_expiry_works_until_it_expires(cli, registry_env, account, token_api):
    secret = create_token(cli, account, "--expires", "1m")
    engine = make_engine(registry_env["DATABASE_URL"])
    with engine.connect() as conn:
        left = conn.scalar(text("SELECT expires_at - now() FROM api_token"))
    assert dt.timedelta(seconds=30) < left <= dt.timedelta(minutes=1)
    assert status_with(token_api, secret) == 200
    with engine.begin() as conn:
        conn.execute(text("UPDATE api_token SET expires_at = now() - interval '1 second'"))
    engine.dispose()
    assert status_with(token_api, secret) == 401
    assert "expired" in cli("token", "list").stdout


def test_a_revoked_token_is_refused(cli, registry_env, account, token_api):
    kept, revoked = create_token(cli, account), create_token(cli, account)
    engine = make_engine(registry_env["DATABASE_URL"])
    with engine.connect() as conn:
        token_id = conn.scalar(
            text("SELECT id FROM api_token WHERE digest = :d"), {"d": auth.digest(revoked)}
        )
    engine.dispose()
    assert status_with(token_api, revoked) == 200
    assert cli("token", "revoke", str(token_id)).exit_code == 0
    assert status_with(token_api, revoked) == 401
    assert status_with(token_api, kept) == 200  # only that one


def test_a_disabled_account_is_refused(cli, registry_env, account, token_api):
    secret = create_token(cli, account)
    assert status_with(token_api, secret) == 200
    assert cli("users", "disable", account).exit_code == 0
    assert status_with(token_api, secret) == 401
    # re-enabling by hand would not revive it: disabling revoked every token
    engine = make_engine(registry_env["DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text("UPDATE account SET disabled_at = NULL"))
    engine.dispose()
    assert status_with(token_api, secret) == 401


def test_a_token_is_shown_once_and_stored_only_as_a_digest(cli, registry_env, account):
    secrets = [create_token(cli, account) for _ in range(2)]
    listing = cli("token", "list")
    assert listing.exit_code == 0
    assert len([line for line in listing.stdout.splitlines() if account in line]) == 2
    engine = make_engine(registry_env["DATABASE_URL"])
    with engine.connect() as conn:
        rows = conn.scalars(text("SELECT t::text FROM api_token t")).all()
        digests = set(conn.scalars(text("SELECT digest FROM api_token")))
    engine.dispose()
    assert digests == {auth.digest(s) for s in secrets}
    for secret in secrets:
        body = secret.removeprefix(auth.TOKEN_PREFIX)
        assert body not in listing.stdout
        assert all(body not in row and body.encode().hex() not in row for row in rows)


def test_unknown_and_malformed_credentials_are_401(client):
    for header in (
        "Bearer rgt_not-a-real-token",
        "Bearer ",
        "Basic dXNlcjpwYXNz",
        "Bearer ' OR 1=1 --",
        "bearer\trgt_x",
    ):
        response = client.get("/collections", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert is_problem(response)


# ================================================================ SQL injection

PAYLOADS = [
    "' OR 1=1 --",
    "'; DROP TABLE building; --",
    "1) OR (1=1",
    "%27",
    "\u2019 OR \u20181\u2019=\u20181",  # typographic quotes
    "\uff07 OR \uff071\uff07=\uff071",  # fullwidth apostrophes
    "420111002005\x00' OR '1'='1",
    "420111002005' UNION SELECT id FROM building --",
    "set_config('registry.role','admin',false)",
    "0; SELECT set_config('registry.role', 'admin', false)",
    "' || (SELECT set_config('registry.scope', '4', false)) || '",
    "\\'; TRUNCATE audit_log; --",
]

# filters an officer might try to see past the jurisdiction: each must return no feature
# outside it (or be refused)
ESCAPING_FILTERS = [
    "community_code <> '420111002005'",
    "community_code = '420111002009' OR 1=1",
    "community_code LIKE '%'",
    "community_code = '' OR '1'='1'",
    "name = 'x'') OR (''1''=''1'",
    "community_code IN ('420111002009', '420111002005')",
    "NOT (community_code = '420111002005')",
    "S_INTERSECTS(geometry, POLYGON((-180 -90, 180 -90, 180 90, -180 90, -180 -90)))",
    "set_config('registry.role', 'admin', true) = 'admin'",
    "community_code = set_config('registry.scope', '4', true)",
]

ITEM_PARAMS = [
    "bbox", "filter", "community_code", "name", "status", "limit", "crs", "bbox-crs",
    "filter-crs", "filter-lang", "datetime", "after", "sortby", "f",
]  # fmt: skip


@pytest.fixture(scope="module")
def row_counts(owner: Engine) -> dict[str, int]:
    return counts_now(owner)


COUNTED = ("building", "address", "room", "residence", "person", "community", "footprint")


def counts_now(owner: Engine) -> dict[str, int]:
    with owner.connect() as conn:
        return {t: conn.scalar(text(f"SELECT count(*) FROM {t}")) for t in COUNTED}


def unsafe(response, officer_ids: set[str] | None = None) -> list[str]:
    """What is wrong with an answer to a hostile request: it must be 2xx, or a 4xx problem
    with no internals, never a 500; a features page holds only the officer's rows."""
    where = f"{response.request.method} {response.request.url}"
    if response.status_code >= 500:
        return [f"{where} -> {response.status_code}"]
    if response.status_code >= 400:
        if not is_problem(response):
            return [f"{where} -> {response.status_code} is not problem+json"]
        if "Traceback" in response.text or "psycopg" in response.text:
            return [f"{where} -> internals in the problem"]
        return []
    if officer_ids is not None and "geo+json" in response.headers.get("content-type", ""):
        body = response.json()
        features = body.get("features", [body] if body.get("type") == "Feature" else [])
        extra = {f["id"] for f in features} - officer_ids
        if extra:
            return [f"{where} -> {len(extra)} features outside the jurisdiction"]
    return []


@pytest.mark.parametrize("param", ITEM_PARAMS)
@pytest.mark.parametrize("collection", ["buildings", "addresses"])
def test_injection_in_item_query_parameters(client, tokens, owner, row_counts, collection, param):
    allowed = (buildings_in if collection == "buildings" else addresses_in)(owner, OFFICER_SCOPE)
    headers = bearer(tokens["officer"])
    problems = []
    for payload in PAYLOADS:
        response = client.get(
            f"/collections/{collection}/items", params={param: payload}, headers=headers
        )
        problems += unsafe(response, allowed)
    assert problems == []
    assert counts_now(owner) == row_counts


@pytest.mark.parametrize("where", ESCAPING_FILTERS)
def test_a_filter_cannot_reach_past_the_jurisdiction(client, tokens, owner, where):
    allowed = buildings_in(owner, OFFICER_SCOPE)
    response = client.get(
        "/collections/buildings/items",
        params={"filter": where, "limit": 10000},
        headers=bearer(tokens["officer"]),
    )
    assert unsafe(response, allowed) == []


def test_a_filter_works_inside_the_jurisdiction(client, tokens, owner):
    """The control: filters are applied, so the empty answers above mean something."""
    response = client.get(
        "/collections/buildings/items",
        params={"filter": f"community_code = '{OFFICER_SCOPE}'", "limit": 10000},
        headers=bearer(tokens["officer"]),
    )
    assert response.status_code == 200
    assert {f["id"] for f in response.json()["features"]} == buildings_in(owner, OFFICER_SCOPE)


def test_injection_in_path_parameters(client, tokens, owner, row_counts):
    allowed = buildings_in(owner, OFFICER_SCOPE)
    headers = bearer(tokens["officer"])
    problems = []
    for payload in PAYLOADS:
        quoted = quote(payload, safe="")  # one path segment; the server decodes it
        for path in (
            f"/collections/buildings/items/{quoted}",
            f"/collections/{quoted}/items",
            f"/collections/{quoted}",
            f"/collections/{quoted}/queryables",
            f"/tiles/{quoted}/14/13000/6000.mvt",
            f"/tiles/buildings,{quoted}/14/13000/6000.mvt",
            f"/tiles/buildings/{quoted}/1/1.mvt",
            f"/tiles/buildings/14/{quoted}/1.mvt",
            f"/tiles/buildings/14/1/{quoted}.mvt",
            f"/tiles/{quoted}.json",
            f"/collections/buildings/tiles/{quoted}",
            f"/tileMatrixSets/{quoted}",
            f"/exports/{quoted}.csv",
            f"/exports/buildings.{quoted}",
            f"/reviews/{quoted}/accept",
        ):
            method = "POST" if path.endswith("/accept") else "GET"
            problems += unsafe(client.request(method, path, headers=headers, json={}), allowed)
    assert problems == [], (
        "hostile path parameters must be 4xx problems; a NUL byte in featureId reaches "
        "psycopg, whose client-side DataError (no SQLSTATE) api/problems.py on_database "
        "re-raises as a 500"
    )
    assert counts_now(owner) == row_counts


def test_injection_in_report_and_export_parameters(client, tokens, owner, row_counts):
    headers = bearer(tokens["officer"])
    problems = []
    for payload in PAYLOADS:
        for path, param in (
            ("/reports/coverage", "code"),
            ("/reports/coverage", "as_of"),
            ("/reports/coverage", "level"),
            ("/reports/coverage", "rate"),
            ("/reports/coverage", "f"),
            ("/reports/gaps", "code"),
            ("/reports/gaps", "as_of"),
            ("/reports/gaps", "limit"),
            ("/exports/buildings.csv", "code"),
            ("/exports/buildings.gpkg", "crs"),
            ("/reviews", "status"),
            ("/reviews", "after"),
            ("/reviews", "limit"),
            ("/tiles/buildings.json", "f"),
        ):
            response = client.get(path, params={param: payload}, headers=headers)
            problems += unsafe(response)
            if response.status_code == 200 and path == "/reports/coverage":
                assert {r["code"] for r in response.json()} <= {OFFICER_SCOPE}
    assert problems == []
    assert counts_now(owner) == row_counts


def test_injection_in_the_match_body(client, tokens, owner, row_counts):
    headers = bearer(tokens["officer"])
    allowed = addresses_in(owner, OFFICER_SCOPE)
    response = client.post("/addresses/match", json={"addresses": PAYLOADS}, headers=headers)
    problems = unsafe(response)
    if response.status_code == 200:
        for result in response.json()["results"]:
            proposed = {result["address_code"], *(c["address_code"] for c in result["candidates"])}
            assert proposed - {None} <= allowed
    for body in (
        {"addresses": "' OR 1=1 --"},
        {"addresses": [{"$ne": None}]},
        {"addresses": ["x"], "by": "'; DROP TABLE building; --"},
        ["' OR 1=1 --"],
        "'; DROP TABLE building; --",
    ):
        problems += unsafe(client.post("/addresses/match", json=body, headers=headers))
    for raw in (b"{'addresses': [1]}", b"\x00\xff", b'{"addresses": ["\\u0000"]}'):
        problems += unsafe(
            client.post(
                "/addresses/match",
                content=raw,
                headers={**headers, "Content-Type": "application/json"},
            )
        )
    assert problems == []
    assert counts_now(owner) == row_counts


def test_injection_in_the_login_form(hand):
    problems = []
    with TestClient(
        hand.app(), raise_server_exceptions=False, client=("198.51.100.60", 40000)
    ) as c:
        for payload in PAYLOADS:
            for field in ("name", "password"):
                data = {"name": "hand-admin", "password": "x", field: payload}
                response = c.post("/login", data=data, headers={"Accept": "application/json"})
                if response.status_code not in (400, 401, 429):
                    problems.append(f"{field}={payload!r} -> {response.status_code}")
                assert "registry_session" not in response.cookies
    assert problems == [], (
        "a NUL byte in the account name reaches psycopg (registry_login_failures and the "
        "login_failed audit row in api/database.py sign_in), whose client-side DataError "
        "api/problems.py on_database re-raises as a 500"
    )


def test_after_all_injections_the_officer_still_sees_only_the_community(client, tokens, owner):
    response = client.get(
        "/collections/buildings/items",
        params={"limit": 10000},
        headers=bearer(tokens["officer"]),
    )
    assert {f["id"] for f in response.json()["features"]} == buildings_in(owner, OFFICER_SCOPE)
    with owner.connect() as conn:  # and the audit log is whole
        assert conn.execute(text("SELECT to_regclass('audit_log')")).scalar() is not None


# ================================================================ headers and limits


HTML_PAGES = ["/?f=html", "/login", "/reports/coverage?f=html", "/collections?f=html"]


@pytest.mark.parametrize("path", HTML_PAGES)
def test_html_pages_carry_security_headers(client, tokens, path):
    response = client.get(path, headers=bearer(tokens["officer"]))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    policy = response.headers.get("content-security-policy")
    assert policy, f"{path}: no Content-Security-Policy"
    directives = {part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()}
    scripts = directives.get("script-src", directives.get("default-src"))
    assert scripts is not None and "'unsafe-inline'" not in scripts, policy
    assert "'unsafe-eval'" not in scripts
    assert directives.get("frame-ancestors") == ["'none'"] or (
        response.headers.get("x-frame-options", "").upper() == "DENY"
    )
    assert response.headers.get("x-content-type-options") == "nosniff"
    assert response.headers.get("referrer-policy")


def test_json_and_problems_carry_nosniff(client, tokens):
    for response in (
        client.get("/collections", headers=bearer(tokens["officer"])),
        client.get("/collections"),
        client.get("/no-such-page"),
    ):
        assert response.headers.get("x-content-type-options") == "nosniff"


def test_the_report_map_runs_only_the_scripts_it_names(client, tokens):
    """The folium page inlines scripts: the policy must allow exactly those, by hash."""
    response = client.get("/reports/coverage?f=html", headers=bearer(tokens["officer"]))
    policy = response.headers["content-security-policy"]
    inline = re.findall(r"<script\b[^>]*>(.*?)</script>", response.text, re.DOTALL | re.I)
    for body in (b for b in inline if b.strip()):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy


@pytest.fixture(scope="module")
def small_body_client(hand: Hand) -> Iterator[TestClient]:
    with TestClient(
        hand.app(max_body_kb=1), raise_server_exceptions=False, client=("198.51.100.70", 1)
    ) as c:
        yield c


def test_a_body_over_the_limit_is_413(small_body_client, hand_tokens):
    headers = bearer(hand_tokens["officer-1"])
    small = small_body_client.post(
        "/addresses/match", json={"addresses": ["珞喻路1号"]}, headers=headers
    )
    assert small.status_code == 200
    big = small_body_client.post(
        "/addresses/match", json={"addresses": ["珞喻路1号" * 20] * 40}, headers=headers
    )
    assert big.status_code == 413, big.text[:200]
    assert is_problem(big)


def test_a_streamed_body_over_the_limit_is_413(small_body_client, hand_tokens):
    """No Content-Length to trust: the limit counts what arrives."""

    def chunks() -> Iterator[bytes]:
        yield b'{"addresses": ['
        for _ in range(200):
            yield b'"\xe7\x8f\x9e\xe5\x96\xbb\xe8\xb7\xaf1\xe5\x8f\xb7",'
        yield b'"x"]}'

    response = small_body_client.post(
        "/addresses/match",
        content=chunks(),
        headers={**bearer(hand_tokens["officer-1"]), "Content-Type": "application/json"},
    )
    assert response.status_code == 413, (
        "a chunked body over max_body_kb is refused, but as 400 'error parsing the body': "
        "api/security.py LimitBody raises BodyTooLarge inside receive(), and FastAPI's body "
        f"parser turns any exception there into a 400. Got: {response.text[:200]}"
    )
    assert is_problem(response)


def test_a_login_body_over_the_limit_is_413(small_body_client):
    response = small_body_client.post(
        "/login", data={"name": "x", "password": "p" * 4000}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 413


def test_an_unexpected_error_shows_no_traceback(client, tokens, monkeypatch):
    secret_text = "SELECT secret FROM somewhere WHERE id_number = '42011119800101001X'"

    def boom(*args, **kwargs):
        raise RuntimeError(secret_text)

    monkeypatch.setattr(api.reports, "coverage_data", boom)
    response = client.get("/reports/coverage", headers=bearer(tokens["officer"]))
    assert response.status_code == 500
    assert is_problem(response)
    assert "Traceback" not in response.text
    assert secret_text not in response.text and "RuntimeError" not in response.text
    assert 'File "' not in response.text


def test_client_errors_show_no_internals(client, tokens):
    headers = bearer(tokens["officer"])
    for path in (
        "/collections/buildings/items?filter=((((",
        "/collections/buildings/items?bbox=a,b,c,d",
        "/collections/buildings/items?datetime=yesterday",
        "/collections/nope/items",
        "/reports/coverage?as_of=2026-02-30",
    ):
        response = client.get(path, headers=headers)
        assert 400 <= response.status_code < 500, path
        assert "Traceback" not in response.text and 'File "' not in response.text
        assert "psycopg" not in response.text and "sqlalchemy" not in response.text.lower()
