"""Field verification over HTTP (docs/web-map.md): states, ETag/If-Match, concurrent edits,
distance flags, photos, roles, demolition, new buildings, progress, the work list, and the
append-only history, against a real PostGIS loaded with the hand-drawn bundle.

Every expected number is worked out by hand from tests/hand_bundle.py (a local frame in
metres, x east and y north from 114.40 E 30.50 N):

  甲社区 C1 (420111002001, x 0..1000 m, y 0..1000 m)
    B1 100..140 x 100..140    plate A1 at (120, 95), 5 m south: labelled; rooms R1 R2
    B2 200..240 x 100..140    plate A2 at (220, 340), 200 m north: not labelled
    B3 300..318 x 100..140    plate A3 at (309, 175), 35 m north: not labelled
    B4 322..340 x 100..140    A4 has no door plate: not labelled
    B5 400..440 x 100..140    demolished: does not count
    B6 no outline             plate A6 at (700, 700)
    B7 500..540 x 100..140    under construction (counts); plate A7 inside: labelled
    B8 1100..1140 x 100..140  drawn inside C2 but registered to C1; plate 25 m: labelled
    footprints F1 (=B1, covered), F2 (B2 covers 67 %), F3 (B3+B4 90 %), F5 (only B5: 0 %),
    F7 500..540 x 100..200 (B7 covers 40 %), F8 600..640 x 100..140 (nothing)
    => buildings 7, on the map 6, footprints 6, covered 3, labelled 3
  乙社区 C2 (420111002002, x 1000..2000 m): B21 (labelled), F9 (covered by B8) and F21:
    buildings 1, on the map 1, footprints 2, covered 2, labelled 1, residents 2 placed 2
  丙社区 C3 (420111003001): no boundary, nothing in it: every rate null

Residents are counted as of today (the API's date): 丙 in R2 moves out on 2026-12-31, so
before that day C1 has 5 active residents, 2 of them placed (both in B1), else 4 and 1.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import random
import re
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import httpx
import pytest
import shapely
from fastapi.testclient import TestClient
from PIL import Image
from shapely import Point
from shapely.geometry import mapping
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import DBAPIError

from api import create_app
from registry.bundle.load import load_bundle
from registry.db import make_engine, transaction
from registry.vault import load_vault

from conftest import API_PASSWORD, LiveServer, api_settings_for, bearer, grant
from hand_bundle import at, lonlat, square, write_hand_bundle

C1, C2, C3 = "420111002001", "420111002002", "420111003001"
STREET = "420111002"  # 关山街道: C1 and C2
PROBLEM = "application/problem+json"
ACCOUNTS = {
    # name: (role, jurisdiction)
    "li": ("officer", (C1,)),
    "wang": ("officer", (C1,)),
    "zhao": ("officer", (C2,)),
    "station": ("station", (STREET,)),
    "analyst": ("analyst", (STREET,)),
    "gis": ("gis", (STREET,)),
    "admin": ("admin", ()),
}
# 丙 (R2 of B1) is active until 2026-12-31 (moved-out later than today)
BING_ACTIVE = dt.date.today() < dt.date(2026, 12, 31)
C1_RESIDENTS = 5 if BING_ACTIVE else 4
C1_PLACED = 2 if BING_ACTIVE else 1  # 甲 (R1) and 丙 (R2), both in B1


# ---------------------------------------------------------------- geometry helpers


def outline(x0: float, y0: float, x1: float, y1: float) -> dict[str, Any]:
    """A GeoJSON Polygon (lon/lat) of the local-metre rectangle x0..x1 x y0..y1."""
    return json.loads(json.dumps(mapping(square(x0, y0, x1, y1))))


def position(x: float, y: float, accuracy: float | None = None) -> dict[str, float]:
    p = at(x, y)
    found = {"lon": p.x, "lat": p.y}
    if accuracy is not None:
        found["accuracy"] = accuracy
    return found


def same_shape(geojson: dict[str, Any], expected: shapely.Geometry, tol: float = 1e-7) -> bool:
    """True if ``geojson`` is ``expected`` to ``tol`` degrees (~1 cm), whatever the vertex
    order or Polygon/MultiPolygon wrapping."""
    return shapely.hausdorff_distance(shapely.geometry.shape(geojson), expected) < tol


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def hand_db(db_url: str, sample_key_file, tmp_path) -> str:
    """A fresh database with the hand-drawn bundle loaded (as the owner)."""
    engine = make_engine(db_url)
    try:
        with transaction(engine) as session:
            report = load_bundle(
                session, write_hand_bundle(tmp_path / "hand"), load_vault(sample_key_file)
            )
            assert report.errors == []
    finally:
        engine.dispose()
    return db_url


@pytest.fixture
def tokens(hand_db: str) -> dict[str, str]:
    return {
        name: grant(hand_db, name, role, jurisdiction)
        for name, (role, jurisdiction) in ACCOUNTS.items()
    }


class Api:
    """A TestClient that signs each request in as one of ACCOUNTS."""

    def __init__(self, client: TestClient, tokens: dict[str, str]) -> None:
        self.client, self.tokens = client, tokens

    def __call__(
        self,
        method: str,
        path: str,
        who: str = "li",
        if_match: str | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        sent = {**bearer(self.tokens[who]), **(headers or {})}
        if if_match is not None:
            sent["If-Match"] = if_match
        return self.client.request(method, path, headers=sent, **kwargs)

    def get(self, path: str, who: str = "li", **kwargs: Any) -> httpx.Response:
        return self("GET", path, who, **kwargs)

    def post(self, path: str, who: str = "li", **kwargs: Any) -> httpx.Response:
        return self("POST", path, who, **kwargs)

    def put(self, path: str, who: str = "li", **kwargs: Any) -> httpx.Response:
        return self("PUT", path, who, **kwargs)

    def etag(self, building_id: str, who: str = "li") -> str:
        response = self.get(f"/buildings/{building_id}", who)
        assert response.status_code == 200, response.text
        return response.headers["etag"]

    def building(self, building_id: str, who: str = "li") -> dict[str, Any]:
        response = self.get(f"/buildings/{building_id}", who)
        assert response.status_code == 200, response.text
        return response.json()

    def progress(self, code: str = C1, who: str = "li") -> dict[str, Any]:
        response = self.get(f"/communities/{code}/progress", who)
        assert response.status_code == 200, response.text
        return response.json()

    def worklist(self, code: str = C1, who: str = "li", **params: Any) -> list[dict[str, Any]]:
        response = self.get(f"/communities/{code}/worklist", who, params=params)
        assert response.status_code == 200, response.text
        return response.json()["items"]

    def verify(
        self, building_id: str, state: str = "verified", who: str = "li", **body: Any
    ) -> httpx.Response:
        if_match = body.pop("if_match", None)
        return self.post(
            f"/buildings/{building_id}/verifications",
            who,
            if_match=if_match,
            json={"state": state, **body},
        )


@pytest.fixture
def make_api(hand_db: str, tokens: dict[str, str], sample_key_file, tmp_path) -> Iterator[Any]:
    """Clients of apps over the hand database, with settings ``overrides``; a 500 comes
    back as a response (the test then fails on its status), not as an exception."""
    stack = ExitStack()

    def make(**overrides: Any) -> Api:
        settings = api_settings_for(hand_db, tmp_path, key_file=sample_key_file, **overrides)
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        return Api(stack.enter_context(client), tokens)

    with stack:
        yield make


@pytest.fixture
def api(make_api) -> Api:
    return make_api()


@pytest.fixture
def sql(hand_db: str) -> Iterator[Any]:
    """Statements as the database owner (no row-level security), each in its own
    transaction: the truth the API is compared with, and the bulk loader's hand."""
    engine = create_engine(hand_db)

    def run(statement: str, **params: Any) -> list[Any]:
        with engine.begin() as conn:
            result = conn.execute(text(statement), params)
            return result.all() if result.returns_rows else []

    yield run
    engine.dispose()


def history_rows(sql, building_id: str) -> list[Any]:
    return sql(
        "SELECT id, action, account, recorded_at, note, ST_X(position) AS lon, "
        "ST_Y(position) AS lat, accuracy_m, distance_m, far, photo_id, old_values, "
        "new_values, building_version FROM building_verification WHERE building_id = :b "
        "ORDER BY id",
        b=building_id,
    )


def row_count(sql, table: str) -> int:
    return sql(f"SELECT count(*) AS n FROM {table}")[0].n


def building_row(sql, building_id: str) -> Any:
    (row,) = sql(
        "SELECT id, version, status, verification, verified_at, verified_by, floors, "
        "community_code, ST_AsText(footprint) AS wkt FROM building WHERE id = :b",
        b=building_id,
    )
    return row


def footprint_is(sql, building_id: str, expected: shapely.Geometry) -> bool:
    wkt = building_row(sql, building_id).wkt
    return wkt is not None and shapely.hausdorff_distance(shapely.from_wkt(wkt), expected) < 1e-7


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The problem+json body of ``response``, which must have ``status``."""
    assert response.status_code == status, f"{response.status_code} {response.text}"
    assert response.headers["content-type"].startswith(PROBLEM), response.headers
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def counts(progress: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "buildings",
        "buildings_on_map",
        "footprints",
        "footprints_covered",
        "buildings_labeled",
        "buildings_verified",
    )
    return {k: progress[k] for k in keys}


def rates_counts(row: dict[str, Any]) -> tuple:
    return (
        row["buildings"],
        row["buildings_on_map"],
        row["footprints"],
        row["footprints_covered"],
        row["buildings_labeled"],
    )


def multipart(
    fields: dict[str, str],
    photo: tuple[str, bytes, str] | None = None,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Request arguments for a multipart/form-data body with ``fields`` and an optional
    ``photo`` (filename, bytes, media type), as the map page's form sends it."""
    boundary = "----registry-test-boundary-7f3a"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + value.encode()
        + b"\r\n"
        for name, value in fields.items()
    ]
    if photo is not None:
        filename, content, media_type = photo
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; '
            f'filename="{filename}"\r\nContent-Type: {media_type}\r\n\r\n'.encode()
            + content
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    content_type = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return {"content": body, "headers": {**content_type, **(headers or {})}}


def jpeg(width: int = 64, height: int = 48, seed: int = 1, quality: int = 90) -> bytes:
    """A JPEG of random noise (noise does not compress: the size grows with the area)."""
    rng = random.Random(seed)
    image = Image.frombytes("RGB", (width, height), rng.randbytes(width * height * 3))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def image_bytes(fmt: str, size: tuple[int, int] = (30, 20), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, "teal").save(buffer, fmt)
    return buffer.getvalue()


# ---------------------------------------------------------------- states and history


def test_each_state_is_recorded_with_account_time_old_and_new(api, sql):
    (t0,) = sql("SELECT now() AS now")
    steps = [  # (account, state): each finds B1 in the state the step before left it
        ("li", "verified"),
        ("wang", "corrected"),
        ("li", "disputed"),
        ("wang", "not_found"),
    ]
    previous = "unverified"
    for number, (who, state) in enumerate(steps):
        response = api.verify("B1", state, who, note=f"第{number + 1}次 {state}")
        assert response.status_code == 201, response.text
        body = response.json()
        entry = body["verification"]
        assert entry["action"] == state and entry["account"] == who
        assert entry["old"] == {"verification": previous}
        assert entry["new"] == {"verification": state}
        assert entry["version"] == number + 2  # v1 as loaded, one bump per write
        assert body["building"]["verification"] == state
        assert body["building"]["verified_by"] == who
        assert body["building"]["status"] == "in_use"  # not_found only proposes demolition
        previous = state
    (t1,) = sql("SELECT now() AS now")

    rows = history_rows(sql, "B1")
    assert [(r.account, r.action) for r in rows] == steps
    assert [r.building_version for r in rows] == [2, 3, 4, 5]
    assert [r.old_values for r in rows] == [
        {"verification": "unverified"},
        {"verification": "verified"},
        {"verification": "corrected"},
        {"verification": "disputed"},
    ]
    assert [r.new_values["verification"] for r in rows] == [s for _, s in steps]
    times = [r.recorded_at for r in rows]
    assert t0.now <= times[0] and times == sorted(times) and times[-1] <= t1.now
    assert [r.note for r in rows] == [f"第{n + 1}次 {s}" for n, (_, s) in enumerate(steps)]

    row = building_row(sql, "B1")
    assert (row.verification, row.verified_by, row.version, row.status) == (
        "not_found",
        "wang",
        5,
        "in_use",
    )
    assert row.verified_at == times[-1]  # the same transaction's now()

    detail = api.building("B1", "wang")
    history = detail["history"]
    # newest first, each as stored
    assert [h["id"] for h in history] == [r.id for r in reversed(rows)]
    assert [(h["action"], h["account"], h["version"]) for h in history] == [
        (r.action, r.account, r.building_version) for r in reversed(rows)
    ]
    assert [(h["old"], h["new"]) for h in history] == [
        (r.old_values, r.new_values) for r in reversed(rows)
    ]
    assert dt.datetime.fromisoformat(detail["verified_at"]) == times[-1]
    assert dt.datetime.fromisoformat(history[0]["recorded_at"]) == times[-1]


def test_every_field_action_is_audited_with_its_history_row(api, sql):
    """Each write appends one ``verification`` audit row in its own transaction, naming
    the building and the history row; a refused write (409) audits nothing."""
    first = api.verify("B1", "verified", "li").json()["verification"]
    problem(api.verify("B1", "disputed", "li", if_match='"v1"'), 409)
    second = api.verify("B2", "not_found", "li").json()["verification"]
    rows = sql(
        "SELECT user_name, role, target_ids, detail FROM audit_log "
        "WHERE action = 'verification' ORDER BY id"
    )
    assert [(r.user_name, r.role, r.target_ids) for r in rows] == [
        ("li", "officer", ["B1"]),
        ("li", "officer", ["B2"]),
    ]
    assert [r.detail for r in rows] == [
        {"action": "verified", "history_id": first["id"]},
        {"action": "not_found", "history_id": second["id"]},
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"state": "demolished"},  # a status, not a verification state
        {"state": "unverified"},  # nobody records "unverified"
        {"state": "Verified"},
        {"state": None},
        {},
        {"state": ["verified"]},
    ],
)
def test_a_bad_state_is_422_and_writes_nothing(api, sql, body):
    problem(api.post("/buildings/B1/verifications", json=body), 422)
    assert history_rows(sql, "B1") == []
    assert building_row(sql, "B1").version == 1


def test_a_bad_state_in_a_form_is_422(api, sql):
    response = api.post("/buildings/B1/verifications", **multipart({"state": "bogus", "note": "x"}))
    problem(response, 422)
    problem(api.post("/buildings/B1/verifications", **multipart({"note": "no state"})), 422)
    assert history_rows(sql, "B1") == []


@pytest.mark.parametrize("state", ["verified", "not_found", "disputed"])
def test_a_geometry_with_a_state_other_than_corrected_is_422(api, sql, state):
    moved = outline(100, 100, 150, 150)
    response = api.verify("B1", state, geometry=moved, if_match='"v1"')
    assert "corrected" in problem(response, 422)["detail"]
    form = {"state": state, "geometry": json.dumps(moved)}
    response = api.post("/buildings/B1/verifications", **multipart(form), if_match='"v1"')
    problem(response, 422)
    assert history_rows(sql, "B1") == []
    assert footprint_is(sql, "B1", square(100, 100, 140, 140))
    # the same outline as a correction is accepted and replaces the footprint
    response = api.verify("B1", "corrected", geometry=moved, if_match='"v1"')
    assert response.status_code == 201, response.text
    assert footprint_is(sql, "B1", square(100, 100, 150, 150))


# ---------------------------------------------------------------- ETag and If-Match


def test_the_etag_is_the_version_and_every_write_bumps_it(api, sql):
    response = api.get("/buildings/B1")
    assert response.status_code == 200
    assert response.headers["etag"] == '"v1"' and response.json()["version"] == 1
    assert "no-store" in response.headers["cache-control"]

    response = api.verify("B1")  # If-Match is optional without a geometry
    assert response.status_code == 201, response.text
    assert response.headers["etag"] == '"v2"' and response.json()["building"]["version"] == 2
    response = api.verify("B1", "disputed", if_match='"v2"')
    assert response.status_code == 201 and response.headers["etag"] == '"v3"'
    response = api.put("/buildings/B1/geometry", json=outline(100, 100, 141, 140), if_match='"v3"')
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"v4"'
    response = api.verify("B1", if_match='W/"v4"')  # a weak ETag names the same version
    assert response.status_code == 201 and response.headers["etag"] == '"v5"'
    assert api.etag("B1") == '"v5"' and building_row(sql, "B1").version == 5
    assert [r.building_version for r in history_rows(sql, "B1")] == [2, 3, 4, 5]


def test_a_stale_if_match_is_409_with_the_current_state_and_changes_nothing(api, sql):
    seen = api.etag("B1", "li")
    assert seen == '"v1"'
    assert api.verify("B1", "verified", "wang").status_code == 201  # now v2
    current_detail = api.building("B1", "wang")

    moved = outline(100, 100, 150, 150)
    body = problem(api.put("/buildings/B1/geometry", json=moved, if_match=seen), 409)
    current = body["current"]
    assert current["version"] == 2 and current["verification"] == "verified"
    assert current["verified_by"] == "wang"
    assert current["geometry"] == current_detail["geometry"]
    assert [h["account"] for h in current["history"]] == ["wang"]
    # the refused write left no trace: one history row (wang's), the original outline
    assert len(history_rows(sql, "B1")) == 1
    assert footprint_is(sql, "B1", square(100, 100, 140, 140))
    assert building_row(sql, "B1").version == 2

    body = problem(api.verify("B1", "disputed", if_match=seen), 409)
    assert body["current"]["version"] == 2
    form = {"state": "corrected", "geometry": json.dumps(moved)}
    problem(api.post("/buildings/B1/verifications", **multipart(form), if_match=seen), 409)
    row = building_row(sql, "B1")
    assert (row.verification, row.version) == ("verified", 2)
    assert len(history_rows(sql, "B1")) == 1

    # a demolition decision with a stale If-Match is refused too
    assert api.verify("B1", "not_found", "wang").status_code == 201  # v3
    body = problem(
        api.post("/buildings/B1/demolition", if_match='"v2"', json={"confirm": True}), 409
    )
    assert body["current"]["version"] == 3 and body["current"]["verification"] == "not_found"
    assert building_row(sql, "B1").status == "in_use"


def test_if_match_is_required_for_outline_changes(api, sql):
    moved = outline(100, 100, 150, 150)
    problem(api.put("/buildings/B1/geometry", json=moved), 428)
    problem(api.put("/buildings/B1/geometry", json=moved, if_match=""), 428)
    problem(api.verify("B1", "corrected", geometry=moved), 428)
    form = {"state": "corrected", "geometry": json.dumps(moved)}
    problem(api.post("/buildings/B1/verifications", **multipart(form)), 428)
    assert history_rows(sql, "B1") == [] and building_row(sql, "B1").version == 1
    assert footprint_is(sql, "B1", square(100, 100, 140, 140))
    # a correction without an outline needs no If-Match
    assert api.verify("B1", "corrected").status_code == 201


@pytest.mark.parametrize(
    "garbage", ["abc", '"v1x"', '"x1"', "v", '"v"', '"v99999999999999"', '"v1", "v2"', '"v-1"']
)
def test_an_if_match_that_names_no_version_is_409(api, sql, garbage):
    body = problem(
        api.put("/buildings/B1/geometry", json=outline(100, 100, 150, 150), if_match=garbage), 409
    )
    assert body["current"]["version"] == 1
    assert problem(api.verify("B1", if_match=garbage), 409)["current"]["version"] == 1
    assert history_rows(sql, "B1") == []
    assert footprint_is(sql, "B1", square(100, 100, 140, 140))


# ---------------------------------------------------------------- concurrent edits


def json_login(client: TestClient, name: str, password: str) -> str:
    response = client.post(
        "/login", data={"name": name, "password": password}, headers={"Accept": "application/json"}
    )
    assert response.status_code == 200, response.text
    return response.json()["csrf_token"]


def test_two_browser_sessions_on_one_building_lose_nothing(hand_db, sample_key_file, tmp_path, sql):
    """Two officers signed in with passwords, each in a browser (its own cookie jar and
    app worker), open B1 at v1; the first to save wins, the second gets 409 with the
    first's outline, reloads and saves on top of it: both outlines are in the history."""
    password = "correct horse battery staple"
    grant(hand_db, "sun", "officer", (C1,), password=password)
    grant(hand_db, "zhou", "officer", (C1,), password=password)
    settings = api_settings_for(hand_db, tmp_path, key_file=sample_key_file)
    first_outline, second_outline = square(100, 100, 145, 140), square(100, 100, 140, 146)
    with (
        TestClient(create_app(settings), raise_server_exceptions=False) as a,
        TestClient(create_app(settings), raise_server_exceptions=False) as b,
    ):
        csrf_a, csrf_b = json_login(a, "sun", password), json_login(b, "zhou", password)
        assert csrf_a != csrf_b
        etag_a = a.get("/buildings/B1").headers["etag"]
        etag_b = b.get("/buildings/B1").headers["etag"]
        assert etag_a == etag_b == '"v1"'
        # a session write without its CSRF token is refused and writes nothing
        refused = a.put(
            "/buildings/B1/geometry", json=mapping(first_outline), headers={"If-Match": etag_a}
        )
        problem(refused, 403)
        assert history_rows(sql, "B1") == []

        saved = a.put(
            "/buildings/B1/geometry",
            json=mapping(first_outline),
            headers={"If-Match": etag_a, "X-CSRF-Token": csrf_a},
        )
        assert saved.status_code == 200, saved.text
        conflict = b.put(
            "/buildings/B1/geometry",
            json=mapping(second_outline),
            headers={"If-Match": etag_b, "X-CSRF-Token": csrf_b},
        )
        current = problem(conflict, 409)["current"]
        assert current["version"] == 2 and current["verified_by"] == "sun"
        assert same_shape(current["geometry"], first_outline)
        assert footprint_is(sql, "B1", first_outline)  # the first write is kept
        reloaded = b.get("/buildings/B1")
        assert same_shape(reloaded.json()["geometry"], first_outline)

        retried = b.put(
            "/buildings/B1/geometry",
            json=mapping(second_outline),
            headers={"If-Match": reloaded.headers["etag"], "X-CSRF-Token": csrf_b},
        )
        assert retried.status_code == 200, retried.text
    rows = history_rows(sql, "B1")
    assert [(r.action, r.account) for r in rows] == [("corrected", "sun"), ("corrected", "zhou")]
    assert same_shape(rows[0].old_values["geometry"], square(100, 100, 140, 140))
    assert same_shape(rows[0].new_values["geometry"], first_outline)
    assert same_shape(rows[1].old_values["geometry"], first_outline)
    assert footprint_is(sql, "B1", second_outline)


def race(base_url: str, requests: list[tuple[str, str, dict[str, Any]]]) -> list[Any]:
    """Send ``requests`` (method, path, httpx kwargs) at once, one thread and connection
    each, released together by a barrier; their responses in the same order."""
    results: list[Any] = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def send(index: int, method: str, path: str, kwargs: dict[str, Any]) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as own:
            own.get("/healthz")  # connected before the barrier: the writes start together
            barrier.wait()
            results[index] = own.request(method, path, **kwargs)

    threads = [
        threading.Thread(target=send, args=(index, *request))
        for index, request in enumerate(requests)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_simultaneous_writes_with_one_if_match_one_wins_one_conflicts(
    hand_db, tokens, sample_key_file, tmp_path, sql
):
    """Against uvicorn on a real port, two threads released together send the same
    If-Match: the row lock serialises them, so exactly one 200 (or 201) and one 409, every
    round; the history has one row per round and the outline is the winner's."""
    settings = api_settings_for(hand_db, tmp_path, key_file=sample_key_file)
    rounds = 4
    li, wang = bearer(tokens["li"]), bearer(tokens["wang"])
    winners = []
    with LiveServer(create_app(settings)) as server:
        for round_number in range(rounds):
            etag = httpx.get(f"{server.url}/buildings/B1", headers=li).headers["etag"]
            assert etag == f'"v{round_number + 1}"'
            shapes = [
                square(100, 100, 141 + round_number, 140),
                square(100, 100, 140, 141 + round_number),
            ]
            results = race(
                server.url,
                [
                    ("PUT", "/buildings/B1/geometry",
                     {"json": mapping(shape), "headers": {**auth, "If-Match": etag}})
                    for shape, auth in zip(shapes, (li, wang), strict=True)
                ],
            )  # fmt: skip
            assert sorted(r.status_code for r in results) == [200, 409], [r.text for r in results]
            winner = next(i for i, r in enumerate(results) if r.status_code == 200)
            current = results[1 - winner].json()["current"]
            assert current["version"] == round_number + 2
            assert same_shape(current["geometry"], shapes[winner])
            winners.append(shapes[winner])

        # the same with verifications (no outline): one 201, one 409
        etag = httpx.get(f"{server.url}/buildings/B1", headers=li).headers["etag"]
        results = race(
            server.url,
            [
                ("POST", "/buildings/B1/verifications",
                 {"json": {"state": state}, "headers": {**auth, "If-Match": etag}})
                for state, auth in (("verified", li), ("disputed", wang))
            ],
        )  # fmt: skip
        assert sorted(r.status_code for r in results) == [201, 409], [r.text for r in results]

        # without If-Match both are recorded, one after the other: no write is lost
        results = race(
            server.url,
            [
                ("POST", "/buildings/B3/verifications",
                 {"json": {"state": state}, "headers": auth})
                for state, auth in (("verified", li), ("disputed", wang))
            ],
        )  # fmt: skip
        assert [r.status_code for r in results] == [201, 201], [r.text for r in results]

        # two second persons confirm li's not-found report at once: one decides, the
        # other finds the building already demolished (409)
        reported = httpx.post(
            f"{server.url}/buildings/B2/verifications",
            json={"state": "not_found"},
            headers=li,
        )
        assert reported.status_code == 201
        station = bearer(tokens["station"])
        results = race(
            server.url,
            [
                ("POST", "/buildings/B2/demolition", {"json": {"confirm": True}, "headers": auth})
                for auth in (wang, station)
            ],
        )
        assert sorted(r.status_code for r in results) == [200, 409], [r.text for r in results]

    rows = history_rows(sql, "B1")
    assert len(rows) == rounds + 1  # one per round: the losers wrote nothing
    assert [r.building_version for r in rows] == list(range(2, rounds + 3))
    assert [r.action for r in rows[:rounds]] == ["corrected"] * rounds
    assert footprint_is(sql, "B1", winners[-1])
    assert building_row(sql, "B1").version == rounds + 2
    b3 = history_rows(sql, "B3")
    assert sorted(r.action for r in b3) == ["disputed", "verified"]
    assert [r.building_version for r in b3] == [2, 3]  # serialised, each on the other
    assert building_row(sql, "B3").verification == b3[-1].action
    assert [r.action for r in history_rows(sql, "B2")] == ["not_found", "demolition_confirmed"]
    assert building_row(sql, "B2").status == "demolished"


def test_an_owner_side_update_makes_an_officers_copy_stale(api, sql):
    assert api.etag("B1") == '"v1"'
    sql("UPDATE building SET floors = 7 WHERE id = 'B1'")  # e.g. a bulk load's update
    assert building_row(sql, "B1").version == 2
    body = problem(api.verify("B1", if_match='"v1"'), 409)
    assert body["current"]["version"] == 2 and body["current"]["floors"] == 7
    # a statement that changes no column (updated_at alone is no change) keeps the version
    sql("UPDATE building SET floors = floors WHERE id = 'B1'")
    sql("UPDATE building SET updated_at = now() WHERE id = 'B1'")
    assert building_row(sql, "B1").version == 2
    assert api.verify("B1", if_match='"v2"').status_code == 201
    assert history_rows(sql, "B1")[0].building_version == 3


# ---------------------------------------------------------------- distance flag


@pytest.mark.parametrize(
    ("x", "y", "distance", "far"),
    [
        # B1 is the square 100..140 x 100..140 m
        (120, 300, 160.0, True),  # 160 m north of its north edge (y = 140)
        (230, 260, 150.0, True),  # from its NE corner (140, 140): dx 90, dy 120 -> 150
        (-50, 120, 150.0, True),  # 150 m west of its west edge (x = 100)
        (120, 200, 60.0, False),  # 60 m north: within 100 m
        (120, 235, 95.0, False),  # 95 m: still within 100 m
        (120, 120, 0.0, False),  # inside the outline: 0
    ],
)
def test_a_position_far_from_the_outline_is_flagged_not_refused(api, sql, x, y, distance, far):
    response = api.verify("B1", position=position(x, y, accuracy=8))
    assert response.status_code == 201, response.text
    entry = response.json()["verification"]
    assert entry["far"] is far
    assert entry["distance_m"] == pytest.approx(distance, abs=1.0)
    assert entry["accuracy_m"] == 8.0
    expected = at(x, y)
    assert entry["position"] == pytest.approx([expected.x, expected.y], abs=1e-9)
    (row,) = history_rows(sql, "B1")
    assert row.far is far and row.distance_m == pytest.approx(distance, abs=1.0)
    assert (row.lon, row.lat) == pytest.approx((expected.x, expected.y), abs=1e-9)
    if distance == 0:
        assert row.distance_m == 0


def test_a_position_in_a_form_is_measured_too(api, sql):
    p = position(120, 300)  # 160 m north of B1
    form = {"state": "verified", "lon": repr(p["lon"]), "lat": repr(p["lat"]), "accuracy": "12"}
    response = api.post("/buildings/B1/verifications", **multipart(form))
    assert response.status_code == 201, response.text
    entry = response.json()["verification"]
    assert entry["far"] is True and entry["distance_m"] == pytest.approx(160, abs=1)
    assert entry["accuracy_m"] == 12.0
    # no position: nothing measured, nothing flagged
    entry = api.verify("B1").json()["verification"]
    assert (entry["position"], entry["distance_m"], entry["far"]) == (None, None, False)


@pytest.mark.parametrize(
    ("x", "y", "distance", "far"),
    [
        # B6 has no outline; its door plate A6 is at (700, 700)
        (700, 850, 150.0, True),
        (760, 700, 60.0, False),
        (700, 700, 0.0, False),
    ],
)
def test_a_building_without_an_outline_is_measured_to_its_door_plate(api, x, y, distance, far):
    assert api.building("B6")["geometry"] is None
    response = api.verify("B6", position=position(x, y))
    assert response.status_code == 201, response.text
    entry = response.json()["verification"]
    assert entry["far"] is far and entry["distance_m"] == pytest.approx(distance, abs=1.0)


def test_a_building_with_neither_outline_nor_plate_is_not_measured(api, sql):
    # X1: registered (by the owner, as a load would) with no outline and no address
    sql("INSERT INTO building (id, community_code) VALUES ('X1', :c)", c=C1)
    response = api.verify("X1", position=position(120, 300))
    assert response.status_code == 201, response.text
    entry = response.json()["verification"]
    assert entry["distance_m"] is None and entry["far"] is False
    assert entry["position"] is not None  # the position is still recorded
    # on the work list it has nowhere to be: null lon/lat, and last when nearest-first
    (item,) = [i for i in api.worklist() if i["id"] == "X1"]
    assert (item["kind"], item["lon"], item["lat"]) == ("not_on_map", None, None)
    here = position(120, 95)
    items = api.worklist(lon=here["lon"], lat=here["lat"])
    assert (items[-1]["id"], items[-1]["distance_m"]) == ("X1", None)
    assert all(i["distance_m"] is not None for i in items[:-1])


@pytest.mark.parametrize(
    "where",
    [
        {"lon": 2.3522, "lat": 48.8566},  # Paris
        {"lon": -74.0, "lat": 40.7},  # New York
        {"lon": 114.4, "lat": -30.5},  # the southern hemisphere
        {"lon": 114.4, "lat": 95.0},  # no latitude at all
        {"lon": 200.0, "lat": 30.5},
    ],
)
def test_a_position_outside_china_is_422(api, sql, where):
    problem(api.verify("B1", position=where), 422)
    form = {"state": "verified", "lon": str(where["lon"]), "lat": str(where["lat"])}
    problem(api.post("/buildings/B1/verifications", **multipart(form)), 422)
    assert history_rows(sql, "B1") == []


@pytest.mark.parametrize(
    "form",
    [
        {"lon": "abc", "lat": "30.5"},
        {"lon": "nan", "lat": "30.5"},
        {"lon": "114.4", "lat": "inf"},
        {"lon": "1e999", "lat": "30.5"},
        {"lon": "114.4"},  # a longitude without a latitude
        {"lon": "114.4", "lat": "30.5", "accuracy": "-1"},
    ],
)
def test_a_malformed_position_in_a_form_is_422(api, sql, form):
    problem(
        api.post("/buildings/B1/verifications", **multipart({"state": "verified", **form})), 422
    )
    assert history_rows(sql, "B1") == []


def test_a_new_building_with_a_position_outside_china_is_422(api, sql):
    before = row_count(sql, "building")
    body = {"geometry": outline(600, 100, 640, 140), "position": {"lon": 2.35, "lat": 48.85}}
    problem(api.post("/buildings", json=body), 422)
    assert row_count(sql, "building") == before
    assert row_count(sql, "building_verification") == 0


# ---------------------------------------------------------------- photos


@pytest.mark.parametrize(
    ("content", "media_type", "size"),
    [
        (jpeg(64, 48), "image/jpeg", (64, 48)),
        (image_bytes("PNG", (30, 20), "RGBA"), "image/png", (30, 20)),
    ],
    ids=["jpeg", "png"],
)
def test_a_jpeg_or_png_is_stored_and_served_as_it_came(api, sql, content, media_type, size):
    p = position(120, 120)
    form = {"state": "verified", "note": "门牌照片", "lon": str(p["lon"]), "lat": str(p["lat"])}
    response = api.post(
        "/buildings/B1/verifications", data=form, files={"photo": ("p", content, media_type)}
    )
    assert response.status_code == 201, response.text
    entry = response.json()["verification"]
    photo_url = entry["photo_url"]
    assert re.fullmatch(r"/photos/[0-9]+", photo_url)
    served = api.get(photo_url)
    assert served.status_code == 200
    assert served.content == content
    assert served.headers["content-type"] == media_type

    (row,) = sql(
        "SELECT id, media_type, sha256, width, height, building_id, community_code, account, "
        "content FROM verification_photo"
    )
    assert f"/photos/{row.id}" == photo_url
    assert (row.media_type, row.width, row.height) == (media_type, *size)
    assert row.sha256 == hashlib.sha256(content).hexdigest() and bytes(row.content) == content
    assert (row.building_id, row.community_code, row.account) == ("B1", C1, "li")
    assert history_rows(sql, "B1")[0].photo_id == row.id
    # only for buildings the caller sees: an officer of C2 does not see B1's photo
    problem(api.get(photo_url, "zhao"), 404)
    problem(api.get("/photos/999999"), 404)


def test_the_media_type_comes_from_the_content_not_the_client(api):
    content = image_bytes("PNG")
    response = api.post(
        "/buildings/B1/verifications",
        data={"state": "verified"},
        files={"photo": ("photo.jpg", content, "image/jpeg")},
    )
    assert response.status_code == 201, response.text
    served = api.get(response.json()["verification"]["photo_url"])
    assert served.headers["content-type"] == "image/png" and served.content == content


def test_an_empty_photo_field_is_no_photo(api, sql):
    # the map's form always has a photo input; with no file chosen its part is empty
    response = api.post(
        "/buildings/B1/verifications", **multipart({"state": "verified"}, ("", b"", "image/jpeg"))
    )
    assert response.status_code == 201, response.text
    assert response.json()["verification"]["photo_url"] is None
    assert row_count(sql, "verification_photo") == 0


def test_a_photo_of_too_many_pixels_is_413(api, sql):
    # 10000 x 10000 = 100 megapixels (more than the 50 allowed), a few kB as a PNG
    buffer = io.BytesIO()
    Image.new("1", (10_000, 10_000)).save(buffer, "PNG")
    assert len(buffer.getvalue()) < 100 * 1024
    photo = ("bomb.png", buffer.getvalue(), "image/png")
    response = api.post("/buildings/B1/verifications", **multipart({"state": "verified"}, photo))
    problem(response, 413)
    assert row_count(sql, "verification_photo") == 0 and history_rows(sql, "B1") == []


def test_a_refused_verification_stores_no_photo(api, sql):
    photo = ("p.jpg", jpeg(), "image/jpeg")
    assert api.verify("B1", "verified", "wang").status_code == 201  # v2
    cases = [
        (multipart({"state": "verified"}, photo, headers={"If-Match": '"v1"'}), 409),
        (multipart({"state": "verified", "lon": "2.35", "lat": "48.85"}, photo), 422),
        (multipart({"state": "bogus"}, photo), 422),
    ]
    for request, status in cases:
        problem(api.post("/buildings/B1/verifications", **request), status)
    problem(
        api.post("/buildings/B1/verifications", "zhao", **multipart({"state": "verified"}, photo)),
        404,
    )
    problem(api.post("/buildings/B5/verifications", **multipart({"state": "verified"}, photo)), 409)
    assert row_count(sql, "verification_photo") == 0
    assert len(history_rows(sql, "B1")) == 1
    # the same photo on a verification that is recorded is stored once
    response = api.post("/buildings/B1/verifications", **multipart({"state": "verified"}, photo))
    assert response.status_code == 201, response.text
    assert row_count(sql, "verification_photo") == 1


def truncated_jpeg() -> bytes:
    whole = jpeg(256, 256, seed=3)
    return whole[: len(whole) // 2]


@pytest.mark.parametrize(
    ("content", "filename", "claimed"),
    [
        (image_bytes("GIF"), "a.gif", "image/gif"),
        (image_bytes("GIF"), "disguised.jpg", "image/jpeg"),
        (image_bytes("BMP"), "a.bmp", "image/bmp"),
        (random.Random(7).randbytes(4000), "noise.jpg", "image/jpeg"),
        (truncated_jpeg(), "cut.jpg", "image/jpeg"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 64, "header-only.jpg", "image/jpeg"),
    ],
    ids=["gif", "gif-as-jpeg", "bmp", "random", "truncated-jpeg", "jpeg-header-only"],
)
def test_a_photo_that_is_not_a_whole_jpeg_or_png_is_415(api, sql, content, filename, claimed):
    response = api.post(
        "/buildings/B1/verifications",
        data={"state": "verified"},
        files={"photo": (filename, content, claimed)},
    )
    problem(response, 415)
    assert history_rows(sql, "B1") == [] and row_count(sql, "verification_photo") == 0
    assert building_row(sql, "B1").version == 1


def test_a_photo_over_the_limit_is_413_and_nothing_is_written(make_api, sql):
    api = make_api(photo_max_kb=32)
    big = jpeg(256, 256, seed=5, quality=95)
    # over 32 kB, yet well under the route's body limit (max(32 + 64, 1024) kB)
    assert 32 * 1024 < len(big) < 900 * 1024
    response = api.post(
        "/buildings/B1/verifications",
        data={"state": "verified", "note": "太大"},
        files={"photo": ("big.jpg", big, "image/jpeg")},
    )
    assert "32 kB" in problem(response, 413)["detail"]
    assert history_rows(sql, "B1") == [] and row_count(sql, "verification_photo") == 0
    assert building_row(sql, "B1").version == 1
    small = jpeg(48, 48, seed=6)
    assert len(small) < 32 * 1024
    response = api.post(
        "/buildings/B1/verifications",
        data={"state": "verified"},
        files={"photo": ("small.jpg", small, "image/jpeg")},
    )
    assert response.status_code == 201, response.text
    assert row_count(sql, "verification_photo") == 1


def test_other_routes_keep_the_general_body_limit(make_api, sql):
    api = make_api(max_body_kb=16)  # photos keep their own limit (5120 kB by default)
    padding = "x" * 20_000  # with it, each body is over 16 kB
    feature = {
        "type": "Feature",
        "geometry": outline(100, 100, 150, 150),
        "properties": {"padding": padding},
    }
    problem(api.put("/buildings/B1/geometry", json=feature, if_match='"v1"'), 413)
    new = {"geometry": outline(600, 100, 640, 140), "padding": padding}
    problem(api.post("/buildings", json=new), 413)
    problem(api.post("/buildings/B1/demolition", json={"confirm": True, "padding": padding}), 413)
    assert history_rows(sql, "B1") == [] and row_count(sql, "building") == 9
    assert footprint_is(sql, "B1", square(100, 100, 140, 140))

    photo = jpeg(128, 128, seed=8, quality=95)
    assert len(photo) > 16 * 1024
    response = api.post(
        "/buildings/B1/verifications",
        data={"state": "verified"},
        files={"photo": ("p.jpg", photo, "image/jpeg")},
    )
    assert response.status_code == 201, response.text


# ---------------------------------------------------------------- roles and jurisdiction


@pytest.mark.parametrize("role", ["analyst", "gis"])
def test_analyst_and_gis_may_look_but_not_edit(api, sql, role):
    detail = api.building("B1", role)
    assert detail["id"] == "B1" and detail["residents"] is None
    assert len(detail["rooms"]) == 2 and all(r["residents"] is None for r in detail["rooms"])
    assert api.get(f"/communities/{C1}/progress", role).status_code == 200
    assert api.get(f"/communities/{C1}/worklist", role).status_code == 200

    problem(api.verify("B1", "verified", role), 403)
    form = {"state": "verified"}
    problem(api.post("/buildings/B1/verifications", role, **multipart(form)), 403)
    moved = outline(100, 100, 150, 150)
    problem(api.put("/buildings/B1/geometry", role, json=moved, if_match='"v1"'), 403)
    assert api.verify("B2", "not_found", "li").status_code == 201
    problem(api.post("/buildings/B2/demolition", role, json={"confirm": True}), 403)
    problem(api.post("/buildings", role, json={"geometry": outline(600, 100, 640, 140)}), 403)
    map_config = api.get("/map/config", role).json()
    assert map_config["may_edit"] is False and map_config["sees_persons"] is False

    assert history_rows(sql, "B1") == [] and len(history_rows(sql, "B2")) == 1
    assert building_row(sql, "B2").status == "in_use"
    assert row_count(sql, "building") == 9  # B1..B8 and B21: nothing created


def test_progress_suppresses_small_person_counts_for_gis(api):
    """The gis role passes aggregates on, so its progress follows the reports' rule:
    person counts from 1 to 4 are "<5" and the rate made of them is null. C1 has
    C1_RESIDENTS active residents (5 before 2026-12-31, then 4) and C1_PLACED placed
    (2, then 1): the placed count is always small; the officer sees the numbers."""
    officer = api.get(f"/communities/{C1}/progress", "li").json()
    assert (officer["residents"], officer["residents_on_map"]) == (C1_RESIDENTS, C1_PLACED)
    gis = api.get(f"/communities/{C1}/progress", "gis").json()
    assert gis["residents_on_map"] == "<5"
    assert gis["residents"] == (C1_RESIDENTS if C1_RESIDENTS >= 5 else "<5")
    assert gis["population_on_map_rate"] is None
    assert gis["buildings"] == officer["buildings"] == 7  # buildings are not persons


def test_resident_counts_are_for_officers_and_stations_only(api):
    # B1's rooms: R1 has 甲 (C1, active), 庚 (moved out 2026-06-30) and 壬 (active, but
    # registered in C2: only those whose jurisdiction covers C2 see that residence);
    # R2 has 乙 (moved out 2026-01-01) and 丙 (active until 2026-12-31)
    bing = 1 if BING_ACTIVE else 0
    officer = api.building("B1", "li")
    assert [r["residents"] for r in officer["rooms"]] == [1, bing]
    assert officer["residents"] == 1 + bing
    station = api.building("B1", "station")  # the street: C1 and C2
    assert [r["residents"] for r in station["rooms"]] == [2, bing]
    assert station["residents"] == 2 + bing
    admin = api.building("B1", "admin")  # admin edits anywhere but sees no persons
    assert admin["residents"] is None and admin["room_count"] == 2


def test_an_officer_outside_the_jurisdiction(api, sql):
    # zhao is an officer of C2: C1's buildings do not exist for him
    problem(api.get("/buildings/B1", "zhao"), 404)
    problem(api.verify("B1", "verified", "zhao"), 404)
    moved = outline(100, 100, 150, 150)
    problem(api.put("/buildings/B1/geometry", "zhao", json=moved, if_match='"v1"'), 404)
    assert api.verify("B2", "not_found", "li").status_code == 201
    problem(api.post("/buildings/B2/demolition", "zhao", json={"confirm": True}), 404)
    # drawing in C1 (by its outline, or naming it) is outside his jurisdiction
    gap = outline(600, 100, 640, 140)
    problem(api.post("/buildings", "zhao", json={"geometry": gap}), 403)
    problem(api.post("/buildings", "zhao", json={"geometry": gap, "community_code": C1}), 403)
    problem(api.get(f"/communities/{C1}/progress", "zhao"), 403)
    assert api.building("B21", "zhao")["community_code"] == C2
    assert history_rows(sql, "B1") == [] and building_row(sql, "B2").status == "in_use"
    assert row_count(sql, "building") == 9

    # an admin edits anywhere
    assert api.verify("B1", "verified", "admin").status_code == 201
    assert api.verify("B21", "verified", "admin").status_code == 201
    etag = api.etag("B21", "admin")
    response = api.put(
        "/buildings/B21/geometry", "admin", json=outline(1300, 100, 1341, 140), if_match=etag
    )
    assert response.status_code == 200, response.text
    assert api.post("/buildings", "admin", json={"geometry": gap}).status_code == 201
    assert api.post("/buildings/B2/demolition", "admin", json={"confirm": False}).status_code == 200
    assert [r.account for r in history_rows(sql, "B1")] == ["admin"]


# ---------------------------------------------------------------- demolition


C1_START = {
    "buildings": 7,
    "buildings_on_map": 6,
    "footprints": 6,
    "footprints_covered": 3,
    "buildings_labeled": 3,
    "buildings_verified": 0,
}


@pytest.mark.parametrize("confirmer", ["wang", "station", "admin"])
def test_a_second_person_confirms_a_demolition_and_the_rates_follow(api, sql, confirmer):
    assert counts(api.progress()) == C1_START
    reported = api.verify("B2", "not_found", "li", note="已拆除")
    assert reported.status_code == 201
    assert counts(reported.json()["progress"]) == C1_START  # only proposed
    # the reporter may not decide on his own report
    problem(api.post("/buildings/B2/demolition", json={"confirm": True}), 403)
    assert building_row(sql, "B2").status == "in_use" and len(history_rows(sql, "B2")) == 1

    response = api.post("/buildings/B2/demolition", confirmer, json={"confirm": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["building"]["status"] == "demolished"
    entry = body["verification"]
    assert (entry["action"], entry["account"]) == ("demolition_confirmed", confirmer)
    assert (entry["old"], entry["new"]) == ({"status": "in_use"}, {"status": "demolished"})
    # B2 no longer counts: buildings 7 -> 6, on the map 6 -> 5; F2 was covered only by
    # B2 (67 %), so covered 3 -> 2; B2 was not labelled, so labelled stays 3 (of 5)
    expected = {
        **C1_START,
        "buildings": 6,
        "buildings_on_map": 5,
        "footprints_covered": 2,
    }
    progress = body["progress"]
    assert counts(progress) == expected
    assert progress["on_map_rate"] == pytest.approx(5 / 6)
    assert progress["coverage_rate"] == pytest.approx(2 / 6)
    assert progress["labeling_rate"] == pytest.approx(3 / 5)
    assert counts(api.progress()) == expected
    (row,) = api.get("/reports/coverage", "admin", params={"code": C1}).json()
    assert rates_counts(row) == (6, 5, 6, 2, 3)
    assert building_row(sql, "B2").status == "demolished"
    assert [h["action"] for h in api.building("B2")["history"]] == [
        "demolition_confirmed",
        "not_found",
    ]
    # nothing is left to verify or decide on a demolished building
    problem(api.verify("B2", "verified", "wang"), 409)
    problem(api.post("/buildings/B2/demolition", "station", json={"confirm": True}), 409)
    assert len(history_rows(sql, "B2")) == 2


def test_a_rejected_demolition_makes_the_building_disputed(api, sql):
    assert api.verify("B1", "not_found", "li").status_code == 201
    problem(api.post("/buildings/B1/demolition", json={"confirm": False}), 403)  # li again
    response = api.post("/buildings/B1/demolition", "wang", json={"confirm": False, "note": "还在"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["building"]["status"] == "in_use"
    assert body["building"]["verification"] == "disputed"
    entry = body["verification"]
    assert (entry["action"], entry["account"], entry["note"]) == (
        "demolition_rejected",
        "wang",
        "还在",
    )
    assert (entry["old"], entry["new"]) == (
        {"verification": "not_found"},
        {"verification": "disputed"},
    )
    assert counts(body["progress"]) == C1_START  # nothing demolished
    row = building_row(sql, "B1")
    assert (row.status, row.verification) == ("in_use", "disputed")


def test_confirming_a_building_nobody_reported_is_409(api, sql):
    problem(api.post("/buildings/B1/demolition", "wang", json={"confirm": True}), 409)
    assert api.verify("B3", "verified").status_code == 201
    problem(api.post("/buildings/B3/demolition", "station", json={"confirm": True}), 409)
    problem(api.post("/buildings/B3/demolition", "admin", json={"confirm": False}), 409)
    assert history_rows(sql, "B1") == [] and len(history_rows(sql, "B3")) == 1
    assert building_row(sql, "B1").status == building_row(sql, "B3").status == "in_use"
    # B5 was loaded demolished: there is nothing to confirm either
    problem(api.post("/buildings/B5/demolition", "station", json={"confirm": True}), 409)


# ---------------------------------------------------------------- new buildings


def test_drawing_over_a_coverage_gap_registers_a_building(api, sql, cli):
    gaps = {i["id"] for i in api.worklist() if i["kind"] == "gap"}
    assert gaps == {"F5", "F7", "F8"}
    body = {
        "geometry": outline(600, 100, 640, 140),  # exactly F8, which nothing covered
        "name": "新建仓库",
        "floors": 3,
        "use": "warehouse",
        "note": "现场新绘",
        "position": position(620, 90, accuracy=5),  # 10 m south of it
    }
    response = api.post("/buildings", json=body)
    assert response.status_code == 201, response.text
    answer = response.json()
    new_id = answer["building"]["id"]
    assert new_id.startswith(f"N{C1}-") and new_id[len(C1) + 2 :].isdigit()
    assert response.headers["location"] == f"/buildings/{new_id}"
    assert response.headers["etag"] == f'"v{answer["building"]["version"]}"'
    building = answer["building"]
    assert (building["community_code"], building["status"], building["verification"]) == (
        C1,
        "in_use",
        "verified",
    )
    assert (building["name"], building["floors"], building["use"]) == ("新建仓库", 3, "warehouse")
    assert building["verified_by"] == "li"
    assert same_shape(building["geometry"], square(600, 100, 640, 140))
    entry = answer["verification"]
    assert (entry["action"], entry["account"], entry["note"]) == ("created", "li", "现场新绘")
    assert entry["distance_m"] == pytest.approx(10, abs=1) and entry["far"] is False
    assert entry["old"] == {} and entry["new"]["community_code"] == C1

    # buildings 7 -> 8 and on the map 6 -> 7; F8 now covered (100 %): 3 -> 4 of 6; the new
    # building has no address, so labelled stays 3 (of 7); it is verified: 1 of 8
    expected = {
        "buildings": 8,
        "buildings_on_map": 7,
        "footprints": 6,
        "footprints_covered": 4,
        "buildings_labeled": 3,
        "buildings_verified": 1,
    }
    assert counts(answer["progress"]) == expected
    assert answer["progress"]["coverage_rate"] == pytest.approx(4 / 6)
    assert answer["progress"]["on_map_rate"] == pytest.approx(7 / 8)
    assert answer["progress"]["verified_rate"] == pytest.approx(1 / 8)
    assert counts(api.progress()) == expected
    (report,) = api.get("/reports/coverage", params={"code": C1}).json()
    assert rates_counts(report) == (8, 7, 6, 4, 3)
    for args in (
        ("rates", "--code", C1, "--format", "json"),
        ("rates", "--code", C1, "--format", "json", "--recount"),
    ):
        result = cli(*args)
        assert result.exit_code == 0, result.output
        (row,) = json.loads(result.stdout)
        assert rates_counts(row) == (8, 7, 6, 4, 3), args

    fetched = api.get(response.headers["location"])
    assert fetched.status_code == 200 and fetched.json()["id"] == new_id
    assert [h["action"] for h in fetched.json()["history"]] == ["created"]
    items = {(i["kind"], i["id"]) for i in api.worklist()}
    assert ("gap", "F8") not in items and ("unlabeled", new_id) in items
    (row,) = history_rows(sql, new_id)
    assert (row.action, row.account, row.far) == ("created", "li", False)


# fmt: off
NOT_REGISTRABLE = [
    # (name, account, body, status)
    # 1000 m east of C2's east edge: no community boundary contains it
    ("outside-every-community", "li", {"geometry": outline(3000, 0, 3040, 40)}, 422),
    ("outside-every-community-admin", "admin", {"geometry": outline(3000, 0, 3040, 40)}, 422),
    # three points on one line of latitude: no area at all
    ("collinear", "li", {"geometry": {"type": "Polygon", "coordinates": [
        [[114.406, 30.501], [114.4062, 30.501], [114.4064, 30.501], [114.406, 30.501]]]}}, 422),
    ("one-point", "li", {"geometry": {"type": "Polygon", "coordinates": [
        [[114.406, 30.501], [114.406, 30.501], [114.406, 30.501], [114.406, 30.501]]]}}, 422),
    ("two-points", "li", {"geometry": {"type": "Polygon", "coordinates": [
        [[114.406, 30.501], [114.407, 30.501]]]}}, 422),
    ("empty", "li", {"geometry": {"type": "Polygon", "coordinates": []}}, 422),
    ("point", "li", {"geometry": {"type": "Point", "coordinates": [114.406, 30.501]}}, 422),
    ("linestring", "li", {"geometry": {"type": "LineString", "coordinates": [
        [114.406, 30.501], [114.407, 30.502]]}}, 422),
    # 1000 x 1100 m: larger than a square kilometre
    ("over-a-square-km", "li", {"geometry": outline(0, 0, 1000, 1100)}, 422),
    ("outside-china", "li", {"geometry": {"type": "Polygon", "coordinates": [
        [[2.35, 48.85], [2.351, 48.85], [2.351, 48.851], [2.35, 48.85]]]}}, 422),
    ("unknown-community", "admin",
     {"geometry": outline(600, 100, 640, 140), "community_code": "420111009999"}, 422),
    # C2 is outside li's jurisdiction, whether named or found from the outline
    ("other-community-named", "li",
     {"geometry": outline(1500, 100, 1540, 140), "community_code": C2}, 403),
    ("other-community-by-outline", "li", {"geometry": outline(1500, 100, 1540, 140)}, 403),
]
# fmt: on


@pytest.mark.parametrize(
    ("who", "body", "status"),
    [case[1:] for case in NOT_REGISTRABLE],
    ids=[case[0] for case in NOT_REGISTRABLE],
)
def test_a_new_building_that_cannot_be_registered(api, sql, who, body, status):
    problem(api.post("/buildings", who, json=body), status)
    assert row_count(sql, "building") == 9 and row_count(sql, "building_verification") == 0


def test_a_named_community_without_a_boundary_takes_an_outline(api, sql):
    # 丙社区 has no boundary, so no outline falls in it by itself; naming it works
    response = api.post(
        "/buildings", "admin", json={"geometry": outline(3000, 0, 3040, 40), "community_code": C3}
    )
    assert response.status_code == 201, response.text
    assert response.json()["building"]["id"].startswith(f"N{C3}-")
    progress = response.json()["progress"]
    assert (progress["buildings"], progress["buildings_on_map"], progress["verified_rate"]) == (
        1,
        1,
        1.0,
    )


def test_new_building_ids_are_never_reused(api, sql):
    first = api.post("/buildings", json={"geometry": outline(600, 100, 620, 120)})
    second = api.post("/buildings", json={"geometry": outline(620, 100, 640, 120)})
    assert first.status_code == second.status_code == 201
    ids = [first.json()["building"]["id"], second.json()["building"]["id"]]
    numbers = [int(i.rsplit("-", 1)[1]) for i in ids]
    assert ids[0] != ids[1] and numbers[1] > numbers[0]
    # an imported building already holds the number the sequence hands out next
    taken = f"N{C1}-{numbers[1] + 1}"
    sql(
        "INSERT INTO building (id, community_code, name) VALUES (:id, :c, '导入楼')",
        id=taken,
        c=C1,
    )
    third = api.post("/buildings", json={"geometry": outline(600, 120, 620, 140)})
    assert third.status_code == 201, third.text
    third_id = third.json()["building"]["id"]
    assert third_id == f"N{C1}-{numbers[1] + 2}"  # the taken number is skipped
    imported = building_row(sql, taken)
    assert imported.wkt is None and imported.version == 1  # untouched
    assert history_rows(sql, taken) == []
    # a demolished building's id is not handed out again either
    assert api.verify(ids[0], "not_found").status_code == 201
    assert (
        api.post(f"/buildings/{ids[0]}/demolition", "wang", json={"confirm": True}).status_code
        == 200
    )
    fourth = api.post("/buildings", json={"geometry": outline(620, 120, 640, 140)})
    assert fourth.status_code == 201
    assert fourth.json()["building"]["id"] not in {*ids, taken, third_id}


# ---------------------------------------------------------------- progress


def test_the_verified_rate_counts_fresh_verifications_of_buildings_that_count(make_api, api, sql):
    # C1 counts 7 buildings (B5 is demolished); nothing verified yet
    progress = api.progress()
    assert (progress["buildings_verified"], progress["verified_rate"]) == (0, 0.0)
    assert progress["cycle_days"] == 90
    c3 = api.progress(C3, "admin")  # no buildings: null, like every rate
    assert c3["buildings"] == 0 and c3["verified_rate"] is None and c3["on_map_rate"] is None
    assert api.progress(C2, "station")["verified_rate"] == 0.0

    assert api.verify("B1", "verified").status_code == 201
    etag = api.etag("B2")
    assert (
        api.put(
            "/buildings/B2/geometry", json=outline(200, 100, 240, 150), if_match=etag
        ).status_code
        == 200
    )
    assert api.verify("B3", "disputed").status_code == 201  # does not count
    last = api.verify("B4", "not_found")  # does not count
    # verified or corrected: B1, B2 -> 2 of 7
    assert last.json()["progress"]["buildings_verified"] == 2
    assert last.json()["progress"]["verified_rate"] == pytest.approx(2 / 7)

    # B1 verified 91 days ago is out of the 90-day cycle; B2 at 89 days is still in it
    sql("UPDATE building SET verified_at = now() - interval '91 days' WHERE id = 'B1'")
    sql("UPDATE building SET verified_at = now() - interval '89 days' WHERE id = 'B2'")
    progress = api.progress()
    assert (progress["buildings_verified"], progress["verified_rate"]) == (1, pytest.approx(1 / 7))
    stale = [i for i in api.worklist() if i["kind"] == "stale"]
    assert [i["id"] for i in stale] == ["B1"]
    (b1_at,) = sql("SELECT verified_at FROM building WHERE id = 'B1'")
    assert dt.datetime.fromisoformat(stale[0]["verified_at"]) == b1_at.verified_at

    # with a 30-day cycle B2 is due again too
    short = make_api(verification_cycle_days=30)
    assert short.progress()["buildings_verified"] == 0 and short.progress()["cycle_days"] == 30
    assert {i["id"] for i in short.worklist() if i["kind"] == "stale"} == {"B1", "B2"}

    # verifying B1 again brings it back; confirming B4's demolition leaves 6 that count
    assert api.verify("B1", "verified").status_code == 201
    confirmed = api.post("/buildings/B4/demolition", "wang", json={"confirm": True})
    assert confirmed.status_code == 200
    assert confirmed.json()["progress"]["buildings_verified"] == 2
    assert confirmed.json()["progress"]["verified_rate"] == pytest.approx(2 / 6)
    assert not [i for i in api.worklist() if i["kind"] == "stale"]


# ---------------------------------------------------------------- work list


def kinds_of(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(i["kind"], i["id"]) for i in items]


def test_the_work_list_lists_each_kind_and_drops_it_when_fixed(api, sql):
    # by kind, then id: B6 has no outline; B1 B2 B3 B4 B7 B8 were never verified; B2 B3
    # B4 are not labelled; F5 F7 F8 are not covered (B5 demolished counts for nothing)
    start = api.worklist()
    assert kinds_of(start) == [
        ("not_on_map", "B6"),
        ("never_verified", "B1"),
        ("never_verified", "B2"),
        ("never_verified", "B3"),
        ("never_verified", "B4"),
        ("never_verified", "B7"),
        ("never_verified", "B8"),
        ("unlabeled", "B2"),
        ("unlabeled", "B3"),
        ("unlabeled", "B4"),
        ("gap", "F5"),
        ("gap", "F7"),
        ("gap", "F8"),
    ]
    b6 = start[0]  # placed at its door plate A6 (700, 700)
    assert (b6["lon"], b6["lat"]) == pytest.approx((at(700, 700).x, at(700, 700).y), abs=1e-9)
    assert b6["label"] == "珞喻路" and b6["distance_m"] is None
    assert all(i["verified_at"] is None for i in start)

    def items() -> set[tuple[str, str]]:
        return set(kinds_of(api.worklist()))

    # never_verified -> verified
    assert api.verify("B1").status_code == 201
    assert ("never_verified", "B1") not in items()
    # stale: verified longer ago than the cycle; verified again -> gone
    sql("UPDATE building SET verified_at = now() - interval '100 days' WHERE id = 'B1'")
    assert ("stale", "B1") in items()
    assert api.verify("B1").status_code == 201
    assert ("stale", "B1") not in items()
    # disputed; verified -> gone
    assert api.verify("B3", "disputed").status_code == 201
    assert ("disputed", "B3") in items() and ("never_verified", "B3") not in items()
    assert api.verify("B3").status_code == 201
    assert ("disputed", "B3") not in items()
    # not_found awaits a second person; confirmed -> B2 leaves the list (it no longer
    # counts), and F2, which only B2 covered, becomes a gap
    assert api.verify("B2", "not_found").status_code == 201
    assert ("not_found", "B2") in items()
    assert api.post("/buildings/B2/demolition", "wang", json={"confirm": True}).status_code == 200
    now = items()
    assert not {k for k in now if k[1] == "B2"} and ("gap", "F2") in now
    # not_on_map: placed around its door plate -> gone, and labelled (plate inside)
    etag = api.etag("B6")
    assert (
        api.put(
            "/buildings/B6/geometry", json=outline(690, 690, 710, 710), if_match=etag
        ).status_code
        == 200
    )
    now = items()
    assert not {k for k in now if k[1] == "B6"}
    # unlabeled B3 (plate 35 m north): its outline really reaches 10 m further north, so
    # the plate is 25 m away -> labelled
    etag = api.etag("B3")
    assert (
        api.put(
            "/buildings/B3/geometry", json=outline(300, 100, 318, 150), if_match=etag
        ).status_code
        == 200
    )
    assert ("unlabeled", "B3") not in items()
    # unlabeled B4 (no door plate): the address team sets one 10 m south of it
    sql(
        "UPDATE address SET door_plate = ST_SetSRID(ST_MakePoint(:x, :y), 4490) WHERE code = 'A4'",
        x=at(331, 90).x,
        y=at(331, 90).y,
    )
    assert ("unlabeled", "B4") not in items()
    # gap F8: drawn -> gone, the new building (no address) is unlabelled
    drawn = api.post("/buildings", json={"geometry": outline(600, 100, 640, 140)})
    assert drawn.status_code == 201
    new_id = drawn.json()["building"]["id"]
    # gap F7: B7 is really as large as F7
    etag = api.etag("B7")
    corrected = api.verify("B7", "corrected", geometry=outline(500, 100, 540, 200), if_match=etag)
    assert corrected.status_code == 201
    assert kinds_of(api.worklist()) == [
        ("never_verified", "B4"),
        ("never_verified", "B8"),
        ("unlabeled", new_id),
        ("gap", "F2"),
        ("gap", "F5"),
    ]


def test_the_work_list_is_nearest_first_from_a_position(api):
    here = position(120, 95)  # at B1's door plate, 5 m south of B1
    items = api.worklist(lon=here["lon"], lat=here["lat"])
    assert len(items) == 13
    distances = [i["distance_m"] for i in items]
    assert all(d is not None for d in distances) and distances == sorted(distances)
    # nearest: B1 (its point on surface, the centre (120, 120), is 25 m away); then B2's
    # two tasks, from its centre (220, 120): sqrt(100^2 + 25^2) = 103.1 m, by kind
    assert kinds_of(items[:3]) == [
        ("never_verified", "B1"),
        ("never_verified", "B2"),
        ("unlabeled", "B2"),
    ]
    assert items[0]["distance_m"] == pytest.approx(25.0, abs=1.0)
    assert items[1]["distance_m"] == pytest.approx(103.1, abs=1.0)
    # B8 at (1120, 120): 1000.3 m, the farthest
    assert items[-1]["id"] == "B8" and items[-1]["distance_m"] == pytest.approx(1000.3, abs=1.0)
    assert len(api.worklist(limit=2)) == 2


def test_the_work_list_needs_both_coordinates_and_the_jurisdiction(api):
    problem(api.get(f"/communities/{C1}/worklist", params={"lon": 114.4}), 400)
    problem(api.get(f"/communities/{C1}/worklist", params={"lat": 30.5}), 400)
    problem(api.get(f"/communities/{C1}/worklist", "zhao"), 403)
    problem(api.get(f"/communities/{C2}/worklist", "li"), 403)
    problem(api.get(f"/communities/{C2}/progress", "li"), 403)
    assert kinds_of(api.worklist(C1, "station"))[0] == ("not_on_map", "B6")
    assert kinds_of(api.worklist(C2, "zhao")) == [("never_verified", "B21")]


# ---------------------------------------------------------------- reaching 100 %


def test_a_community_reaches_100_percent_through_the_map(api, sql, cli):
    """C1 from 6/7 on the map, 3/6 covered, 0/7 verified to 100 % of each: verify what is
    right, place B6 around its door plate, correct B7 to its real size (= F7), draw what
    stands on F5 (where B5 was demolished) and on F8, then place the door plates of A2
    (200 m off), A3 (35 m off) and A4 (none) at their buildings. Labelling stops at 7/9:
    the two drawn buildings have no standard address (the map places plates, it does not
    issue addresses). C2 reaches 100 % on all."""
    for building_id in ("B1", "B2", "B3", "B4", "B8"):
        assert api.verify(building_id).status_code == 201, building_id
    etag = api.etag("B6")
    placed = api.put("/buildings/B6/geometry", json=outline(690, 690, 710, 710), if_match=etag)
    assert placed.status_code == 200
    # the history keeps the outline B6 had (none) and the one it got
    entry = placed.json()["verification"]
    assert entry["action"] == "corrected" and entry["old"]["geometry"] is None
    assert same_shape(entry["new"]["geometry"], square(690, 690, 710, 710))
    # B6 on the map: 7 of 7; labelled (A6 inside): 4
    assert placed.json()["progress"]["on_map_rate"] == 1.0
    assert placed.json()["progress"]["buildings_labeled"] == 4
    etag = api.etag("B7")
    response = api.verify("B7", "corrected", geometry=outline(500, 100, 540, 200), if_match=etag)
    assert response.status_code == 201
    assert response.json()["progress"]["footprints_covered"] == 4  # F7 now 100 %
    for box in ((400, 100, 440, 140), (600, 100, 640, 140)):
        assert api.post("/buildings", json={"geometry": outline(*box)}).status_code == 201

    progress = api.progress()
    # buildings: 7 + 2 drawn = 9, all on the map; footprints 6, all covered; verified: B1
    # B2 B3 B4 B8 (verified), B6 B7 (corrected), the 2 drawn (created verified) = 9 of 9;
    # labelled: B1 B6 B7 B8 = 4 of 9
    assert counts(progress) == {
        "buildings": 9,
        "buildings_on_map": 9,
        "footprints": 6,
        "footprints_covered": 6,
        "buildings_labeled": 4,
        "buildings_verified": 9,
    }
    assert progress["on_map_rate"] == 1.0
    assert progress["coverage_rate"] == 1.0
    assert progress["verified_rate"] == 1.0
    assert progress["labeling_rate"] == pytest.approx(4 / 9)
    # B6 on the map places 戊 (R6) too
    assert (progress["residents"], progress["residents_on_map"]) == (C1_RESIDENTS, C1_PLACED + 1)
    assert {i["kind"] for i in api.worklist()} == {"unlabeled"}
    # the plates, each 5 m south of its building's outline (y = 95)
    for building_id, code, x in (("B2", "A2", 220), ("B3", "A3", 309), ("B4", "A4", 331)):
        moved = api.put(
            f"/buildings/{building_id}/addresses/{code}/door-plate", json=position(x, 95)
        )
        assert moved.status_code == 200, moved.text
    assert moved.json()["progress"]["buildings_labeled"] == 7
    unlabeled = {i["id"] for i in api.worklist() if i["kind"] == "unlabeled"}
    assert len(unlabeled) == 2 and all(i.startswith(f"N{C1}-") for i in unlabeled)

    # 乙社区: verifying B21 is all it lacks
    response = api.verify("B21", "verified", "zhao")
    assert response.status_code == 201
    c2 = response.json()["progress"]
    for rate in ("on_map_rate", "coverage_rate", "labeling_rate", "population_on_map_rate"):
        assert c2[rate] == 1.0, rate
    assert c2["verified_rate"] == 1.0
    assert api.worklist(C2, "zhao") == []
    rows = {r["code"]: r for r in api.get("/reports/coverage", "admin").json()}
    assert rates_counts(rows[C1]) == (9, 9, 6, 6, 7)
    assert rates_counts(rows[C2]) == (1, 1, 2, 2, 1)
    # the counters the API reads agree with the definitions, recounted from scratch
    result = cli("rates", "--code", STREET, "--format", "json", "--recount")
    assert result.exit_code == 0, result.output
    recounted = {r["code"]: r for r in json.loads(result.stdout)}
    assert rates_counts(recounted[C1]) == (9, 9, 6, 6, 7)
    assert rates_counts(recounted[C2]) == (1, 1, 2, 2, 1)


# ---------------------------------------------------------------- append-only history


def test_the_history_and_photos_are_append_only(api, sql, hand_db):
    response = api.post(
        "/buildings/B1/verifications",
        data={"state": "verified", "note": "原始记录"},
        files={"photo": ("p.jpg", jpeg(), "image/jpeg")},
    )
    assert response.status_code == 201, response.text
    statements = [
        "UPDATE building_verification SET note = 'tampered'",
        "DELETE FROM building_verification",
        "TRUNCATE building_verification CASCADE",
        "UPDATE verification_photo SET account = 'someone'",
        "DELETE FROM verification_photo",
        "TRUNCATE verification_photo CASCADE",
    ]
    api_url = make_url(hand_db).set(username="registry_api", password=API_PASSWORD)
    api_engine = create_engine(api_url)
    owner_engine = create_engine(hand_db)
    try:
        for engine, who in ((api_engine, "registry_api"), (owner_engine, "owner")):
            for statement in statements:
                with pytest.raises(DBAPIError) as refused, engine.begin() as conn:
                    if who == "registry_api":  # as an admin request would
                        conn.execute(
                            text(
                                "SELECT set_config('registry.user', 'admin', true), "
                                "set_config('registry.role', 'admin', true), "
                                "set_config('registry.scope', '', true)"
                            )
                        )
                    conn.execute(text(statement))
                assert refused.value.orig.sqlstate == "42501", (who, statement)
    finally:
        api_engine.dispose()
        owner_engine.dispose()
    (row,) = history_rows(sql, "B1")
    assert row.note == "原始记录" and row.photo_id is not None
    assert sql("SELECT account FROM verification_photo")[0].account == "li"


# ---------------------------------------------------------------- no 500


POLYGON = outline(100, 100, 150, 150)
V1 = {"If-Match": '"v1"'}
JSON = {"Content-Type": "application/json"}
VERIFY = "/buildings/B1/verifications"
GEOMETRY = "/buildings/B1/geometry"
NAN_RING = b"[[[NaN, 30.5], [114.401, 30.5], [114.401, 30.501], [NaN, 30.5]]]"
INF_RING = b"[[[1e400, 30.5], [114.401, 30.5], [114.401, 30.501], [1e400, 30.5]]]"
# a circle of 30 m radius with 2801 vertices: more than the 2000 an outline may have
MANY_VERTICES = mapping(lonlat(Point(620, 120).buffer(30, quad_segs=700)))
# fmt: off
BAD_REQUESTS = [
    # (name, method, path, request arguments, acceptable statuses)
    ("truncated-json", "POST", VERIFY, {"content": b'{"state": "ok"', "headers": JSON}, {400}),
    ("empty-json", "POST", VERIFY, {"content": b"", "headers": JSON}, {400}),
    ("json-array", "POST", VERIFY, {"json": [1, 2]}, {422}),
    ("json-string", "POST", VERIFY, {"json": "verified"}, {422}),
    ("text-plain", "POST", VERIFY,
     {"content": b"state=verified", "headers": {"Content-Type": "text/plain"}}, {400}),
    ("invalid-utf8", "POST", VERIFY,
     {"content": b'{"state": "\xff\xfe"}', "headers": JSON}, {400, 422}),
    ("nul-in-note", "POST", VERIFY, {"json": {"state": "verified", "note": "a\x00b"}}, {400}),
    ("nul-in-form-note", "POST", VERIFY,
     multipart({"state": "verified", "note": "a\x00b"}), {400}),
    ("nul-in-form-state", "POST", VERIFY, multipart({"state": "verified\x00"}), {400, 422}),
    ("note-too-long", "POST", VERIFY, {"json": {"state": "verified", "note": "x" * 2001}}, {422}),
    ("multipart-junk", "POST", VERIFY,
     {"content": b"this is not multipart at all",
      "headers": {"Content-Type": "multipart/form-data; boundary=XyZ"}}, {400, 422}),
    ("multipart-no-boundary", "POST", VERIFY,
     {"content": b'--XyZ\r\nContent-Disposition: form-data; name="state"\r\n\r\nverified\r\n'
                 b"--XyZ--\r\n",
      "headers": {"Content-Type": "multipart/form-data"}}, {400, 422}),
    ("multipart-cut-short", "POST", VERIFY,
     {"content": b'--XyZ\r\nContent-Disposition: form-data; name="state"\r\n\r\nverif',
      "headers": {"Content-Type": "multipart/form-data; boundary=XyZ"}}, {400, 422}),
    ("multipart-bad-part-header", "POST", VERIFY,
     {"content": b"--XyZ\r\nthis is no header\r\n\r\nverified\r\n--XyZ--\r\n",
      "headers": {"Content-Type": "multipart/form-data; boundary=XyZ"}}, {400, 422}),
    ("two-photos", "POST", VERIFY,
     {"data": {"state": "verified"},
      "files": [("photo", ("a.jpg", jpeg(), "image/jpeg")),
                ("photo", ("b.jpg", jpeg(), "image/jpeg"))]}, {400}),
    ("too-many-fields", "POST", VERIFY,
     multipart({"state": "verified", **{f"f{i}": "x" for i in range(40)}}), {400}),
    ("form-geometry-not-json", "POST", VERIFY,
     multipart({"state": "corrected", "geometry": "{not json"}, headers=V1), {422}),
    ("form-geometry-not-an-object", "POST", VERIFY,
     multipart({"state": "corrected", "geometry": "[1, 2]"}, headers=V1), {422}),
    ("geometry-nan", "POST", VERIFY,
     {"content": b'{"state": "corrected", "geometry": {"type": "Polygon", "coordinates": '
                 + NAN_RING + b"}}",
      "headers": {**JSON, **V1}}, {400, 422}),
    ("accuracy-huge", "POST", VERIFY,
     {"json": {"state": "verified", "position": {"lon": 114.4, "lat": 30.5, "accuracy": 1e300}}},
     {422}),
    ("put-not-json", "PUT", GEOMETRY, {"content": b"not json", "headers": {**JSON, **V1}}, {400}),
    ("put-array", "PUT", GEOMETRY, {"json": [1], "headers": V1}, {400, 422}),
    ("put-bad-coordinates", "PUT", GEOMETRY,
     {"json": {"type": "Polygon", "coordinates": "abc"}, "headers": V1}, {422}),
    ("put-no-type", "PUT", GEOMETRY, {"json": {"coordinates": [[[114.4, 30.5]]]}, "headers": V1},
     {422}),
    ("put-geometry-collection", "PUT", GEOMETRY,
     {"json": {"type": "GeometryCollection", "geometries": [POLYGON]}, "headers": V1}, {422}),
    ("put-nan", "PUT", GEOMETRY,
     {"content": b'{"type": "Polygon", "coordinates": ' + NAN_RING + b"}",
      "headers": {**JSON, **V1}}, {400, 422}),
    ("put-infinite", "PUT", GEOMETRY,
     {"content": b'{"type": "Polygon", "coordinates": ' + INF_RING + b"}",
      "headers": {**JSON, **V1}}, {400, 422}),
    ("put-feature-null-geometry", "PUT", GEOMETRY,
     {"json": {"type": "Feature", "geometry": None, "properties": {}}, "headers": V1}, {422}),
    ("put-feature-no-geometry", "PUT", GEOMETRY,
     {"json": {"type": "Feature", "properties": {"note": "nothing drawn"}}, "headers": V1}, {422}),
    ("put-feature-nul-note", "PUT", GEOMETRY,
     {"json": {"type": "Feature", "geometry": POLYGON, "properties": {"note": "\x00"}},
      "headers": V1}, {400}),
    ("put-feature-number-note", "PUT", GEOMETRY,
     {"json": {"type": "Feature", "geometry": POLYGON, "properties": {"note": 5}},
      "headers": V1}, {422}),
    ("put-feature-list-properties", "PUT", GEOMETRY,
     {"json": {"type": "Feature", "geometry": "x", "properties": [1, 2]}, "headers": V1}, {422}),
    ("put-too-many-vertices", "PUT", GEOMETRY, {"json": MANY_VERTICES, "headers": V1}, {422}),
    ("demolition-not-bool", "POST", "/buildings/B1/demolition", {"json": {"confirm": "maybe"}},
     {400, 422}),
    ("demolition-not-json", "POST", "/buildings/B1/demolition",
     {"content": b"{", "headers": JSON}, {400, 422}),
    ("demolition-nul-note", "POST", "/buildings/B1/demolition",
     {"json": {"confirm": True, "note": "\x00"}}, {400}),
    ("create-geometry-text", "POST", "/buildings", {"json": {"geometry": "POLYGON"}}, {400, 422}),
    ("create-floors-zero", "POST", "/buildings", {"json": {"geometry": POLYGON, "floors": 0}},
     {400, 422}),
    ("create-nul-name", "POST", "/buildings", {"json": {"geometry": POLYGON, "name": "楼\x00"}},
     {400}),
    ("create-nan", "POST", "/buildings",
     {"content": b'{"geometry": {"type": "Polygon", "coordinates": ' + NAN_RING + b"}}",
      "headers": JSON}, {400, 422}),
    ("create-bad-code", "POST", "/buildings",
     {"json": {"geometry": POLYGON, "community_code": "42011100200x"}}, {400, 422}),
    ("nul-in-building-id", "GET", "/buildings/B%001", {}, {400}),
    ("building-id-too-long", "GET", "/buildings/" + "B" * 65, {}, {400, 422}),
    ("photo-id-zero", "GET", "/photos/0", {}, {400, 422}),
    ("photo-id-text", "GET", "/photos/abc", {}, {400, 422}),
    ("photo-id-huge", "GET", "/photos/99999999999999999999999", {}, {400, 422}),
    ("worklist-lon-text", "GET", f"/communities/{C1}/worklist?lon=abc&lat=30.5", {}, {400}),
    ("worklist-limit-zero", "GET", f"/communities/{C1}/worklist?limit=0", {}, {400}),
    ("worklist-lon-nan", "GET", f"/communities/{C1}/worklist?lon=nan&lat=30.5", {}, {400, 422}),
    ("worklist-bad-code", "GET", "/communities/42011100200x/worklist", {}, {400}),
    ("progress-outside", "GET", "/communities/999999999999/progress", {}, {403, 404}),
]
# fmt: on


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "statuses"),
    [case[1:] for case in BAD_REQUESTS],
    ids=[case[0] for case in BAD_REQUESTS],
)
def test_malformed_input_is_a_problem_never_a_500(api, sql, method, path, kwargs, statuses):
    response = api(method, path, "li", **kwargs)
    assert response.status_code in statuses, f"{response.status_code} {response.text}"
    problem(response, response.status_code)
    assert row_count(sql, "building_verification") == 0
    assert building_row(sql, "B1").version == 1 and row_count(sql, "building") == 9


def test_placing_door_plates_labels_buildings(api, sql):
    """Labelling counts an active address's plate within 30 m of the outline. C1 starts
    with 3 labelled (B1, B7, B8). A2 is 200 m north of B2: placed 5 m north of it, B2 is
    labelled (4). A4 has no plate: placed inside B4 (distance 0), B4 is labelled (5). A
    plate moved 50 m away from B1 unlabels it again (4); the history keeps every point."""
    start = counts(api.get(f"/communities/{C1}/progress", "li").json())
    assert start["buildings_labeled"] == 3

    moved = api.put("/buildings/B2/addresses/A2/door-plate", "li", json=position(220, 145))
    assert moved.status_code == 200, moved.text
    reply = moved.json()
    assert reply["progress"]["buildings_labeled"] == 4
    entry = reply["verification"]
    assert entry["action"] == "door_plate_moved" and entry["account"] == "li"
    assert entry["old"]["address"] == "A2" and entry["new"]["address"] == "A2"
    assert shapely.Point(entry["old"]["door_plate"]).distance(at(220, 340)) < 1e-7
    assert shapely.Point(entry["new"]["door_plate"]).distance(at(220, 145)) < 1e-7
    a2 = next(a for a in reply["building"]["addresses"] if a["code"] == "A2")
    assert shapely.Point(a2["door_plate"]).distance(at(220, 145)) < 1e-7

    placed = api.put("/buildings/B4/addresses/A4/door-plate", "li", json=position(330, 120))
    assert placed.status_code == 200, placed.text
    assert placed.json()["verification"]["old"]["door_plate"] is None
    assert placed.json()["progress"]["buildings_labeled"] == 5

    away = api.put("/buildings/B1/addresses/A1/door-plate", "wang", json=position(120, 50))
    assert away.json()["progress"]["buildings_labeled"] == 4  # 50 m south of B1
    assert [r.action for r in history_rows(sql, "B1")] == ["door_plate_moved"]

    # the counters agree with the definitions
    (row,) = sql("SELECT buildings_labeled FROM community_count WHERE code = :code", code=C1)
    assert row.buildings_labeled == 4


def test_a_door_plate_move_is_checked(api, sql):
    # an address of another building, a retired or unknown one: 422, nothing written
    problem(api.put("/buildings/B2/addresses/A1/door-plate", "li", json=position(220, 145)), 422)
    problem(api.put("/buildings/B2/addresses/A404/door-plate", "li", json=position(1, 1)), 422)
    outside = {"lon": 2.35, "lat": 48.85}
    problem(api.put("/buildings/B2/addresses/A2/door-plate", "li", json=outside), 422)
    for role in ("analyst", "gis"):
        problem(
            api.put("/buildings/B2/addresses/A2/door-plate", role, json=position(220, 145)), 403
        )
    problem(api.put("/buildings/B2/addresses/A2/door-plate", "zhao", json=position(220, 145)), 404)
    stale = api.put(
        "/buildings/B2/addresses/A2/door-plate",
        "li",
        json=position(220, 145),
        if_match='"v9"',
    )
    assert problem(stale, 409)["current"]["version"] == 1
    assert history_rows(sql, "B2") == []
    (a2,) = sql("SELECT ST_Y(door_plate) AS lat FROM address WHERE code = 'A2'")
    assert abs(a2.lat - at(220, 340).y) < 1e-9
