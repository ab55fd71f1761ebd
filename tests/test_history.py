"""The register's bitemporal history (migration 0010, registry/history.py).

The 光谷 sample is loaded as valid from 2026-01-01 (its bundle.json), then edited now:
each query at a valid time and a known time must return exactly the version that was
true then as recorded then; rates for a past date must not move with later edits, and
must move with a correction of that past, except as known before the correction.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from registry import models
from registry.cli import SAMPLE_BUNDLE
from registry.counts import differences
from registry.history import (
    HistoryError,
    Moment,
    end_of_day,
    moment,
    parse_valid_from,
    set_valid_from,
    table_at,
    versions,
)
from registry.rates import compute_rates

BUILDING = models.Building.__table__
JUNE_30 = dt.date(2026, 6, 30)


def now(session: Session) -> dt.datetime:
    """The database's clock between two transactions: a known-at mark."""
    value = session.scalar(text("SELECT clock_timestamp()"))
    session.commit()
    return value


def building_at(session: Session, building_id: str, at: Moment) -> list[dict]:
    """The versions of one building the moment reads: there must be at most one."""
    source = table_at(BUILDING, at)
    query = select(source.c.id, source.c.floors, source.c.status, source.c.name).where(
        source.c.id == building_id
    )
    return [dict(r._mapping) for r in session.execute(query)]


def an_on_map_building(session: Session) -> tuple[str, str, int]:
    """A building of the sample on the map, with floors and rooms with residents."""
    return session.execute(
        text(
            "SELECT b.id, b.community_code, b.floors FROM building b "
            "WHERE b.footprint IS NOT NULL AND b.status = 'in_use' AND b.floors IS NOT NULL "
            "AND EXISTS (SELECT 1 FROM room JOIN residence r ON r.room_id = room.id "
            "            WHERE room.building_id = b.id AND r.moved_out IS NULL) "
            "ORDER BY b.id LIMIT 1"
        )
    ).one()


def test_each_valid_and_known_time_reads_exactly_its_version(sample):
    building_id, _, floors = an_on_map_building(sample)
    before_load = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    loaded = now(sample)

    sample.execute(
        text("UPDATE building SET floors = floors + 1 WHERE id = :id"), {"id": building_id}
    )
    sample.commit()
    after_floors = now(sample)
    sample.execute(
        text("UPDATE building SET status = 'demolished' WHERE id = :id"), {"id": building_id}
    )
    sample.commit()
    after_demolition = now(sample)
    # a correction of the past: it was renamed on 2026-03-01 (recorded now), which makes
    # the register say what the row says now from March on
    set_valid_from(sample, "2026-03-01")
    sample.execute(text("UPDATE building SET name = 'X' WHERE id = :id"), {"id": building_id})
    sample.commit()

    def read(valid, known=None):
        rows = building_at(sample, building_id, Moment(valid, known))
        assert len(rows) <= 1, rows  # never two versions at one moment
        return rows[0] if rows else None

    feb = dt.datetime(2026, 2, 1, tzinfo=dt.UTC)
    june = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    original = {"id": building_id, "floors": floors, "status": "in_use", "name": None}
    # as known now: the loaded version until March, then the corrected one
    assert read(feb) == original
    assert read(june) == {**original, "floors": floors + 1, "status": "demolished", "name": "X"}
    assert read(dt.datetime.now(dt.UTC)) == read(june)
    # as known before the correction, June was still the loaded version
    assert read(june, after_demolition) == original
    # as known at each step, the register now read as it was then
    assert read(after_floors, after_floors) == {**original, "floors": floors + 1}
    assert read(after_demolition, after_demolition) == {
        **original,
        "floors": floors + 1,
        "status": "demolished",
    }
    assert read(loaded, loaded) == original
    # before the load was recorded, or before its valid time, there was nothing
    assert read(june, before_load) is None
    assert read(dt.datetime(2025, 12, 31, tzinfo=dt.UTC)) is None

    listed = versions(sample, "building", building_id)
    # loaded; floors+1 and demolished (ended, recorded again); the correction from March
    assert [v["valid_from"] for v in listed] == sorted(v["valid_from"] for v in listed)
    assert {
        (v["floors"], v["status"], v["name"]) for v in listed if v["superseded_at"] is None
    } == {
        (floors, "in_use", None),
        (floors + 1, "demolished", "X"),
    }
    assert all(v["recorded_at"] is not None for v in listed)


def test_one_transaction_changing_a_row_twice_keeps_one_version(sample):
    building_id, _, _ = an_on_map_building(sample)
    count = "SELECT count(*) FROM building_history WHERE id = :id"
    before = sample.scalar(text(count), {"id": building_id})
    sample.execute(text("UPDATE building SET floors = 20 WHERE id = :id"), {"id": building_id})
    sample.execute(text("UPDATE building SET floors = 21 WHERE id = :id"), {"id": building_id})
    sample.commit()
    # the loaded version, superseded; its time before the change again; the new one
    assert sample.scalar(text(count), {"id": building_id}) == before + 2
    current = building_at(sample, building_id, Moment(dt.datetime.now(dt.UTC)))
    assert [r["floors"] for r in current] == [21]


def test_a_past_date_keeps_its_rates_through_later_edits(sample):
    at_june = moment(JUNE_30)
    # loaded as valid since January, unedited: the history agrees with the counters
    june = compute_rates(sample, at=at_june)
    assert june == compute_rates(sample, as_of=JUNE_30)
    assert compute_rates(sample, at=Moment(dt.datetime.now(dt.UTC))) == compute_rates(sample)

    building_id, code, _ = an_on_map_building(sample)
    (before,) = [r for r in june if r["code"] == code]
    sample.execute(
        text("UPDATE building SET status = 'demolished' WHERE id = :id"), {"id": building_id}
    )
    sample.execute(text("DELETE FROM address WHERE building_id = :id"), {"id": building_id})
    sample.commit()
    assert differences(sample) == []
    (today,) = compute_rates(sample, code=code)
    # today: one building fewer counts and is on the map (it was on the map, in use)
    assert today["buildings"] == before["buildings"] - 1
    assert today["buildings_on_map"] == before["buildings_on_map"] - 1
    # June 30 as known now: unchanged, the edits are valid from now
    assert compute_rates(sample, at=at_june) == june
    before_correction = now(sample)

    # a correction of the past: demolished since 2026-05-01
    other_id = sample.scalar(
        text(
            "SELECT id FROM building WHERE community_code = :code AND status = 'in_use' "
            "AND footprint IS NOT NULL ORDER BY id LIMIT 1"
        ),
        {"code": code},
    )
    set_valid_from(sample, dt.date(2026, 5, 1))
    sample.execute(
        text("UPDATE building SET status = 'demolished' WHERE id = :id"), {"id": other_id}
    )
    sample.commit()
    (corrected,) = compute_rates(sample, code=code, at=at_june)
    assert corrected["buildings"] == before["buildings"] - 1
    assert corrected["buildings_on_map"] == before["buildings_on_map"] - 1
    # as known before the correction: exactly the figures computed then
    assert compute_rates(sample, at=Moment(at_june.valid, before_correction)) == june


def test_history_rates_equal_the_definitions_now(sample):
    """As valid and known now, the history's counts are the counters' (and so the
    definitions'), for every community: the two implementations cannot drift."""
    current = Moment(dt.datetime.now(dt.UTC))
    for level in ("community", "district"):
        assert compute_rates(sample, level, at=current) == compute_rates(sample, level)
    # one community or street: counted alone in the history, with the same numbers
    for code in ("420111002009", "420111002"):
        assert compute_rates(sample, code=code, at=current) == compute_rates(sample, code=code)


def test_times_are_parsed_strictly():
    assert moment(None, None) is None
    assert moment("2026-06-30").valid == end_of_day(JUNE_30)
    assert moment("2026-06-30T08:00:00+08:00").valid == dt.datetime(
        2026, 6, 30, 0, 0, tzinfo=dt.UTC
    )
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    assert moment(known_at=later.isoformat()).known is None  # the future is known as now
    for bad in ("yesterday", "2026-02-30", "30/06/2026"):
        with pytest.raises(HistoryError, match="valid_at"):
            moment(bad)
    with pytest.raises(HistoryError, match="in the future"):
        parse_valid_from(later.isoformat())


def test_a_future_valid_from_is_refused_by_the_database_too(sample):
    sample.execute(text("SELECT set_config('registry.valid_from', '2999-01-01', true)"))
    with pytest.raises(Exception, match="in the future"):
        sample.execute(
            text("UPDATE building SET floors = 3 WHERE id = (SELECT min(id) FROM building)")
        )
    sample.rollback()


def test_load_valid_from_option_and_bundle_errors(cli, tmp_path):
    result = cli("load", SAMPLE_BUNDLE, "--valid-from", "2999-01-01")
    assert result.exit_code == 1
    assert "valid_from" in result.output and "in the future" in result.output
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "bundle.json").write_text('{"valid_from": "soon"}', encoding="utf-8")
    (bad / "communities.csv").write_text("code,name\n", encoding="utf-8")
    result = cli("load", bad)
    assert result.exit_code == 1
    assert "bundle.json, field valid_from" in result.output
    assert "Traceback" not in result.output


def test_rates_cli_as_of_and_known_at(cli):
    assert cli("load", SAMPLE_BUNDLE).exit_code == 0

    loaded = cli("rates", "--as-of", "2026-06-30", "--format", "json", "--level", "city")
    assert loaded.exit_code == 0, loaded.output
    (city,) = json.loads(loaded.output)
    assert city["buildings"] > 0  # valid since 2026-01-01 (bundle.json)
    # known before anything was recorded: the register was empty
    empty = cli("rates", "--as-of", "2026-06-30", "--known-at", "2025-01-01", "--format", "json")
    assert empty.exit_code == 0, empty.output
    assert json.loads(empty.output) == []
    result = cli("rates", "--known-at", "noon")
    assert result.exit_code == 1 and "known_at 'noon'" in result.output


# ---------------------------------------------------------------- over HTTP


def test_collections_and_reports_at_a_past_time(sample, db_url, tmp_path):
    from fastapi.testclient import TestClient

    from api import create_app

    from conftest import api_settings_for, bearer, grant

    building_id, code, _ = an_on_map_building(sample)
    sample.execute(
        text("UPDATE building SET status = 'demolished' WHERE id = :id"), {"id": building_id}
    )
    sample.commit()
    june = compute_rates(sample, at=moment(JUNE_30))
    token = bearer(grant(db_url, "history-admin", "admin"))
    with TestClient(create_app(api_settings_for(db_url, tmp_path))) as client:

        def get(path: str, **params):
            return client.get(path, params=params, headers=token)

        item = f"/collections/buildings/items/{building_id}"
        assert get(item).json()["properties"]["status"] == "demolished"
        assert get(item, valid_at="2026-06-30").json()["properties"]["status"] == "in_use"
        assert get(item, valid_at="2025-12-31").status_code == 404  # not yet registered
        before = get("/collections/buildings/items", valid_at="2025-12-31", limit=5).json()
        assert before["features"] == []
        page = get("/collections/communities/items", valid_at="2026-06-30", limit=100).json()
        by_code = {f["id"]: f["properties"] for f in page["features"]}
        (june_row,) = [r for r in june if r["code"] == code]
        assert by_code[code]["buildings"] == june_row["buildings"]
        now_page = get("/collections/communities/items", limit=100).json()
        now_by_code = {f["id"]: f["properties"] for f in now_page["features"]}
        assert now_by_code[code]["buildings"] == june_row["buildings"] - 1

        report = get("/reports/coverage", as_of="2026-06-30")
        assert report.status_code == 200 and report.json() == june
        empty = get("/reports/coverage", as_of="2026-06-30", known_at="2025-01-01T00:00:00Z")
        assert empty.json() == [] and empty.headers["X-Known-At"].startswith("2025-01-01")
        for path, params in (
            (item, {"valid_at": "soon"}),
            ("/collections/buildings/items", {"known_at": "2026-13-01"}),
            ("/collections/coverage-gaps/items", {"valid_at": "2026-06-30"}),
            ("/reports/coverage", {"known_at": "yesterday"}),
        ):
            response = get(path, **params)
            assert response.status_code == 400, (path, response.text)
            assert response.headers["content-type"].startswith("application/problem+json")


def test_history_and_changes_commands(cli):
    assert cli("load", SAMPLE_BUNDLE).exit_code == 0
    building = "GG-0008"
    listed = cli("history", "building", building, "--format", "json")
    assert listed.exit_code == 0, listed.output
    (version,) = json.loads(listed.output)
    assert version["id"] == building and version["valid_from"].startswith("2026-01-01")
    table = cli("history", "building", building)
    assert "1 version" in table.output and "MultiPolygon" in table.output
    missing = cli("history", "building", "NO-SUCH")
    assert missing.exit_code == 1 and "no building 'NO-SUCH'" in missing.output
    wrong = cli("history", "person", "1")
    assert wrong.exit_code == 1 and "no history of 'person'" in wrong.output
    feed = cli("changes", "--after", "0", "--limit", "3", "--entity", "community")
    lines = [json.loads(line) for line in feed.output.splitlines()]
    assert [c["seq"] for c in lines[:-1]] == [1, 2, 3]
    assert {c["entity"] for c in lines[:-1]} == {"community"}
    assert lines[-1]["next_after"] == 3 and lines[-1]["latest"] > 3


def test_a_merge_keeps_the_history_of_the_retired_ids(sample):
    from registry.lineage import merge_buildings

    first, second = sample.scalars(
        text(
            "SELECT id FROM building WHERE community_code = '420111002009' "
            "AND status = 'in_use' AND footprint IS NOT NULL ORDER BY id LIMIT 2"
        )
    )
    rooms = sample.scalar(
        text("SELECT count(*) FROM room WHERE building_id IN (:a, :b)"), {"a": first, "b": second}
    )
    june = compute_rates(sample, at=moment(JUNE_30))
    result = merge_buildings(sample, [first, second], "tester", "one building, two ids")
    sample.commit()
    (successor,) = result["successors"]
    new_id = successor["id"]
    for old in (first, second):
        listed = versions(sample, "building", old)
        # as known now: loaded valid since January, ended by the merge; nothing after it
        current = [v for v in listed if v["superseded_at"] is None]
        assert len(current) == 1 and current[0]["valid_to"] is not None
        assert building_at(sample, old, Moment(dt.datetime.now(dt.UTC))) == []
        assert len(building_at(sample, old, moment(JUNE_30))) == 1
    (merged,) = building_at(sample, new_id, Moment(dt.datetime.now(dt.UTC)))
    assert merged["status"] == "in_use"
    # the rooms moved: each has a new version naming the new building, none lost
    moved = sample.scalar(
        text("SELECT count(*) FROM registry_room_at(now(), NULL) WHERE building_id = :id"),
        {"id": new_id},
    )
    assert moved == rooms
    # June 30 is as it was: the merge is valid from now
    assert compute_rates(sample, at=moment(JUNE_30)) == june
