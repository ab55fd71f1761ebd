"""The change feed (migration 0010, registry/changes.py, GET /changes).

Every change must reach a client that follows ``next_after`` exactly once and in commit
order, also while writers commit concurrently and a slow transaction that changed a row
first commits last (a feed numbered at write time would let the client skip it). Who may
see what: residence changes only for officers and stations, and only in their scope.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session, sessionmaker

from api import create_app
from registry.changes import changes_after
from registry.history import HistoryError

from conftest import bearer, grant

COMMUNITY = "420111002009"  # 汽标社区
OTHER_COMMUNITY = "420111002005"  # 南望社区


def read_all(session: Session, after: int, limit: int = 10_000) -> list[dict[str, Any]]:
    out = []
    while True:
        page = changes_after(session, after, limit, with_data=False)
        session.commit()
        out += page.changes
        if not page.changes:
            return out
        after = page.next_after


def test_a_load_and_an_edit_appear_once_with_their_data(sample):
    counts = sample.execute(
        text(
            "SELECT (SELECT count(*) FROM community) + (SELECT count(*) FROM building) "
            "+ (SELECT count(*) FROM address) + (SELECT count(*) FROM room) "
            "+ (SELECT count(*) FROM residence) + (SELECT count(*) FROM footprint) "
            "+ (SELECT count(*) FROM organization) + (SELECT count(*) FROM employment)"
        )
    ).scalar_one()
    loaded = read_all(sample, 0)
    # the load inserted every row once, in one transaction: one insert each
    assert len(loaded) == counts
    assert {c["op"] for c in loaded} == {"insert"}
    assert [c["seq"] for c in loaded] == list(range(1, counts + 1))
    # a full page with the values: every insert carries its row (one query per entity)
    page = changes_after(sample, 0, min(counts, 10_000))
    assert len(page.changes) == min(counts, 10_000)
    assert all(c["data"] is not None for c in page.changes)
    sample.commit()
    building_id = sample.scalar(text("SELECT min(id) FROM building"))
    sample.execute(text("UPDATE building SET floors = 12 WHERE id = :id"), {"id": building_id})
    sample.commit()
    page = changes_after(sample, counts)
    (change,) = page.changes
    assert change["seq"] == counts + 1 and page.next_after == counts + 1
    assert (change["entity"], change["id"], change["op"]) == ("building", building_id, "update")
    assert change["data"]["floors"] == 12 and change["data"]["footprint"]["type"] == "MultiPolygon"
    # an update that changes nothing is no change
    sample.execute(text("UPDATE building SET floors = 12 WHERE id = :id"), {"id": building_id})
    sample.commit()
    assert changes_after(sample, counts + 1).changes == []
    sample.execute(text("DELETE FROM address WHERE code = (SELECT min(code) FROM address)"))
    sample.commit()
    (deleted,) = changes_after(sample, counts + 1).changes
    assert deleted["op"] == "delete" and deleted["data"] is None


def test_bad_requests_are_refused(sample):
    for after, limit, entities, message in (
        (-1, 10, None, "after"),
        (0, 0, None, "limit"),
        (0, 10, ["person"], "entity 'person'"),
    ):
        with pytest.raises(HistoryError, match=message):
            changes_after(sample, after, limit, entities)


def test_concurrent_writers_reach_a_follower_exactly_once_in_order(sample, db_url):
    engine = create_engine(db_url, pool_size=8)
    new_session = sessionmaker(engine)
    ids = list(sample.scalars(text("SELECT id FROM building ORDER BY id LIMIT 40")))
    start = changes_after(sample, 0, 1).latest
    sample.commit()
    made: list[int] = []  # rows each committed transaction changed
    lock = threading.Lock()
    errors: list[BaseException] = []
    writing = threading.Event()
    writing.set()

    def writer(own: list[str], slow: bool) -> None:
        rng = random.Random(len(own) * 7 + slow)
        try:
            for round_ in range(12):
                with new_session() as session:
                    chosen = rng.sample(own, rng.randint(1, 3))
                    session.execute(
                        text(
                            "UPDATE building SET floors = coalesce(floors, 1) + 1 "
                            "WHERE id = ANY(:ids)"
                        ),
                        {"ids": chosen},
                    )
                    # a slow writer keeps its numbered-at-write change uncommitted while
                    # others commit after it
                    time.sleep(0.25 if slow and round_ % 3 == 0 else rng.random() * 0.01)
                    session.commit()
                    with lock:
                        made.append(len(chosen))
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    followed: list[dict[str, Any]] = []

    def follower() -> None:
        after = start
        try:
            with new_session() as session:
                while True:
                    # writers done before this read began: an empty page is the end
                    done = not writing.is_set()
                    page = changes_after(session, after, 5, with_data=False)
                    session.commit()
                    followed.extend(page.changes)
                    after = page.next_after
                    if done and not page.changes:
                        return
                    time.sleep(0.002)
        except BaseException as exc:
            errors.append(exc)

    writers = [threading.Thread(target=writer, args=(ids[i::4], i == 0)) for i in range(4)]
    reader = threading.Thread(target=follower)
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    writing.clear()
    reader.join(timeout=60)
    engine.dispose()
    assert not errors, errors
    everything = read_all(sample, start)
    assert len(everything) == sum(made) > 48  # one change per row each commit changed
    # the follower saw every change once, in the order of the final feed
    assert [c["seq"] for c in followed] == [c["seq"] for c in everything]
    assert len({c["seq"] for c in followed}) == len(followed)
    assert all(a["seq"] < b["seq"] for a, b in itertools.pairwise(followed))


# ---------------------------------------------------------------- over HTTP, by role


@pytest.fixture(scope="module")
def tokens(sample_db_url) -> dict[str, str]:
    roles = {
        "officer": ("officer", (COMMUNITY,)),
        "station": ("station", ("420111002",)),
        "analyst": ("analyst", ("420111",)),
        "gis": ("gis", ("420111",)),
        "admin": ("admin", ()),
    }
    return {
        key: grant(sample_db_url, f"changes-{key}", role, jurisdiction)
        for key, (role, jurisdiction) in roles.items()
    }


@pytest.fixture(scope="module")
def client(api_settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as client:
        yield client


@pytest.fixture(scope="module")
def truth(sample_db_url) -> dict[str, int]:
    """Counts read as the owner: what each role should be shown of the sample's load."""
    engine = create_engine(sample_db_url)
    with engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT count(*) FILTER (WHERE entity = 'residence') AS residences, "
                "count(*) FILTER (WHERE entity = 'residence' AND scope_code = :c) AS own, "
                "count(*) FILTER (WHERE entity = 'building') AS buildings, "
                "count(*) FILTER (WHERE entity = 'building' AND scope_code = :c) AS own_b, "
                "count(*) AS total FROM registry_change"
            ),
            {"c": COMMUNITY},
        ).one()
    engine.dispose()
    return dict(row._mapping)


def feed(client: TestClient, token: str, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = 0
    while True:
        response = client.get(
            "/changes", params={"after": after, "limit": 5000, **params}, headers=bearer(token)
        )
        assert response.status_code == 200, response.text
        body = response.json()
        out += body["changes"]
        if not body["changes"]:
            return out
        after = body["next_after"]


def test_persons_only_for_person_roles_in_scope(client, tokens, truth):
    officer = feed(client, tokens["officer"], entity="residence,building")
    residences = [c for c in officer if c["entity"] == "residence"]
    assert len(residences) == truth["own"] > 0
    assert all(c["data"]["community_code"] == COMMUNITY for c in residences)
    assert len([c for c in officer if c["entity"] == "building"]) == truth["own_b"] > 0
    station = feed(client, tokens["station"], entity="residence")
    assert len(station) == truth["residences"]
    for role in ("analyst", "gis", "admin"):
        seen = feed(client, tokens[role], entity="residence,building")
        assert {c["entity"] for c in seen} == {"building"}, role
        assert len(seen) == truth["buildings"]


def test_the_feed_over_http_pages_to_the_end(client, tokens, truth):
    first = client.get("/changes", params={"limit": 3}, headers=bearer(tokens["admin"])).json()
    assert [c["seq"] for c in first["changes"]] == [1, 2, 3]
    assert first["next_after"] == 3 and first["latest"] == truth["total"]
    assert first["links"][0]["href"].endswith("/changes?after=3&limit=3")
    # a page hidden entirely by the caller's scope still moves next_after to the newest
    last = client.get(
        "/changes", params={"after": truth["total"] - 1}, headers=bearer(tokens["admin"])
    ).json()
    assert last["next_after"] == truth["total"]
    for params in ({"after": -1}, {"limit": 0}, {"entity": "person"}):
        response = client.get("/changes", params=params, headers=bearer(tokens["admin"]))
        assert response.status_code in (400, 422), response.text
    assert client.get("/changes").status_code == 401


def test_a_building_history_over_http(client, tokens, sample_db_url):
    building = client.get(
        "/collections/buildings/items", params={"limit": 1}, headers=bearer(tokens["officer"])
    ).json()["features"][0]["id"]
    response = client.get(f"/buildings/{building}/history", headers=bearer(tokens["officer"]))
    assert response.status_code == 200
    (version,) = response.json()["versions"]
    assert version["id"] == building and version["valid_to"] is None
    assert version["recorded_at"] and version["superseded_at"] is None
    elsewhere = grant(sample_db_url, "changes-officer-elsewhere", "officer", (OTHER_COMMUNITY,))
    hidden = client.get(f"/buildings/{building}/history", headers=bearer(elsewhere))
    assert hidden.status_code == 404
