"""registry.analysis against the hand-drawn bundle, whose every gap and finding is worked
out by hand below from tests/hand_bundle.py (distances in metres on the ground)."""

from __future__ import annotations

import doctest
import math
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import text

from registry import analysis
from registry.bundle.load import load_bundle
from registry.settings import RegistryError

from hand_bundle import AS_OF, write_hand_bundle
from test_rates import C1, C2, C3, COMMUNITY_EXPECTED, without_identity


@pytest.fixture
def hand(session, vault, engine, tmp_path: Path):
    report = load_bundle(session, write_hand_bundle(tmp_path / "hand"), vault)
    assert report.errors == []
    session.commit()
    return engine


def test_doctests():
    assert doctest.testmod(analysis).failed == 0


def test_rates_are_the_cli_rates(hand):
    table = analysis.rates(as_of=AS_OF, engine=hand)
    assert list(table["code"]) == [C1, C2, C3]
    for row in table.to_dict("records"):
        # pandas holds a null rate (0/0) as NaN
        row = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        assert without_identity(row) == pytest.approx(COMMUNITY_EXPECTED[row["code"]])


def test_communities_carry_boundaries_in_either_crs(hand):
    metres = analysis.communities(as_of=AS_OF, crs=4547, engine=hand).set_index("code")
    # C1 and C2 are 1000 m squares; C3 has no boundary
    assert metres.loc[C1].geometry.area == pytest.approx(1_000_000, rel=1e-4)
    assert metres.loc[C2].geometry.area == pytest.approx(1_000_000, rel=1e-4)
    assert metres.loc[C3].geometry is None
    assert metres.loc[C1, "on_map_rate"] == pytest.approx(6 / 7)
    degrees = analysis.communities(code="420111002", engine=hand)
    assert degrees.crs.to_epsg() == 4490 and set(degrees["code"]) == {C1, C2}


def ids(frame, column: str = "id") -> set[str]:
    return set(frame[column])


def test_each_gap_lists_what_keeps_its_rate_below_100(hand):
    # not on the map: of C1's 7 counted buildings only B6 has no outline (B5 is
    # demolished, so not counted); placed at its address A6's door plate
    unmapped = analysis.gaps("buildings_not_on_map", engine=hand)
    assert ids(unmapped) == {"B6"} and unmapped.geometry.iloc[0].geom_type == "Point"
    # not labelled: B2's plate is 200 m away, B3's 35 m, B4 has none; B1 (5 m), B7
    # (inside), B8 (25 m) and B21 (10 m) are labelled
    assert ids(analysis.gaps("buildings_not_labeled", engine=hand)) == {"B2", "B3", "B4"}
    # not covered: F5 (only demolished B5 on it), F7 (B7 covers 40 %), F8 (nothing);
    # F2 is 67 % covered and F3 90 %, so they count as covered
    uncovered = analysis.gaps("footprints_not_covered", crs=4547, engine=hand)
    assert ids(uncovered) == {"F5", "F7", "F8"}
    assert uncovered.set_index("id").loc["F7", "covered_share"] == pytest.approx(0.4, abs=1e-3)


def test_residents_not_on_map_are_counts_per_building(hand):
    # active at AS_OF in C1: 甲 (R1/B1) and 丙 (R2/B1) placed; 丁 (no room), 戊 (R6/B6, no
    # outline) and 己 (R5/B5, demolished) not; 乙 and 庚 had moved out
    frame = analysis.gaps("residents_not_on_map", as_of=AS_OF, engine=hand)
    assert set(frame.columns) == {"community_code", "building_id", "residents", "geometry"}
    counts = {
        (r.community_code, None if pd.isna(r.building_id) else r.building_id): r.residents
        for r in frame.itertuples()
    }
    assert counts == {(C1, None): 1, (C1, "B5"): 1, (C1, "B6"): 1}, counts
    expected = COMMUNITY_EXPECTED[C1]
    assert sum(counts.values()) == expected["residents"] - expected["residents_on_map"]


def findings(engine, **kwargs) -> set[tuple[str, str]]:
    frame = analysis.quality_checks(as_of=AS_OF, engine=engine, **kwargs)
    return {(r.check, r.target_id) for r in frame.itertuples()}


def test_quality_checks_fire_on_the_hand_cases_and_close_when_fixed(hand):
    # A2 200 m and A3 35 m from their buildings; B8 drawn inside C2 though in C1; 己 lives
    # in demolished B5; every building has 6 floors, rooms are on floors 1-4, so no room is
    # above them; 壬 is registered in C2 but lives in R1 of C1's B1; C3 has no boundary
    assert findings(hand) == {
        ("door_plate_far", "A2"),
        ("door_plate_far", "A3"),
        ("building_outside_community", "B8"),
        ("residents_in_demolished", "B5"),
        ("resident_community_mismatch", "B1"),
        ("community_without_boundary", C3),
    }
    frame = analysis.quality_checks(as_of=AS_OF, engine=hand)
    assert list(frame["severity"])[:2] == ["error", "error"]  # errors first
    with hand.begin() as conn:
        # B1 gets 3 floors: R2 on floor 4 is above it; A2's plate moves next to B2
        conn.execute(text("UPDATE building SET floors = 3 WHERE id = 'B1'"))
        conn.execute(
            text(
                "UPDATE address SET door_plate = "
                "(SELECT door_plate FROM address WHERE code = 'A1') WHERE code = 'A2'"
            )
        )
    after = findings(hand)
    assert ("room_above_floors", "R2") in after and ("room_above_floors", "R1") not in after
    assert ("door_plate_far", "A2") in after  # A1's plate is ~100 m from B2: still far
    with hand.begin() as conn:
        conn.execute(
            text(
                "UPDATE address SET door_plate = ST_PointOnSurface(b.footprint) "
                "FROM building b WHERE b.id = 'B2' AND address.code = 'A2'"
            )
        )
    assert ("door_plate_far", "A2") not in findings(hand)  # fixed data closes the finding
    assert findings(hand, code="420111002002") == set()  # C2 has nothing wrong


def test_bad_arguments_are_clear_errors(hand):
    with pytest.raises(RegistryError, match="kind must be one of"):
        analysis.gaps("nothing", engine=hand)
    with pytest.raises(RegistryError, match="crs must be one of"):
        analysis.communities(crs=3857, engine=hand)
    with pytest.raises(RegistryError, match="not a date"):
        analysis.rates(as_of="yesterday", engine=hand)
    with pytest.raises(RegistryError, match="12 digits"):
        analysis.quality_checks(code="42x", engine=hand)


def test_a_notebook_below_the_clone_finds_the_embedded_cluster(tmp_path: Path):
    home = tmp_path / ".registry"
    home.mkdir()
    (home / "cluster.json").write_text("{}")
    below = tmp_path / "notebooks" / "out"
    below.mkdir(parents=True)
    assert analysis.nearest_home(below) == home
    (home / "cluster.json").unlink()  # a .registry without a cluster does not count
    assert analysis.nearest_home(below) != home
