"""Rates of the hand-drawn bundle (tests/hand_bundle.py), worked out by hand.

Community 甲社区 (420111002001, boundary x 0..1000 m):
  buildings that count: B1 B2 B3 B4 B6 B7 B8 = 7 (B5 is demolished)
  on the map: B1 B2 B3 B4 B7 B8 = 6 (B6 has no footprint; B7 under construction counts)
  on_map_rate = 6/7
  reference footprints whose point-on-surface lies in the boundary: F1 F2 F3 F5 F7 F8 = 6
    F1 = B1 exactly: covered (100 %)
    F2 40x60 m, B2 covers 40x40: 1600/2400 = 67 %: covered
    F3 40x40 m, B3 18x40 and B4 18x40: 45 % each, 90 % together: covered by the union only
    F5 only under demolished B5: 0 %, not covered
    F7 40x100 m, B7 covers 40x40: 40 %, not covered
    F8 no building: not covered
  coverage_rate = 3/6
  labelled (on the map, an address naming it with a door plate within 30 m):
    B1 plate 5 m outside: yes;  B2 plate 200 m away: no;  B3 plate 35 m away: no;
    B4 address without a door plate: no;  B7 plate inside: yes (distance 0);
    B8 plate 25 m away: yes;  (B6 has a plate but is not on the map;
    A99 names no building)
  labeling_rate = 3/6
  residents of the community, as of 2026-06-30:
    P1 R1 active; P2 moved out 2026-01-01: inactive; P3 moves out 2026-12-31: active;
    P4 no room: active; P5 room in B6 (no footprint): active; P6 room in demolished B5:
    active; P7 moved out on the as-of date itself (not later): inactive
    active = P1 P3 P4 P5 P6 = 5; placed = P1 P3 = 2 (both in B1)
  population_on_map_rate = 2/5
  organizations, as of 2026-06-30 (active: opened empty or on/before it, closed empty or
  after it): O1 in room R1 of B1: active, on the map; O2 in B6 (no footprint): active,
  not on the map; O3 closed 2026-01-01: inactive; O4 opens 2026-07-01: inactive; O5
  placed nowhere: active, not on the map; O6 closes on the as-of date itself: inactive;
  O7 in demolished B5: active, not on the map
    active = O1 O2 O5 O7 = 4; on the map = O1 = 1
  org_on_map_rate = 1/4

Community 乙社区 (420111002002, boundary x 1000..2000 m):
  buildings: B21 = 1, on the map 1, labelled 1 (plate 10 m away)
  footprints: F9 (covered by B8, a building of 甲社区: the union is of any community) and
  F21 = B21: 2 of 2 covered
  residents by their own community code: P21 (R21) and P22 (lives in R1 of 甲社区's B1):
  2 active, 2 placed
  organizations: O8 in B21, opened on the as-of date (active), and O9 in room R2 of 甲社区's
  B1 (counted by its own community): 2 active, 2 on the map

Community 丙社区 (420111003001): no boundary, no buildings, no residents: every
denominator is 0, so every rate is null.

Street 关山街道 420111002 sums 甲 and 乙: buildings 8, on map 7 (0.875 — the average of
the community rates would be 0.929), footprints 8, covered 5, labelled 4 of 7, residents
7, placed 4, organizations 6, on the map 3. Street 花山街道 420111003 is 丙 alone: all
null. District 洪山区 420111 and the city (420100) sum everything: the same counts as
关山街道.
"""

from __future__ import annotations

import csv
import io
import json
from fractions import Fraction
from pathlib import Path

import pytest

from registry.bundle.load import load_bundle
from registry.rates import FIELDS, compute_rates

from hand_bundle import AS_OF, write_hand_bundle

C1, C2, C3 = "420111002001", "420111002002", "420111003001"


def expected(
    buildings, on_map, footprints, covered, labeled, residents, placed, orgs, orgs_on_map
) -> dict[str, object]:
    def rate(numerator: int, denominator: int) -> float | None:
        return None if denominator == 0 else float(Fraction(numerator, denominator))

    return {
        "buildings": buildings,
        "buildings_on_map": on_map,
        "on_map_rate": rate(on_map, buildings),
        "footprints": footprints,
        "footprints_covered": covered,
        "coverage_rate": rate(covered, footprints),
        "buildings_labeled": labeled,
        "labeling_rate": rate(labeled, on_map),
        "residents": residents,
        "residents_on_map": placed,
        "population_on_map_rate": rate(placed, residents),
        "organizations": orgs,
        "organizations_on_map": orgs_on_map,
        "org_on_map_rate": rate(orgs_on_map, orgs),
    }


COMMUNITY_EXPECTED = {
    C1: expected(7, 6, 6, 3, 3, 5, 2, 4, 1),
    C2: expected(1, 1, 2, 2, 1, 2, 2, 2, 2),
    C3: expected(0, 0, 0, 0, 0, 0, 0, 0, 0),
}
TOTAL = expected(8, 7, 8, 5, 4, 7, 4, 6, 3)


@pytest.fixture
def hand_loaded(session, vault, tmp_path: Path):
    report = load_bundle(session, write_hand_bundle(tmp_path / "hand"), vault)
    assert report.errors == []
    session.commit()
    return session


def without_identity(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in ("level", "code", "name")}


def test_community_rates_match_hand_calculation(hand_loaded):
    rows = compute_rates(hand_loaded, "community", as_of=_date(AS_OF))
    assert [r["code"] for r in rows] == [C1, C2, C3]
    assert [r["name"] for r in rows] == ["甲社区", "乙社区", "丙社区"]
    for row in rows:
        assert list(row) == list(FIELDS)
        assert row["level"] == "community"
        assert without_identity(row) == pytest.approx(COMMUNITY_EXPECTED[row["code"]])


def test_zero_denominators_are_null_not_zero(hand_loaded):
    (row,) = compute_rates(hand_loaded, "community", code=C3, as_of=_date(AS_OF))
    for rate in (
        "on_map_rate",
        "coverage_rate",
        "labeling_rate",
        "population_on_map_rate",
        "org_on_map_rate",
    ):
        assert row[rate] is None


def test_higher_levels_sum_counts(hand_loaded):
    as_of = _date(AS_OF)
    streets = compute_rates(hand_loaded, "street", as_of=as_of)
    assert [(r["code"], r["name"]) for r in streets] == [
        ("420111002", "关山街道"),
        ("420111003", "花山街道"),
    ]
    assert without_identity(streets[0]) == pytest.approx(TOTAL)
    assert without_identity(streets[1]) == pytest.approx(COMMUNITY_EXPECTED[C3])
    # summed counts, not the average of community rates (which would be 13/14)
    assert streets[0]["on_map_rate"] == pytest.approx(7 / 8)

    (district,) = compute_rates(hand_loaded, "district", as_of=as_of)
    assert (district["code"], district["name"]) == ("420111", "洪山区")
    assert without_identity(district) == pytest.approx(TOTAL)

    (city,) = compute_rates(hand_loaded, "city", as_of=as_of)
    assert city["code"] == "420100"
    assert without_identity(city) == pytest.approx(TOTAL)


def test_code_filter_keeps_a_street(hand_loaded):
    rows = compute_rates(hand_loaded, "community", code="420111002", as_of=_date(AS_OF))
    assert [r["code"] for r in rows] == [C1, C2]


def test_as_of_date_changes_who_is_active(hand_loaded):
    """As of 2025-12-31, P2 (moved out 2026-01-01) and P7 (moved out 2026-06-30) are still
    active in 甲社区, both in rooms of B1: 7 active, 4 placed. As of 2027-01-01 P3 has
    moved out too: P1 P4 P5 P6 active, only P1 placed."""
    (row,) = compute_rates(hand_loaded, code=C1, as_of=_date("2025-12-31"))
    assert (row["residents"], row["residents_on_map"]) == (7, 4)
    (row,) = compute_rates(hand_loaded, code=C1, as_of=_date("2027-01-01"))
    assert (row["residents"], row["residents_on_map"]) == (4, 1)


def test_as_of_date_changes_which_organizations_are_active(hand_loaded):
    """As of 2025-12-31 O3 (closed 2026-01-01) is still open in 甲社区, in B1 (on the
    map), and O6 (closes 2026-06-30) too, in B2 (on the map); O4 has not opened: O1 O2
    O3 O5 O6 O7 = 6 active, O1 O3 O6 = 3 on the map. As of 2026-07-01 O4 opens in B2:
    O1 O2 O4 O5 O7 = 5 active, O1 O4 = 2 on the map. The counters and the recount agree."""
    for as_of, active, on_map in (("2025-12-31", 6, 3), ("2026-07-01", 5, 2)):
        for recount in (False, True):
            (row,) = compute_rates(hand_loaded, code=C1, as_of=_date(as_of), recount=recount)
            assert (row["organizations"], row["organizations_on_map"]) == (active, on_map)
            assert row["org_on_map_rate"] == pytest.approx(on_map / active)


def test_empty_registry_has_one_null_city_row(session):
    (city,) = compute_rates(session, "city")
    assert city["buildings"] == 0 and city["on_map_rate"] is None
    assert compute_rates(session, "community") == []


def test_cli_rates_json_csv_and_table(cli, tmp_path: Path, monkeypatch):
    bundle = write_hand_bundle(tmp_path / "hand")
    assert cli("load", bundle).exit_code == 0

    result = cli("rates", "--as-of", AS_OF, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    for row in rows:
        assert without_identity(row) == pytest.approx(COMMUNITY_EXPECTED[row["code"]])

    result = cli("rates", "--as-of", AS_OF, "--format", "csv", "--level", "street")
    parsed = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(parsed[0]) == list(FIELDS)
    assert parsed[0]["on_map_rate"] == "0.875" and parsed[1]["on_map_rate"] == ""

    monkeypatch.setenv("COLUMNS", "200")  # five rate columns: wide enough not to wrap
    result = cli("rates", "--as-of", AS_OF)
    assert "甲社区" in result.stdout and "85.7% (6/7)" in result.stdout
    assert "25.0% (1/4)" in result.stdout  # 甲社区's org_on_map_rate
    assert "— (0/0)" in result.stdout


def test_cli_rates_refuses_bad_options(cli):
    for args, message in [
        (("--level", "province"), "level must be one of"),
        (("--as-of", "30/06/2026"), "is not a date"),
        (("--format", "xml"), "--format must be one of"),
        (("--code", "42011x"), "must be up to 12 digits"),
    ]:
        result = cli("rates", *args)
        assert result.exit_code == 1
        assert message in result.stderr
        assert "Traceback" not in result.output


def _date(text: str):
    import datetime as dt

    return dt.date.fromisoformat(text)
