"""Matching free text to rooms, the review queue, `registry match`, the API and import.

Truths come from the sample bundle's files: GG-A-0008 is 雄楚大道609号 南望苑2期 1栋,
labelling building GG-0008, whose rooms (rooms.csv) include GG-0008-1-101 and
GG-0008-2-101 (two units, so a room number alone does not name a room).
"""

from __future__ import annotations

import csv
import random
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from api import create_app
from registry.address.match import Matcher
from registry.cli import SAMPLE_BUNDLE
from registry.idnumber import synthetic_id_number
from registry.models import AddressReview, Residence

from conftest import api_settings_for, bearer, grant


@pytest.fixture(scope="module")
def matcher(sample_db_url):
    engine = create_engine(sample_db_url)
    with Session(engine) as session:
        yield Matcher.load(session)
    engine.dispose()


def test_exact_building_and_room_is_placed(matcher):
    result = matcher.match("洪山区雄楚大道609号南望苑二期1栋2单元101室")
    assert (result.status, result.method, result.score) == ("matched", "exact", 1.0)
    assert (result.address_code, result.room_id) == ("GG-A-0008", "GG-0008-2-101")


def test_dash_fullwidth_and_traditional_forms_place_the_same_room(matcher):
    for text_form in (
        "雄楚大道609號南望苑2期1-2-101",
        "雄楚大道６０９号南望苑２期１栋２单元１０１",
    ):
        result = matcher.match(text_form)
        assert (result.status, result.room_id) == ("matched", "GG-0008-2-101"), text_form


@pytest.mark.parametrize(
    ("text_form", "method"),
    [
        ("雄楚大道609号南望苑2期1栋101室", "room_not_found"),  # two units: which 101?
        ("雄楚大道609号南望苑2期1栋", "building"),  # no room named
        ("雄楚大道609号南望苑2期1栋9单元101室", "room_not_found"),  # no such unit
        ("南望苑2期1栋2单元101室 珞喻路999号", "conflict"),  # the road contradicts
    ],
)
def test_anything_less_than_exact_goes_to_review(matcher, text_form, method):
    result = matcher.match(text_form)
    assert (result.status, result.method) == ("review", method)
    assert result.room_id is None and result.address_code is None
    assert "GG-A-0008" in {c.address_code for c in result.candidates}


def test_unknown_text_is_unmatched_and_near_misses_get_trigram_candidates(matcher):
    assert matcher.match("火星基地1号").status == "unmatched"
    assert matcher.match("").status == "unmatched"
    near = matcher.match("雄楚大道6099号")  # no such house number: similar ones proposed
    assert near.status == "review" and near.method == "trigram"
    assert near.candidates and all(0 < c.score <= 1 for c in near.candidates)


# ---------------------------------------------------------------- registry match


def test_match_command_adds_columns(cli, tmp_path: Path):
    cli("load", SAMPLE_BUNDLE)
    source = tmp_path / "list.csv"
    source.write_bytes(
        "姓名,住址\n张三,雄楚大道609号南望苑2期1栋2单元101室\n李四,火星基地1号\n".encode("gb18030")
    )
    out = tmp_path / "out.csv"
    result = cli("match", source, "--column", "住址", "--out", out, "--queue")
    assert result.exit_code == 0, result.output
    assert "1 matched, 0 review, 1 unmatched" in result.stdout
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # BOM: Excel opens it as UTF-8
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert rows[0]["姓名"] == "张三" and rows[0]["room_id"] == "GG-0008-2-101"
    assert rows[0]["status"] == "matched" and rows[1]["status"] == "unmatched"
    listed = cli("review", "list", "--format", "json")
    assert "火星基地1号" in listed.stdout


def test_match_command_errors(cli, tmp_path: Path):
    cli("load", SAMPLE_BUNDLE)
    source = tmp_path / "list.csv"
    source.write_text("name,addr\nx,y\n", encoding="utf-8")
    result = cli("match", source)
    assert result.exit_code == 1
    assert "no column 'address'; columns: name, addr" in result.stderr
    assert cli("match", tmp_path / "missing.csv").exit_code == 1


# ---------------------------------------------------------------- import and review


def bundle_with_addresses(tmp_path: Path, rows: list[tuple[str, str]]) -> Path:
    """The sample bundle with residents.csv replaced by residents who give an address."""
    bundle = tmp_path / "bundle"
    shutil.copytree(SAMPLE_BUNDLE, bundle)
    with (bundle / "residents.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id_number", "name", "community_code", "address", "category", "moved_in"])
        for id_number, address in rows:
            writer.writerow([id_number, "测试", "420111002009", address, "floating", "2025-01-01"])
    return bundle


RESIDENTS = [
    ("11010519491231002X", "雄楚大道609号南望苑2期1栋2单元101室"),  # exact: placed
    ("110105194912310038", "雄楚大道609号南望苑2期1栋101室"),  # which unit? review
    ("110105194912310046", "火星基地1号"),  # unmatched: loaded, queued
]


def test_residents_with_addresses_load_placed_or_queued(cli, tmp_path, registry_env):
    bundle = bundle_with_addresses(tmp_path, RESIDENTS)
    result = cli("load", bundle)
    assert result.exit_code == 0, result.output
    assert "residents.csv, row 3, field address" in result.stderr  # named, not dropped
    assert "residents.csv, row 4, field address" in result.stderr
    engine = create_engine(registry_env["DATABASE_URL"])
    with Session(engine) as session:
        rooms = session.scalars(select(Residence.room_id).order_by(Residence.id)).all()
        assert rooms == ["GG-0008-2-101", None, None]
        items = session.scalars(select(AddressReview).order_by(AddressReview.id)).all()
        assert [i.match_status for i in items] == ["review", "unmatched"]
        assert all(i.residence_id is not None for i in items)
        first = items[0]
    # a person accepts the right room: the resident is placed, the decision recorded
    accepted = cli("review", "accept", str(first.id), "--room", "GG-0008-1-101", "--by", "王警官")
    assert accepted.exit_code == 0, accepted.output
    again = cli("review", "accept", str(first.id), "--room", "GG-0008-1-101", "--by", "李警官")
    assert again.exit_code == 1 and "already accepted by 王警官" in again.stderr
    # a reload neither un-places the resident nor queues the rows again
    assert cli("load", bundle).exit_code == 0
    with Session(engine) as session:
        placed = session.scalar(select(Residence.room_id).where(Residence.id == first.residence_id))
        assert placed == "GG-0008-1-101"
        assert session.scalar(select(text("count(*)")).select_from(AddressReview)) == 2
        record = session.get(AddressReview, first.id)
        assert (record.status, record.resolved_by) == ("accepted", "王警官")
    engine.dispose()


# ---------------------------------------------------------------- API


def test_api_match_and_review(cli, tmp_path, registry_env):
    assert cli("load", bundle_with_addresses(tmp_path, RESIDENTS)).exit_code == 0
    url = registry_env["DATABASE_URL"]
    app = create_app(api_settings_for(url, tmp_path))
    token = grant(url, "station1", "station", ("420111002",))
    with TestClient(app, headers=bearer(token)) as client:
        answer = client.post(
            "/addresses/match",
            json={
                "addresses": ["雄楚大道609号南望苑2期1栋2单元101室", "雄楚大道609号南望苑2期1栋"]
            },
        ).json()["results"]
        assert [r["status"] for r in answer] == ["matched", "review"]
        assert answer[0]["room_id"] == "GG-0008-2-101"
        assert answer[1]["candidates"][0]["address_code"] == "GG-A-0008"
        queue = client.get("/reviews").json()["items"]
        assert len(queue) == 2
        review_id = queue[1]["id"]
        rejected = client.post(
            f"/reviews/{review_id}/reject", json={"by": "王警官", "note": "查无此址"}
        )
        assert rejected.status_code == 200, rejected.text
        assert rejected.json()["status"] == "rejected"
        twice = client.post(f"/reviews/{review_id}/reject", json={"by": "王警官"})
        assert twice.status_code == 409
        assert twice.headers["content-type"].startswith("application/problem+json")
        missing = client.post("/reviews/999999/accept", json={"by": "x", "candidate": 1})
        assert missing.status_code == 404
        bad = client.post(f"/reviews/{queue[0]['id']}/accept", json={"by": "x", "candidate": 99})
        assert bad.status_code == 400 and "candidates" in bad.json()["detail"]
        nobody = client.post(f"/reviews/{queue[0]['id']}/accept", json={"by": "", "candidate": 1})
        assert nobody.status_code == 400
        too_many = client.post("/addresses/match", json={"addresses": ["x"] * 1001})
        assert too_many.status_code == 400
        assert client.get("/reviews?status=accepted").json()["items"] == []


def test_a_messy_resident_list_loads_placed_or_queued(cli, tmp_path, registry_env):
    """The issue's Done-when: every text of the labelled set as a resident's address.

    Rows the set labels as placeable land in their true room; every other row is loaded
    without a room and waits in the review queue; nothing is placed wrongly.
    """
    labelled = list(
        csv.DictReader(
            (Path(__file__).parents[1] / "data/fixtures/address_match/labelled.csv").open(
                encoding="utf-8"
            )
        )
    )
    rng = random.Random(8)
    people = [(synthetic_id_number(rng), row["text"]) for row in labelled]
    assert len({p for p, _ in people}) == len(people)
    result = cli("load", bundle_with_addresses(tmp_path, people))
    assert result.exit_code == 0, result.output
    engine = create_engine(registry_env["DATABASE_URL"])
    with Session(engine) as session:
        rooms = session.scalars(select(Residence.room_id).order_by(Residence.id)).all()
        queued = session.scalar(select(text("count(*)")).select_from(AddressReview))
    engine.dispose()
    assert len(rooms) == len(labelled)  # no row dropped
    placed = [(row, room) for row, room in zip(labelled, rooms, strict=True) if room]
    assert all(room == row["true_room_id"] for row, room in placed)  # no wrong placement
    assert len(placed) > len(labelled) / 2  # most rows placed
    assert queued == len(labelled) - len(placed)  # the rest wait for review
