"""Matching free-text addresses to the registry's standard addresses and rooms.

Exact keys first, then trigram similarity:

1. The text is parsed (:mod:`registry.address.parse`) and its administrative levels
   resolved against the registry's communities, which narrows the search to a
   community, street or district.
2. Standard addresses whose normalised keys equal the parsed components — road and
   house number, compound and building number — are the exact candidates.
3. Only when they name exactly one building, and the building has exactly one room with
   the parsed unit and room number, is the address placed automatically (``matched``).
   Anything less certain goes to ``review`` with ranked candidates; nothing found at all
   is ``unmatched``.
4. Without an exact candidate, ``pg_trgm`` similarity over the addresses in scope
   proposes candidates for review.

Free text never creates a standard address. The index of standard addresses is read
once per :class:`Matcher`; rooms are read per building as candidates need them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from sqlalchemy import String, bindparam, func, literal_column, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from registry.address.gazetteer import Gazetteer
from registry.address.keys import (
    building_key,
    compound_key,
    compound_variants,
    house_number_key,
    road_key,
    room_key,
    unit_key,
)
from registry.address.model import ParsedAddress
from registry.address.parse import parse
from registry.collections import address_label
from registry.models import ADDRESS_LABEL_SQL, Address, Community, Room

Status = Literal["matched", "review", "unmatched"]
TRIGRAM_LIMIT = 5
ROOM_BATCH = 5_000

SCORES = {
    "exact": 1.0,  # one building, one room: placed automatically
    "building": 0.8,  # one building, the text names no room
    "room_not_found": 0.6,  # one building, but no room of it has that unit and number
    "conflict": 0.55,  # the components point at different buildings or contradict the room
    "ambiguous": 0.5,  # several buildings fit
}


@dataclass(frozen=True)
class StandardAddress:
    """A standard address with the keys it is matched on."""

    code: str
    community_code: str
    building_id: str | None
    label: str
    road: str | None
    house_number: str | None
    compound: str | None
    building: str | None


@dataclass(frozen=True)
class Candidate:
    """A possible placement, best first in a result's ``candidates``."""

    address_code: str
    building_id: str | None
    room_id: str | None
    score: float
    method: str
    label: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MatchResult:
    """The matcher's decision for one free-text address."""

    text: str
    parsed: ParsedAddress
    status: Status
    method: str
    score: float = 0.0
    address_code: str | None = None
    room_id: str | None = None
    candidates: list[Candidate] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "status": self.status,
            "address_code": self.address_code,
            "room_id": self.room_id,
            "score": self.score,
            "method": self.method,
            "parsed": self.parsed.as_dict(),
            "candidates": [c.as_dict() for c in self.candidates],
        }


@dataclass(frozen=True)
class RoomEntry:
    id: str
    unit: str | None
    floor: int | None
    number: str | None


class AddressIndex:
    """Active standard addresses by their exact keys."""

    def __init__(self, addresses: Iterable[StandardAddress]) -> None:
        self.by_road_house: dict[tuple[str, str], list[StandardAddress]] = defaultdict(list)
        self.by_compound_building: dict[tuple[str, str], list[StandardAddress]] = defaultdict(list)
        self.by_compound: dict[str, list[StandardAddress]] = defaultdict(list)
        self.by_building: dict[str, list[StandardAddress]] = defaultdict(list)
        self.by_road_building: dict[tuple[str, str], list[StandardAddress]] = defaultdict(list)
        for address in addresses:
            if address.road and address.building:
                self.by_road_building[address.road, address.building].append(address)
            if address.road and address.house_number:
                self.by_road_house[address.road, address.house_number].append(address)
            # 关南小区2期 is also found as 关南2期: a generic 小区 is often left out
            for variant in compound_variants(address.compound):
                self.by_compound[variant].append(address)
                if address.building:
                    self.by_compound_building[variant, address.building].append(address)
            if address.building:
                self.by_building[address.building].append(address)

    def compound(self, compound: str, building: str | None = None) -> list[StandardAddress]:
        """Addresses of the compound (any of its name variants), of one building if given."""
        found: dict[str, StandardAddress] = {}
        for variant in compound_variants(compound):
            table = (
                self.by_compound_building.get((variant, building), [])
                if building
                else self.by_compound.get(variant, [])
            )
            found.update((a.code, a) for a in table)
        return list(found.values())

    @classmethod
    def load(cls, session: Session) -> AddressIndex:
        columns = Address.__table__.c
        rows = session.execute(
            select(
                columns.code,
                columns.community_code,
                columns.building_id,
                columns.road,
                columns.house_number,
                columns.compound,
                columns.building_no,
                address_label(Address.__table__),
            ).where(columns.status == "active")
        )
        return cls(
            StandardAddress(
                code=code,
                community_code=community,
                building_id=building_id,
                label=label,
                road=road_key(road),
                house_number=house_number_key(house),
                compound=compound_key(compound),
                building=building_key(building_no),
            )
            for code, community, building_id, road, house, compound, building_no, label in rows
        )


class Matcher:
    """Matches free text against one snapshot of the registry's standard addresses."""

    def __init__(self, session: Session, gazetteer: Gazetteer, index: AddressIndex) -> None:
        self.session = session
        self.gazetteer = gazetteer
        self.index = index
        self.rooms: dict[str, list[RoomEntry]] = {}

    @classmethod
    def load(cls, session: Session) -> Matcher:
        """Read the communities (for administrative names) and the standard addresses."""
        columns = Community.__table__.c
        communities = session.execute(
            select(
                columns.code,
                columns.name,
                columns.street_code,
                columns.street_name,
                columns.district_code,
                columns.district_name,
            )
        ).all()
        return cls(session, Gazetteer(communities), AddressIndex.load(session))

    # ------------------------------------------------------------ public

    def match(self, text: str) -> MatchResult:
        return self.match_many([text])[0]

    def match_many(self, texts: Sequence[str]) -> list[MatchResult]:
        """Results in input order; rooms of all candidate buildings are read in batches."""
        parsed = [parse(text, self.gazetteer) for text in texts]
        candidates = [self.exact_candidates(p) for p in parsed]
        wanted = {a.building_id for found, _ in candidates for a in found if a.building_id}
        self.load_rooms(wanted)
        return [
            self.decide(text, p, found, conflict)
            for text, p, (found, conflict) in zip(texts, parsed, candidates, strict=True)
        ]

    # ------------------------------------------------------------ exact keys

    def exact_candidates(self, parsed: ParsedAddress) -> tuple[list[StandardAddress], bool]:
        """Standard addresses whose keys equal the parsed components, within scope, and
        whether the text contradicts them (a road or area that does not agree)."""
        index = self.index
        by_road: list[StandardAddress] = []
        by_compound: list[StandardAddress] = []
        if parsed.road and parsed.house_number:
            by_road = index.by_road_house.get((parsed.road, parsed.house_number), [])
        if parsed.compound and (parsed.building or not by_road):
            by_compound = index.compound(parsed.compound, parsed.building)
        if by_road and parsed.building:
            # a numbered building narrows a house number that has several
            named = [a for a in by_road if a.building == parsed.building]
            by_road = named or [a for a in by_road if a.building is None] or by_road
        conflict = False
        if by_road and by_compound:
            both = [a for a in by_road if a in by_compound]
            found = both or by_road + [a for a in by_compound if a not in by_road]
            conflict = not both
        else:
            found = by_road or by_compound
        if by_compound and not by_road and parsed.road:
            # the compound fits, but the road (and house number) the text names do not
            conflict = conflict or any(
                a.road != parsed.road
                or (parsed.house_number is not None and a.house_number != parsed.house_number)
                for a in by_compound
            )
        if not found and parsed.building and parsed.road and not parsed.house_number:
            found = index.by_road_building.get((parsed.road, parsed.building), [])
            conflict = True  # a road and a building without a house number: never certain
        if not found and parsed.building and not parsed.road and not parsed.compound:
            found = index.by_building.get(parsed.building, [])
        found, outside = in_scope(found, parsed)
        return found, conflict or outside or unresolved_area(parsed) or unread_numbers(parsed)

    def load_rooms(self, building_ids: set[str]) -> None:
        missing = sorted(b for b in building_ids if b not in self.rooms)
        for start in range(0, len(missing), ROOM_BATCH):
            batch = missing[start : start + ROOM_BATCH]
            for building_id in batch:
                self.rooms[building_id] = []
            columns = Room.__table__.c
            wanted = bindparam("ids", batch, type_=ARRAY(String))
            rows = self.session.execute(
                select(
                    columns.building_id, columns.id, columns.unit, columns.floor, columns.number
                ).where(columns.building_id == wanted.any_())
            )
            for building_id, room_id, unit, floor, number in rows:
                self.rooms[building_id].append(
                    RoomEntry(room_id, unit_key(unit), floor, room_key(number))
                )

    def find_room(self, building_id: str, parsed: ParsedAddress) -> tuple[RoomEntry | None, str]:
        """The one room of the building the text names, or None and why not."""
        rooms = self.rooms.get(building_id, [])
        numbered = [r for r in rooms if r.number == parsed.room]
        if parsed.unit is not None:
            numbered = [r for r in numbered if r.unit == parsed.unit]
        elif len({r.unit for r in rooms}) > 1:
            return None, "room_not_found"  # the building has several units: which one?
        if len(numbered) != 1:
            return None, "room_not_found"
        room = numbered[0]
        stated_floor = parsed.floor is not None and not any(
            note.startswith("floor derived") for note in parsed.notes
        )
        if stated_floor and room.floor is not None and room.floor != parsed.floor:
            return None, "conflict"
        return room, "exact"

    # ------------------------------------------------------------ decision

    def decide(
        self, text: str, parsed: ParsedAddress, found: list[StandardAddress], conflict: bool
    ) -> MatchResult:
        buildings = {a.building_id for a in found}
        if len(found) == 0:
            return self.similar(text, parsed)
        if len(buildings) > 1 or None in buildings:
            return self.review(text, parsed, found, "ambiguous")
        if conflict:
            return self.review(text, parsed, found, "conflict")
        (building_id,) = buildings
        assert building_id is not None
        if parsed.room is None:
            return self.review(text, parsed, found, "building")
        room, method = self.find_room(building_id, parsed)
        if room is None:
            return self.review(text, parsed, found, method)
        address = best_address(found, parsed)
        return MatchResult(
            text=text,
            parsed=parsed,
            status="matched",
            method="exact",
            score=SCORES["exact"],
            address_code=address.code,
            room_id=room.id,
            candidates=[
                Candidate(
                    address.code, building_id, room.id, SCORES["exact"], "exact", address.label
                )
            ],
        )

    def review(
        self, text: str, parsed: ParsedAddress, found: list[StandardAddress], method: str
    ) -> MatchResult:
        score = SCORES[method]
        candidates = []
        for address in sorted(found, key=lambda a: a.code):
            room_id = None
            if address.building_id and parsed.room is not None:
                room, _ = self.find_room(address.building_id, parsed)
                room_id = room.id if room else None
            candidates.append(
                Candidate(address.code, address.building_id, room_id, score, method, address.label)
            )
        return MatchResult(text, parsed, "review", method, score, candidates=candidates)

    def similar(self, text: str, parsed: ParsedAddress) -> MatchResult:
        """Trigram candidates within the resolved scope, for a person to review."""
        query = search_text(parsed)
        if not query:
            return MatchResult(text, parsed, "unmatched", "none")
        columns = Address.__table__.c
        label = literal_column(ADDRESS_LABEL_SQL)
        similarity = func.similarity(label, bindparam("q", query)).label("similarity")
        statement = (
            select(columns.code, columns.building_id, label.label("label"), similarity)
            .where(label.op("%")(bindparam("q", query)), columns.status == "active")
            .order_by(similarity.desc(), columns.code)
            .limit(TRIGRAM_LIMIT)
        )
        scope = scope_prefix(parsed)
        if scope:
            statement = statement.where(columns.community_code.startswith(scope, autoescape=True))
        rows = self.session.execute(statement).all()
        if not rows:
            return MatchResult(text, parsed, "unmatched", "none")
        candidates = [
            Candidate(code, building_id, None, round(float(score), 3), "trigram", label)
            for code, building_id, label, score in rows
        ]
        return MatchResult(
            text, parsed, "review", "trigram", candidates[0].score, candidates=candidates
        )


def scope_prefix(parsed: ParsedAddress) -> str | None:
    """The most precise administrative code the text resolved to, if any."""
    return parsed.community_code or parsed.street_code or parsed.district_code


def in_scope(
    found: list[StandardAddress], parsed: ParsedAddress
) -> tuple[list[StandardAddress], bool]:
    """Candidates inside the resolved community, street or district, and whether the
    text's area contradicts them all (they are kept then, for a person to see)."""
    scope = scope_prefix(parsed)
    if not scope or not found:
        return found, False
    inside = [a for a in found if a.community_code.startswith(scope)]
    return (inside, False) if inside else (found, True)


def unread_numbers(parsed: ParsedAddress) -> bool:
    """Text the parser could not place holds a number: perhaps another house or room."""
    return any(ch.isdigit() for ch in parsed.rest)


def unresolved_area(parsed: ParsedAddress) -> bool:
    """The text names another city, or a district, street or community the registry does
    not know: it may be another place with the same road, so nothing is placed
    automatically."""
    return parsed.city is not None or any(
        name is not None and code is None
        for name, code in (
            (parsed.district, parsed.district_code),
            (parsed.street, parsed.street_code),
            (parsed.community, parsed.community_code),
        )
    )


def best_address(found: list[StandardAddress], parsed: ParsedAddress) -> StandardAddress:
    """Of several standard addresses of one building, the one the text names most closely."""

    def agreement(address: StandardAddress) -> tuple[int, str]:
        same = sum(
            getattr(address, part) is not None and getattr(address, part) == getattr(parsed, part)
            for part in ("road", "house_number", "compound", "building")
        )
        return (-same, address.code)

    return min(found, key=agreement)


def search_text(parsed: ParsedAddress) -> str:
    """The parsed components below the administrative levels, as one string to rank by."""
    parts = (parsed.road, parsed.house_number, parsed.compound, parsed.building)
    text = "".join(p for p in parts if p)
    return text or parsed.rest
