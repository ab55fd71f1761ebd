"""The counters behind the rates (migration 0004) always equal the definitions.

After the sample load and after every kind of edit a rate can see — on each table the
triggers watch — ``registry.counts.differences`` (counters versus
``community_recount.sql``, the rate definitions evaluated from scratch) must be empty, at
several as-of dates. Each edit is also checked to have moved the counter it should, so
the test cannot pass by both sides staying still.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from registry.bundle.load import load_bundle
from registry.cli import SAMPLE_BUNDLE
from registry.counts import defer_counts, differences, recount
from registry.db import make_engine
from registry.rates import compute_rates

DATES = (None, dt.date(2020, 1, 1), dt.date(2026, 6, 30), dt.date(2031, 1, 1))


def assert_counters_exact(session: Session) -> None:
    for as_of in DATES:
        assert differences(session, as_of) == [], f"as of {as_of}"


def counts(session: Session, code: str) -> dict:
    (row,) = compute_rates(session, code=code)
    return row


def one(session: Session, sql: str, **params):
    return session.execute(text(sql), params).one()


def test_the_sample_load_leaves_exact_counters(sample):
    assert_counters_exact(sample)
    rows = compute_rates(sample)
    assert sum(r["buildings"] for r in rows) > 0 and sum(r["residents"] for r in rows) > 0


def test_building_edits_move_their_counters(sample):
    building, code = one(
        sample,
        "SELECT b.id, b.community_code FROM building b JOIN room ON room.building_id = b.id "
        "JOIN residence r ON r.room_id = room.id AND r.moved_out IS NULL "
        "WHERE b.footprint IS NOT NULL AND b.status = 'in_use' LIMIT 1",
    )
    before = counts(sample, code)
    # off the map: its own on-map count, its residents' placement, the cover it gave
    sample.execute(text("UPDATE building SET footprint = NULL WHERE id = :b"), {"b": building})
    sample.commit()
    after = counts(sample, code)
    assert after["buildings_on_map"] == before["buildings_on_map"] - 1
    assert after["residents_on_map"] < before["residents_on_map"]
    assert_counters_exact(sample)
    # demolished: no longer counted at all
    sample.execute(text("UPDATE building SET status = 'demolished' WHERE id = :b"), {"b": building})
    sample.commit()
    assert counts(sample, code)["buildings"] == before["buildings"] - 1
    assert_counters_exact(sample)
    # a verification that changes nothing a rate reads leaves every count alone
    sample.execute(
        text("UPDATE building SET verification = 'verified', verified_at = now() WHERE id = :b"),
        {"b": building},
    )
    sample.commit()
    assert counts(sample, code) == counts(sample, code) and differences(sample) == []


def test_a_new_outline_covers_a_gap(sample):
    footprint, code = one(
        sample,
        "SELECT id, community_code FROM footprint_cover WHERE NOT covered LIMIT 1",
    )
    before = counts(sample, code)
    sample.execute(
        text(
            "INSERT INTO building (id, community_code, footprint) "
            "SELECT 'B-NEW-1', :c, geom FROM footprint WHERE id = :f"
        ),
        {"c": code, "f": footprint},
    )
    sample.commit()
    after = counts(sample, code)
    assert after["footprints_covered"] == before["footprints_covered"] + 1
    assert after["buildings_on_map"] == before["buildings_on_map"] + 1
    assert_counters_exact(sample)
    sample.execute(text("DELETE FROM building WHERE id = 'B-NEW-1'"))
    sample.commit()
    assert counts(sample, code) == before
    assert_counters_exact(sample)


def test_address_room_residence_footprint_and_boundary_edits(sample):
    # an address's door plate moved 1 km away unlabels its building
    building, code = one(
        sample,
        "SELECT id, community_code FROM building_label WHERE labeled "
        "AND id IN (SELECT building_id FROM address GROUP BY building_id HAVING count(*) = 1) "
        "LIMIT 1",
    )
    before = counts(sample, code)
    sample.execute(
        text(
            "UPDATE address SET door_plate = ST_Translate(door_plate, 0.01, 0) "
            "WHERE building_id = :b"
        ),
        {"b": building},
    )
    sample.commit()
    assert counts(sample, code)["buildings_labeled"] == before["buildings_labeled"] - 1
    assert_counters_exact(sample)

    # residents move out (now) and in again; a room moves to an unmapped building
    sample.execute(
        text(
            "UPDATE residence SET moved_out = DATE '2026-09-01' WHERE id IN (SELECT id "
            "FROM residence WHERE moved_out IS NULL AND moved_in < DATE '2026-01-01' LIMIT 25)"
        )
    )
    sample.execute(
        text(
            "UPDATE room SET building_id = (SELECT id FROM building WHERE footprint IS NULL "
            "AND status <> 'demolished' LIMIT 1) "
            "WHERE id IN (SELECT room_id FROM residence WHERE moved_out IS NULL "
            "AND room_id IS NOT NULL LIMIT 3)"
        )
    )
    sample.execute(text("DELETE FROM residence WHERE id IN (SELECT id FROM residence LIMIT 10)"))
    sample.commit()
    assert_counters_exact(sample)

    # reference footprints: one moved, one deleted, one added
    sample.execute(
        text(
            "UPDATE footprint SET geom = ST_Translate(geom, 0.0002, 0) WHERE id = "
            "(SELECT min(id) FROM footprint)"
        )
    )
    sample.execute(text("DELETE FROM footprint WHERE id = (SELECT max(id) FROM footprint)"))
    sample.execute(
        text(
            "INSERT INTO footprint (id, source, geom) SELECT 'F-NEW-1', 'test', footprint "
            "FROM building WHERE footprint IS NOT NULL LIMIT 1"
        )
    )
    sample.commit()
    assert_counters_exact(sample)

    # a boundary shifted east hands footprints to its neighbour
    sample.execute(
        text(
            "UPDATE community SET boundary = ST_Translate(boundary, 0.003, 0) WHERE code = "
            "(SELECT community_code FROM footprint_cover_state GROUP BY community_code "
            "ORDER BY count(*) DESC LIMIT 1)"
        )
    )
    sample.commit()
    assert_counters_exact(sample)


def test_concurrent_writers_to_one_community_both_count(db_url, vault):
    engine = make_engine(db_url)
    make = sessionmaker(engine)
    with make() as session:
        assert load_bundle(session, SAMPLE_BUNDLE, vault).written
        session.commit()
        code, first, second = one(
            session,
            "SELECT community_code, min(id), max(id) FROM building WHERE footprint IS NOT NULL "
            "GROUP BY community_code ORDER BY count(*) DESC LIMIT 1",
        )
        before = counts(session, code)
    unmap = text("UPDATE building SET footprint = NULL WHERE id = :b")
    first_writer = make()
    first_writer.execute(unmap, {"b": first})  # counted, not yet committed

    def second_writer() -> None:
        with make() as s:
            s.execute(unmap, {"b": second})
            s.commit()

    thread = threading.Thread(target=second_writer)
    thread.start()
    with make() as watcher:  # the second recount waits for the first writer's lock
        for _ in range(100):
            waiting = watcher.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            ).scalar_one()
            if waiting:
                break
            watcher.rollback()
            time.sleep(0.05)
        assert waiting == 1
    first_writer.commit()
    first_writer.close()
    thread.join(timeout=60)
    with make() as session:
        assert counts(session, code)["buildings_on_map"] == before["buildings_on_map"] - 2
        assert_counters_exact(session)
    engine.dispose()


def test_a_deferred_bulk_change_counts_at_recount(sample):
    code = one(sample, "SELECT code FROM community ORDER BY code LIMIT 1")[0]
    before = counts(sample, code)
    defer_counts(sample)
    sample.execute(
        text("UPDATE building SET status = 'demolished' WHERE community_code = :c"), {"c": code}
    )
    # deferred: not yet (organizations have no counters: they are counted live)
    live = ("organizations", "organizations_on_map", "org_on_map_rate")
    assert {k: v for k, v in counts(sample, code).items() if k not in live} == {
        k: v for k, v in before.items() if k not in live
    }
    recount(sample)
    sample.commit()
    assert counts(sample, code)["buildings"] == 0
    assert_counters_exact(sample)


def test_rates_cli_recount_agrees(cli, sample, tmp_path: Path):
    kept = cli("rates", "--format", "json")
    exact = cli("rates", "--format", "json", "--recount")
    assert kept.exit_code == exact.exit_code == 0, exact.output
    assert kept.output == exact.output
