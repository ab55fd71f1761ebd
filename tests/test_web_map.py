"""The officers' web map (/map) end to end, in a real headless Chromium.

A writable copy of the 光谷 sample (its own database, dropped at the end), served by
uvicorn on 127.0.0.1; two officers of the community with the most buildings and an
analyst sign in through the real /login form. Every test checks that the page made no
request off 127.0.0.1 and logged no console error, and leaves a screenshot in
test-artifacts/web-map/.
"""

from __future__ import annotations

import math
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from registry.db import make_engine

from conftest import LiveServer, api_settings_for, drop_database, grant, sample_database

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "web-map"
PASSWORD = "web-map-test-password-1"
OFFICER_A, OFFICER_B, ANALYST = "map-officer-a", "map-officer-b", "map-analyst"
ADMIN = "map-admin"
WIDE = {"width": 1100, "height": 720}
PHONE = {"width": 390, "height": 760}
TIMEOUT_MS = 20_000


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def map_db(server_url: str, template_url: str, sample_key_file: Path) -> Iterator[str]:
    """Its own database with the sample loaded: these tests write."""
    url = sample_database(server_url, sample_key_file)
    try:
        yield url
    finally:
        drop_database(server_url, url)


def sql(url: str, statement: str, **params):
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(statement), params).all()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def community(map_db: str) -> str:
    """The community with the most buildings that count (ties: the smallest code)."""
    rows = sql(
        map_db,
        "SELECT community_code FROM building WHERE status <> 'demolished' "
        "GROUP BY community_code ORDER BY count(*) DESC, community_code LIMIT 1",
    )
    return rows[0][0]


@pytest.fixture(scope="module")
def server(
    map_db: str, community: str, sample_key_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    from api import create_app

    for name, role in ((OFFICER_A, "officer"), (OFFICER_B, "officer"), (ANALYST, "analyst")):
        grant(map_db, name, role, (community,), PASSWORD)
    grant(map_db, ADMIN, "admin", (), PASSWORD)
    home = tmp_path_factory.mktemp("web-map-home")
    app = create_app(api_settings_for(map_db, home, key_file=sample_key_file))
    with LiveServer(app) as live:
        yield live


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium to run the web map tests")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def centre(map_db: str, community: str) -> dict[str, float]:
    """The community boundary's point-on-surface: where the officers stand."""
    ((lon, lat),) = sql(
        map_db,
        "SELECT ST_X(p), ST_Y(p) FROM (SELECT ST_PointOnSurface(boundary) AS p FROM community "
        "WHERE code = :code) s",
        code=community,
    )
    return {"longitude": lon, "latitude": lat}


class MapPage:
    """One signed-in browser session on /map, recording its requests and console errors."""

    def __init__(self, browser, server: LiveServer, centre, viewport=WIDE) -> None:
        self.server = server
        self.context = browser.new_context(
            viewport=viewport,
            geolocation=centre,
            permissions=["geolocation"],
            locale="zh-CN",
        )
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", self.on_console)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))
        self.expected: list[tuple[int, str]] = []  # API refusals a test provokes
        self.failed: list[str] = []  # for the message when a console error is a failed load
        self.page.on(
            "response",
            lambda r: (
                self.failed.append(f"{r.status} {r.request.method} {r.url}")
                if r.status >= 400
                else None
            ),
        )

    def on_console(self, message) -> None:
        where = message.location.get("url") or ""
        if message.type != "error":
            return
        path = urlsplit(where).path
        # Chromium logs every 4xx answer to fetch(), even one the page handles; only the
        # refusals a test provokes on purpose (a 409, a 403) are allowed
        status = re.search(r"Failed to load resource: .* status of (\d+)", message.text)
        if status and (int(status.group(1)), path) in self.expected:
            return
        self.errors.append(f"console: {message.text} ({where})")

    def expect_refusal(self, status: int, path: str) -> None:
        """The page will get ``status`` from ``path``, and show it: not a console error."""
        self.expected.append((status, path))

    def sign_in(self, name: str) -> MapPage:
        page = self.page
        page.goto(f"{self.server.url}/map")
        assert urlsplit(page.url).path == "/login", page.url  # no session: the sign-in form
        assert "next=" in page.url and "map" in page.url
        page.fill("input[name=name]", name)
        page.fill("input[name=password]", PASSWORD)
        with page.expect_navigation():
            page.click("button[type=submit]")
        assert urlsplit(page.url).path == "/map", page.url
        page.evaluate("() => registryMap.ready.then(() => true)")
        return self

    def js(self, expression: str, arg=None):
        return self.page.evaluate(expression, arg)

    def api(self, path: str) -> dict:
        """GET ``path`` with this session's cookie (not one of the page's own requests)."""
        response = self.context.request.get(f"{self.server.url}{path}")
        assert response.ok, (path, response.status, response.text())
        return response.json()

    def testid(self, name: str):
        return self.page.get_by_test_id(name)

    def open_building(self, building_id: str, zoom: float | None = None) -> None:
        self.js("id => registryMap.openBuilding(id)", building_id)
        self.page.wait_for_selector(f"[data-testid=building][data-id='{building_id}']")
        if zoom is not None:
            detail = self.api(f"/buildings/{building_id}")
            self.js(
                "b => registryMap.jumpAndIdle({bounds: b, padding: 200, maxZoom: 19})",
                bounds_of(detail["geometry"]),
            )

    def wait_rate(self, key: str, numerator: int) -> None:
        self.page.wait_for_selector(
            f"[data-testid=rate-{key}][data-numerator='{numerator}']", state="attached"
        )

    def drag(self, selector: str, dx: float, dy: float) -> tuple[float, float, float, float]:
        """Drag the element by (dx, dy) screen pixels; the start and end points."""
        box = self.page.locator(selector).bounding_box()
        assert box, selector
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        mouse = self.page.mouse
        mouse.move(x, y)
        mouse.down()
        mouse.move(x + dx / 3, y + dy / 3, steps=4)
        mouse.move(x + dx, y + dy, steps=6)
        mouse.up()
        return x, y, x + dx, y + dy

    def lnglat_at(self, x: float, y: float) -> tuple[float, float]:
        return tuple(
            self.js(
                """([x, y]) => {
                  const m = registryMap.map, r = m.getContainer().getBoundingClientRect();
                  const p = m.unproject([x - r.left, y - r.top]);
                  return [p.lng, p.lat];
                }""",
                [x, y],
            )
        )

    def shot(self, name: str) -> None:
        """A screenshot of a moment worth seeing, besides the one at the end."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))

    def finish(self, name: str) -> None:
        """The screenshot, then the checks every test makes."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
        finally:
            self.context.close()
        assert self.requests, "the page made no request"
        for url in self.requests:
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob"):
                continue
            assert parts.scheme == "http" and parts.hostname == "127.0.0.1", url
        assert not self.errors, "\n".join(
            ["console errors:", *self.errors, "failed:", *self.failed]
        )


@pytest.fixture
def session_factory(browser, server, centre, request):
    """Opens MapPage sessions; each is screenshotted and checked at the end of the test."""
    sessions: list[tuple[str, MapPage]] = []

    def open_session(name: str, viewport=WIDE, where=None) -> MapPage:
        session = MapPage(browser, server, where or centre, viewport).sign_in(name)
        sessions.append((name, session))
        return session

    yield open_session
    test = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)
    failures = []
    for i, (name, session) in enumerate(sessions):
        suffix = "" if len(sessions) == 1 else f"-{i + 1}-{name}"
        try:
            session.finish(f"{test}{suffix}")
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


# ---------------------------------------------------------------- helpers


def bounds_of(geometry: dict) -> list[list[float]]:
    points = [c for c in iter_vertices(geometry)]
    lons = [p[0] for p in points]
    lats = [p[1] for p in points]
    return [[min(lons), min(lats)], [max(lons), max(lats)]]


def iter_vertices(geometry: dict):
    polys = [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    for rings in polys:
        for ring in rings:
            yield from ring


def metres(a, b) -> float:
    """Distance between two lon/lat points, in metres (equirectangular: short distances)."""
    k = math.pi / 180
    x = (b[0] - a[0]) * k * math.cos((a[1] + b[1]) / 2 * k)
    y = (b[1] - a[1]) * k
    return 6_371_008.8 * math.hypot(x, y)


def nearest(geometry: dict, point) -> float:
    return min(metres(v, point) for v in iter_vertices(geometry))


def png(width: int = 24, height: int = 16) -> bytes:
    """A small valid PNG (a red rectangle), for the evidence photo."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def moved(before: dict, after: dict, tolerance: float = 1.0):
    """The vertices of ``before`` not in ``after`` and those of ``after`` not in ``before``
    (each de-duplicated: a ring's closing vertex repeats its first)."""
    removed = {tuple(v) for v in iter_vertices(before) if nearest(after, v) > tolerance}
    added = {tuple(v) for v in iter_vertices(after) if nearest(before, v) > tolerance}
    return sorted(removed), sorted(added)


def clickable_buildings(session: MapPage, count: int, exclude=()) -> list[tuple[str, dict]]:
    """``count`` unverified, in-use buildings on screen, each with a pixel inside it."""
    found = session.js(
        """([count, exclude]) => {
          const seen = new Set(exclude), out = [];
          const features = registryMap.renderedBuildings()
            .filter(b => b.verification === 'unverified' && b.status === 'in_use')
            .sort((a, b) => a.id < b.id ? -1 : 1);
          for (const b of features) {
            if (seen.has(b.id)) continue;
            seen.add(b.id);
            const at = registryMap.pointInside('buildings-fill', b.id);
            if (at) out.push([b.id, at]);
            if (out.length >= count) break;
          }
          return out;
        }""",
        [count, list(exclude)],
    )
    assert len(found) >= count, found
    return [(building_id, at) for building_id, at in found]


def building_ids_on_map(map_db: str, community: str) -> list[str]:
    """Unverified buildings with an outline, simplest outlines first (few vertices, then
    large): their vertex handles are far apart on screen."""
    rows = sql(
        map_db,
        "SELECT id FROM building WHERE community_code = :c AND footprint IS NOT NULL "
        "AND status = 'in_use' AND verification = 'unverified' "
        "ORDER BY ST_NPoints(footprint), ST_Area(footprint) DESC, id",
        c=community,
    )
    return [r[0] for r in rows]


# ---------------------------------------------------------------- tests


def test_officer_verifies_a_building_by_clicking_it(session_factory, community, map_db):
    a = session_factory(OFFICER_A)
    assert a.testid("user").inner_text().startswith(OFFICER_A)
    assert a.js("() => registryMap.config.may_edit") is True
    assert a.js("() => registryMap.config.basemap") is None
    assert a.js("() => registryMap.renderedBuildings().length") > 0
    before = a.api(f"/communities/{community}/progress")
    a.wait_rate("verified", before["buildings_verified"])

    ((building_id, at),) = clickable_buildings(a, 1)
    a.page.mouse.click(at["x"], at["y"])
    a.page.wait_for_selector(f"[data-testid=building][data-id='{building_id}']")
    assert a.testid("building-id").inner_text() == building_id
    detail = a.api(f"/buildings/{building_id}")
    for address in detail["addresses"]:
        assert address["label"] in a.testid("building-addresses").inner_text()

    # the officer walks to the building: the position sent with the action is near it
    plate = next(iter_vertices(detail["geometry"]))
    a.context.set_geolocation({"longitude": plate[0], "latitude": plate[1], "accuracy": 5})
    a.page.wait_for_function(
        "([lon, lat]) => { const p = registryMap.state.position;"
        " return p && Math.abs(p.lon - lon) < 1e-6 && Math.abs(p.lat - lat) < 1e-6; }",
        arg=plate,
    )
    a.testid("action-note").fill("门牌与楼栋一致 plate matches")
    a.testid("action-verified").click()
    a.page.wait_for_selector("[data-testid=building-verification][data-state=verified]")
    a.wait_rate("verified", before["buildings_verified"] + 1)

    after = a.api(f"/communities/{community}/progress")
    assert after["buildings_verified"] == before["buildings_verified"] + 1
    ((state, account, far),) = sql(
        map_db,
        "SELECT b.verification, b.verified_by, h.far FROM building b "
        "JOIN LATERAL (SELECT * FROM building_verification v WHERE v.building_id = b.id "
        "ORDER BY v.id DESC LIMIT 1) h ON true WHERE b.id = :id",
        id=building_id,
    )
    assert (state, account) == ("verified", OFFICER_A)
    assert far is False  # the officer stood at the building
    entry = a.page.locator("[data-testid=history-entry]").first
    assert entry.get_attribute("data-action") == "verified"
    assert "plate matches" in entry.inner_text()
    assert a.testid("far-flag").count() == 0
    # the tiles were refreshed: the building is drawn as verified now
    a.page.wait_for_function(
        "id => registryMap.renderedBuildings()"
        ".some(b => b.id === id && b.verification === 'verified')",
        arg=building_id,
    )


def test_verification_far_from_the_building_is_flagged(session_factory, community, map_db):
    far_away = {"longitude": 114.30, "latitude": 30.55}  # about 10 km off
    a = session_factory(OFFICER_A, where=far_away)
    building_id = building_ids_on_map(map_db, community)[-1]
    a.open_building(building_id)
    a.testid("action-note").fill("门牌号不符 plate number differs")
    photo = {"name": "plate.png", "mimeType": "image/png", "buffer": png()}
    a.testid("action-photo").set_input_files(photo)
    a.testid("action-disputed").click()
    a.page.wait_for_selector("[data-testid=building-verification][data-state=disputed]")
    flag = a.testid("far-flag")
    flag.wait_for()
    a.shot("far-flag")
    assert "100 m" in flag.inner_text()
    entry = a.page.locator("[data-testid=history-entry]").first
    assert entry.get_attribute("data-far") == "true"
    assert "plate number differs" in entry.inner_text()
    # the photo went as multipart/form-data and is shown from this server
    thumbnail = entry.locator("[data-testid=history-photo] img")
    thumbnail.wait_for()
    a.page.wait_for_function(
        "img => img.complete && img.naturalWidth === 24", arg=thumbnail.element_handle()
    )
    ((media_type,),) = sql(
        map_db,
        "SELECT p.media_type FROM building_verification v JOIN verification_photo p "
        "ON p.id = v.photo_id WHERE v.building_id = :id",
        id=building_id,
    )
    assert media_type == "image/png"


def test_officer_moves_a_vertex_and_saves_the_outline(session_factory, community, map_db):
    a = session_factory(OFFICER_A)
    building_id = building_ids_on_map(map_db, community)[1]
    a.open_building(building_id, zoom=19)
    before = a.api(f"/buildings/{building_id}")
    a.testid("action-fix-outline").click()
    handle = "[data-testid=vertex-0-0-0]"
    a.page.wait_for_selector(handle)
    vertices = a.page.locator(".vertex")
    count = vertices.count()
    # insert a vertex at an edge's midpoint, then delete it again
    a.testid("midpoint-0-0-0").click()
    a.page.wait_for_selector(f"[data-testid=vertex-0-0-{count}]")
    assert vertices.count() == count + 1
    a.testid("vertex-0-0-1").click()
    a.testid("editor-delete").click()
    a.page.wait_for_selector(f"[data-testid=vertex-0-0-{count}]", state="detached")
    # Cancel restores: nothing is written
    a.drag(handle, -30, -30)
    a.testid("editor-cancel").click()
    assert a.testid("editor").is_hidden() and vertices.count() == 0
    assert a.api(f"/buildings/{building_id}")["version"] == before["version"]
    a.testid("action-fix-outline").click()
    a.page.wait_for_selector(handle)
    x0, y0, x1, y1 = a.drag(handle, 40, 30)
    start, end = a.lnglat_at(x0, y0), a.lnglat_at(x1, y1)
    assert nearest(before["geometry"], start) < 1.0  # the handle sat on a vertex
    a.testid("editor-save").click()
    a.page.wait_for_selector("[data-testid=building-verification][data-state=corrected]")
    assert a.testid("editor").is_hidden()

    after = a.api(f"/buildings/{building_id}")
    assert after["version"] == before["version"] + 1
    assert after["history"][0]["action"] == "corrected"
    # one vertex moved, from where the handle was picked up to where it was dropped
    removed, added = moved(before["geometry"], after["geometry"])
    assert len(removed) == 1 and metres(removed[0], start) < 1.0, (removed, start)
    assert len(added) == 1 and metres(added[0], end) < 1.0, (added, end)
    assert metres(start, end) > 5  # 50 px at zoom 19 or so
    ((moved_in_db,),) = sql(
        map_db,
        "SELECT ST_DWithin(footprint::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), "
        "ST_SRID(footprint))::geography, 1.0) FROM building WHERE id = :id",
        lon=end[0],
        lat=end[1],
        id=building_id,
    )
    assert moved_in_db


def test_conflicting_outline_edits(session_factory, community, map_db):
    building_id = building_ids_on_map(map_db, community)[2]
    a = session_factory(OFFICER_A)
    b = session_factory(OFFICER_B)
    for session in (a, b):
        session.open_building(building_id, zoom=19)
        session.testid("action-fix-outline").click()
        session.page.wait_for_selector("[data-testid=vertex-0-0-1]")
    original = a.api(f"/buildings/{building_id}")

    _, _, ax, ay = a.drag("[data-testid=vertex-0-0-1]", -35, 25)
    a_end = a.lnglat_at(ax, ay)
    a.testid("editor-save").click()
    a.page.wait_for_selector("[data-testid=building-verification][data-state=corrected]")

    _, _, bx, by = b.drag("[data-testid=vertex-0-0-1]", 45, -30)
    b_end = b.lnglat_at(bx, by)
    b.expect_refusal(409, f"/buildings/{building_id}/geometry")
    b.testid("editor-save").click()
    conflict = b.testid("conflict")
    conflict.wait_for()
    assert "Someone else changed this building" in conflict.inner_text()
    assert f"version {original['version'] + 1}" in conflict.inner_text()
    # B's unsaved edit is still on the map, retryable
    assert b.testid("editor").is_visible()
    assert b.page.locator("[data-testid=vertex-0-0-1]").count() == 1
    assert b.testid("conflict-retry").is_visible()
    b.shot("conflict-box")

    current = b.api(f"/buildings/{building_id}")
    assert current["version"] == original["version"] + 1
    assert current["history"][0]["account"] == OFFICER_A
    _, added = moved(original["geometry"], current["geometry"])
    assert len(added) == 1 and metres(added[0], a_end) < 1.0  # A's change is kept
    assert nearest(current["geometry"], b_end) > 1.0  # B's is not written
    # B takes the current state: the editor closes and the panel shows A's version
    b.testid("conflict-reload").click()
    b.page.wait_for_selector(f"[data-testid=building-version]:text-is('{original['version'] + 1}')")
    assert b.testid("editor").is_hidden()


def test_drawing_a_building_over_a_coverage_gap(session_factory, community, map_db):
    a = session_factory(OFFICER_A)
    items = a.api(f"/communities/{community}/worklist")["items"]
    gaps = [i for i in items if i["kind"] == "gap" and i["lon"] is not None]
    assert gaps, "the sample community has a coverage gap"
    gap = gaps[0]
    before = a.api(f"/communities/{community}/progress")
    a.wait_rate("coverage", before["footprints_covered"])

    a.js(
        "g => registryMap.jumpAndIdle({center: [g.lon, g.lat], zoom: 18})",
        {"lon": gap["lon"], "lat": gap["lat"]},
    )
    bbox = a.js("id => registryMap.sourceBounds('coverage-gaps', id)", gap["id"])
    assert bbox, "the gap is drawn on the map"
    a.js(
        "b => registryMap.jumpAndIdle({bounds: [[b[0], b[1]], [b[2], b[3]]], maxZoom: 20,"
        " padding: {top: 260, bottom: 120, left: 120, right: 120}})",  # clear of the editor bar
        bbox,
    )
    corners = a.js(
        """b => { const m = registryMap.map, r = m.getContainer().getBoundingClientRect();
          return [[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]].map(c => {
            const p = m.project(c); return [r.left + p.x, r.top + p.y]; }); }""",
        bbox,
    )
    outward = [(-3, 3), (3, 3), (3, -3), (-3, -3)]  # a little outside the gap's box
    a.testid("draw-new").click()
    assert a.testid("editor").is_visible()
    for (x, y), (dx, dy) in zip(corners, outward, strict=True):
        a.page.mouse.click(x + dx, y + dy)
    a.testid("editor-finish").click()
    a.page.wait_for_selector("[data-testid=vertex-0-0-3]")
    a.testid("new-floors").fill("4")
    a.testid("new-use").select_option("residential")
    a.shot("new-building-drawn")
    a.testid("editor-save").click()

    a.wait_rate("coverage", before["footprints_covered"] + 1)
    a.wait_rate("on_map", before["buildings_on_map"] + 1)
    new_id = a.testid("building-id").inner_text()
    assert not new_id.startswith("GG-0"), new_id
    after = a.api(f"/communities/{community}/progress")
    assert after["footprints_covered"] == before["footprints_covered"] + 1
    assert after["buildings_on_map"] == before["buildings_on_map"] + 1
    assert after["buildings"] == before["buildings"] + 1
    ((floors, use, creator),) = sql(
        map_db,
        "SELECT floors, use, (SELECT account FROM building_verification WHERE building_id = b.id "
        "ORDER BY id LIMIT 1) FROM building b WHERE id = :id",
        id=new_id,
    )
    assert (floors, use, creator) == (4, "residential", OFFICER_A)
    gap_ids = [i["id"] for i in a.api(f"/communities/{community}/worklist")["items"]]
    assert gap["id"] not in gap_ids


def test_not_found_needs_a_second_officer(session_factory, community, map_db):
    building_id = building_ids_on_map(map_db, community)[3]
    a = session_factory(OFFICER_A)
    a.open_building(building_id)
    a.testid("action-not_found").click()
    a.page.wait_for_selector("[data-testid=building-verification][data-state=not_found]")
    a.expect_refusal(403, f"/buildings/{building_id}/demolition")
    a.testid("demolition-confirm").click()
    forbidden = a.testid("demolition-forbidden")
    forbidden.wait_for()
    assert sql(map_db, "SELECT status FROM building WHERE id = :id", id=building_id) == [
        ("in_use",)
    ]

    b = session_factory(OFFICER_B)
    b.open_building(building_id)
    b.testid("demolition-confirm").click()
    b.page.wait_for_selector("[data-testid=building-status]:has-text('demolished')")
    assert sql(map_db, "SELECT status FROM building WHERE id = :id", id=building_id) == [
        ("demolished",)
    ]


def test_analyst_sees_the_map_but_no_actions_on_a_phone(session_factory, community, map_db):
    a = session_factory(ANALYST, viewport=PHONE)
    assert a.js("() => registryMap.config.may_edit") is False
    assert a.js("() => registryMap.config.sees_persons") is False
    assert a.js("() => registryMap.renderedBuildings().length") > 0
    assert a.testid("draw-new").is_hidden()
    # the panel is a bottom sheet on a narrow screen
    panel = a.testid("panel").bounding_box()
    assert panel["width"] == PHONE["width"] and panel["y"] > PHONE["height"] / 3
    progress = a.api(f"/communities/{community}/progress")
    a.wait_rate("on_map", progress["buildings_on_map"])

    ((building_id, at),) = clickable_buildings(a, 1)
    a.page.mouse.click(at["x"], at["y"])
    a.page.wait_for_selector(f"[data-testid=building][data-id='{building_id}']")
    assert a.testid("actions").count() == 0
    assert a.page.locator("[data-testid^=action-]").count() == 0
    assert "Residents" not in a.testid("building").inner_text()
    a.shot("phone-building")

    items = a.page.locator("[data-testid=worklist-item]")
    a.testid("tab-worklist").click()
    items.first.wait_for()
    assert items.count() > 0
    a.shot("phone-work-list")
    entry = a.page.locator("[data-testid=worklist-item]:not([data-kind=gap])").first
    target = entry.get_attribute("data-id")
    entry.click()
    a.page.wait_for_selector(f"[data-testid=building][data-id='{target}']")

    a.testid("rate-select").select_option("coverage_rate")
    colour = a.js(
        "() => JSON.stringify(registryMap.map.getPaintProperty('communities-fill', 'fill-color'))"
    )
    assert "coverage_rate" in colour

    a.testid("logout").click()
    a.page.wait_for_url(re.compile(r".*/login.*"))
    a.page.goto(f"{a.server.url}/map")
    assert urlsplit(a.page.url).path == "/login"


def test_admin_places_the_outline_of_a_building_not_on_the_map(session_factory, map_db):
    ((building_id, code),) = sql(
        map_db,
        "SELECT b.id, b.community_code FROM building b JOIN address a ON a.building_id = b.id "
        "WHERE b.footprint IS NULL AND a.door_plate IS NOT NULL ORDER BY b.id LIMIT 1",
    )
    admin = session_factory(ADMIN)
    communities = admin.js("() => registryMap.config.communities.map(c => c.code)")
    assert code in communities and len(communities) > 1
    assert admin.testid("community-select").is_visible()  # several: a picker
    admin.testid("community-select").select_option(code)
    progress = admin.api(f"/communities/{code}/progress")
    admin.wait_rate("on_map", progress["buildings_on_map"])

    admin.open_building(building_id)
    assert "not on the map" in admin.testid("building").inner_text()
    admin.testid("action-place-outline").click()
    admin.page.wait_for_function("() => !registryMap.map.isMoving()")
    admin.js("() => registryMap.jumpAndIdle({zoom: 19, center: registryMap.map.getCenter()})")
    box = admin.testid("map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2 + 60
    square = [(-40, -40), (40, -40), (40, 40), (-40, 40)]
    for dx, dy in square:
        admin.page.mouse.click(cx + dx, cy + dy)
    admin.page.mouse.click(cx - 40, cy - 40)  # the first point again closes the outline
    admin.page.wait_for_selector("[data-testid=vertex-0-0-3]")
    admin.testid("editor-save").click()
    admin.page.wait_for_selector("[data-testid=building-verification][data-state=corrected]")
    admin.wait_rate("on_map", progress["buildings_on_map"] + 1)
    detail = admin.api(f"/buildings/{building_id}")
    assert detail["geometry"] is not None
    corner = admin.lnglat_at(cx - 40, cy - 40)
    assert nearest(detail["geometry"], corner) < 1.0


def test_the_coverage_report_map_renders_offline_too(session_factory, map_db):
    """The report page's folium map (api/report_map.py) in the same browser: Leaflet is
    served by us, its inline scripts pass the page's CSP by hash, and it draws one shape
    per community that has a boundary (counted in SQL); nothing leaves 127.0.0.1."""
    session = session_factory(ANALYST)
    page = session.page
    page.goto(f"{session.server.url}/reports/coverage?f=html&rate=coverage_rate")
    page.wait_for_selector(".leaflet-container path.leaflet-interactive")
    ((with_boundary,),) = sql(
        map_db,
        "SELECT count(*) FROM community WHERE boundary IS NOT NULL AND code IN "
        "(SELECT unnest(jurisdiction) FROM account WHERE name = :name)",
        name=ANALYST,
    )
    shapes = page.locator(".leaflet-container path.leaflet-interactive").count()
    assert with_boundary == 1 and shapes == with_boundary
    assert page.locator("table").count() >= 1  # the rates table beside the map


def test_officer_places_a_door_plate_and_the_building_is_labelled(
    session_factory, community, map_db
):
    """An unlabelled building (no active plate within 30 m of its outline, found in SQL
    through the building_label view): the officer taps "Move plate", then the building on
    the map; the plate lands inside it and the labelled count goes up by one."""
    rows = sql(
        map_db,
        "SELECT l.id, a.code, ST_X(ST_PointOnSurface(b.footprint)), "
        "ST_Y(ST_PointOnSurface(b.footprint)) FROM building_label l "
        "JOIN building b ON b.id = l.id "
        "JOIN address a ON a.building_id = l.id AND a.status = 'active' "
        "WHERE l.community_code = :c AND NOT l.labeled AND b.verification <> 'not_found' "
        "ORDER BY l.id, a.code LIMIT 1",
        c=community,
    )
    assert rows, "the sample community has an unlabelled building with an address"
    building_id, code, lon, lat = rows[0]
    a = session_factory(OFFICER_B)
    before = a.api(f"/communities/{community}/progress")
    a.wait_rate("labeling", before["buildings_labeled"])
    a.open_building(building_id, zoom=True)
    a.testid(f"move-plate-{code}").click()
    a.testid("plate-hint").wait_for()
    x, y = a.js(
        """([lon, lat]) => {
          const m = registryMap.map, r = m.getContainer().getBoundingClientRect();
          const p = m.project([lon, lat]);
          return [p.x + r.left, p.y + r.top];
        }""",
        [lon, lat],
    )
    a.page.mouse.click(x, y)
    a.wait_rate("labeling", before["buildings_labeled"] + 1)
    after = a.api(f"/communities/{community}/progress")
    assert after["buildings_labeled"] == before["buildings_labeled"] + 1
    ((inside, action),) = sql(
        map_db,
        "SELECT ST_Contains(b.footprint, a.door_plate), "
        "(SELECT action FROM building_verification v WHERE v.building_id = b.id "
        "ORDER BY v.id DESC LIMIT 1) FROM address a JOIN building b ON b.id = a.building_id "
        "WHERE a.code = :code",
        code=code,
    )
    assert inside is True and action == "door_plate_moved"
    assert (
        a.page.locator("[data-testid=history-entry]").first.get_attribute("data-action")
        == "door_plate_moved"
    )
