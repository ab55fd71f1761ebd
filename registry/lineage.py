"""Permanent building ids: splits, merges and the lineage that links old ids to new.

An id, once given, never changes or comes back (docs/lineage.md). A split turns one
building into two or more with new ids; a merge turns two or more into one with a new
id. Either way the old ids are retired: their rooms, standard addresses and
organizations move to the successors explicitly (residences follow their rooms, whose
ids stay), ``building_lineage`` records predecessor → successor for the event, and the
emptied building rows are deleted (migration 0009 refuses the ids ever after). The
counters and tile versions follow through their triggers; the row history is the
business of the history triggers, not of this module.

These functions take the caller's session and never commit: a split or merge is all or
nothing in the caller's transaction.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registry.models import (
    SRID,
    Address,
    Building,
    BuildingLineage,
    Organization,
    Residence,
    Room,
)
from registry.settings import RegistryError
from registry.verification import (
    MAX_AREA_M2,
    MIN_AREA_M2,
    BuildingNotFoundError,
    InvalidInputError,
    Locked,
    NotPermittedError,
    VerificationConflictError,
    checked_outline,
    insert_new_building,
    iso,
    lock_building,
    outline_area_m2,
)

MAX_PARTS = 50
MAX_FLOORS = 200
KINDS = ("rooms", "addresses", "organizations")


class RetiredBuildingError(RegistryError):
    """The id was retired by a split or merge; ``successors`` are the current buildings
    that took its place (transitively), ``event`` the retiring event."""

    def __init__(self, building_id: str, event: dict[str, Any], successors: list[str]) -> None:
        super().__init__(
            f"building {building_id} was retired by {event['kind']} {event['event_id']} "
            f"on {event['recorded_at'][:10]}; its successors: {', '.join(successors) or '-'}"
        )
        self.building_id = building_id
        self.event = event
        self.successors = successors


@dataclass(frozen=True)
class Part:
    """One building a split makes: its outline (GeoJSON, lon/lat) and what it takes."""

    geometry: Any
    rooms: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    organizations: list[str] = field(default_factory=list)
    floors: int | None = None
    name: str | None = None
    use: str | None = None


# ---------------------------------------------------------------- reading


def events_of(session: Session, where: Any) -> list[dict[str, Any]]:
    """The lineage events with a row matching ``where``, each with all its ids."""
    lin = BuildingLineage.__table__
    ids = select(lin.c.event_id).where(where).scalar_subquery()
    rows = session.execute(
        select(lin).where(lin.c.event_id.in_(ids)).order_by(lin.c.event_id, lin.c.id)
    ).all()
    events: dict[int, dict[str, Any]] = {}
    for r in rows:
        event = events.setdefault(
            r.event_id,
            {
                "event_id": r.event_id,
                "kind": r.kind,
                "recorded_at": iso(r.recorded_at),
                "account": r.account,
                "note": r.note,
                "community_code": r.community_code,
                "predecessors": [],
                "successors": [],
            },
        )
        for key, value in (("predecessors", r.predecessor_id), ("successors", r.successor_id)):
            if value not in event[key]:
                event[key].append(value)
    return list(events.values())


def walk(session: Session, start: str, forward: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Events reached from ``start`` going to successors (``forward``) or predecessors,
    and the ids reached, in the order found."""
    lin = BuildingLineage.__table__
    mine, theirs = (
        (lin.c.predecessor_id, "successors") if forward else (lin.c.successor_id, "predecessors")
    )
    seen_events: dict[int, dict[str, Any]] = {}
    reached: list[str] = []
    frontier = [start]
    while frontier:
        wanted = bindparam("ids", frontier, type_=ARRAY(String))
        found = [
            e for e in events_of(session, mine == wanted.any_()) if e["event_id"] not in seen_events
        ]
        frontier = []
        for event in found:
            seen_events[event["event_id"]] = event
            for other in event[theirs]:
                if other not in reached and other != start:
                    reached.append(other)
                    frontier.append(other)
    return sorted(seen_events.values(), key=lambda e: e["event_id"]), reached


def existing_ids(session: Session, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    wanted = bindparam("ids", ids, type_=ARRAY(String))
    return set(session.scalars(select(Building.id).where(Building.id == wanted.any_())))


def lineage(session: Session, building_id: str) -> dict[str, Any] | None:
    """Where a building id comes from and what became of it: the events before and after
    it (transitively), its direct predecessors and successors, and the current buildings
    descended from it. None when the id is neither a building nor in the lineage (or is
    outside the caller's jurisdiction)."""
    before, ancestors = walk(session, building_id, forward=False)
    after, descendants = walk(session, building_id, forward=True)
    exists = bool(existing_ids(session, [building_id]))
    if not exists and not before and not after:
        return None
    live = existing_ids(session, descendants)
    retired_by = next((e for e in after if building_id in e["predecessors"]), None)
    made_by = next((e for e in before if building_id in e["successors"]), None)
    return {
        "id": building_id,
        "current": exists,
        "retired": retired_by is not None,
        "retired_by": retired_by,
        "created_by": made_by,
        "predecessors": made_by["predecessors"] if made_by else [],
        "successors": retired_by["successors"] if retired_by else [],
        "ancestors": ancestors,
        "descendants": descendants,
        "current_successors": [d for d in descendants if d in live],
        "events": sorted(before + after, key=lambda e: e["event_id"]),
    }


def retirement(session: Session, building_id: str) -> RetiredBuildingError | None:
    """The error describing a retired id (the event and the current successors), or None
    if the id was never retired (as far as the caller may see)."""
    after, descendants = walk(session, building_id, forward=True)
    event = next((e for e in after if building_id in e["predecessors"]), None)
    if event is None:
        return None
    live = existing_ids(session, descendants)
    return RetiredBuildingError(building_id, event, [d for d in descendants if d in live])


def retired_ids(session: Session, ids: list[str]) -> dict[str, str]:
    """Of ``ids``, those ever retired, each with why (for the loader's row errors)."""
    if not ids:
        return {}
    lin = BuildingLineage.__table__
    wanted = bindparam("ids", sorted(set(ids)), type_=ARRAY(String))
    rows = session.execute(
        select(lin.c.predecessor_id, lin.c.kind, lin.c.event_id, lin.c.successor_id)
        .where(lin.c.predecessor_id == wanted.any_())
        .order_by(lin.c.predecessor_id, lin.c.event_id, lin.c.successor_id)
    ).all()
    found: dict[str, tuple[str, int, list[str]]] = {}
    for r in rows:
        _, event, successors = found.setdefault(r.predecessor_id, (r.kind, r.event_id, []))
        if r.event_id == event:
            successors.append(r.successor_id)
    return {
        bid: f"building id {bid} was retired by {kind} {event} (successors: "
        f"{', '.join(successors)}); ids are never reused"
        for bid, (kind, event, successors) in found.items()
    }


# ---------------------------------------------------------------- checks


def lock(
    session: Session, building_id: str, expected_version: int | None, sees_persons: bool
) -> Locked:
    """Lock a building for a split or merge; a retired id says what replaced it."""
    try:
        building = lock_building(session, building_id, expected_version, sees_persons)
    except BuildingNotFoundError:
        gone = retirement(session, building_id)
        if gone is not None:
            raise gone from None
        raise
    if building.status == "demolished":
        raise VerificationConflictError(
            f"building {building_id} is demolished; a demolished building is not split or merged"
        )
    return building


def checked_part_outline(session: Session, geometry: Any, field_name: str) -> str:
    wkt = checked_outline(geometry, field_name)
    area = outline_area_m2(session, wkt)
    if area > MAX_AREA_M2:
        raise InvalidInputError(f"{field_name}: larger than a square kilometre; not a building")
    if area < MIN_AREA_M2:
        raise InvalidInputError(f"{field_name}: {area:.2g} m² is smaller than a square metre")
    return wkt


def checked_floors(floors: Any, field_name: str) -> int | None:
    if floors is None:
        return None
    if isinstance(floors, bool) or not isinstance(floors, int) or not 1 <= floors <= MAX_FLOORS:
        raise InvalidInputError(f"{field_name}: a whole number from 1 to {MAX_FLOORS}")
    return floors


def holdings(session: Session, building_ids: list[str]) -> dict[str, list[str]]:
    """What names the buildings: their rooms, the standard addresses naming them and the
    organizations placed in them directly (locked until the end of the transaction)."""
    wanted = bindparam("ids", building_ids, type_=ARRAY(String))
    found = {}
    for kind, key, column in (
        ("rooms", Room.id, Room.building_id),
        ("addresses", Address.code, Address.building_id),
        ("organizations", Organization.uscc, Organization.building_id),
    ):
        found[kind] = list(
            session.scalars(
                select(key).where(column == wanted.any_()).order_by(key).with_for_update()
            )
        )
    return found


def check_assignment(building_id: str, parts: list[Part], held: dict[str, list[str]]) -> None:
    """Every room, address and organization of the building in exactly one part, and
    nothing else; otherwise one message naming every offending id."""
    problems = []
    for kind in KINDS:
        owned = set(held[kind])
        given = Counter(i for part in parts for i in dict.fromkeys(getattr(part, kind)))
        foreign = sorted(i for i in given if i not in owned)
        twice = sorted(i for i, n in given.items() if n > 1 and i in owned)
        missing = sorted(owned - set(given))
        noun = {"rooms": "a room", "addresses": "an address", "organizations": "an organization"}[
            kind
        ]
        if foreign:
            problems.append(f"{kind} {', '.join(foreign)}: not {noun} of building {building_id}")
        if twice:
            problems.append(f"{kind} {', '.join(twice)}: assigned to more than one part")
        if missing:
            problems.append(f"{kind} {', '.join(missing)}: not assigned to any part")
    if problems:
        raise InvalidInputError(f"split of {building_id}: " + "; ".join(problems))


def text_list(value: Any, field_name: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidInputError(f"{field_name}: a list of ids (text) is needed")
    return value


# ---------------------------------------------------------------- writing


def move(session: Session, moves: dict[str, dict[str, list[str]]]) -> dict[str, Any]:
    """Move rooms, addresses and organizations to their new buildings (``moves``: new id →
    kind → ids); the counts moved."""
    counts = {"rooms": 0, "addresses": 0, "organizations": 0}
    for new_id, taken in moves.items():
        for kind, table, key in (
            ("rooms", Room.__table__, "id"),
            ("addresses", Address.__table__, "code"),
            ("organizations", Organization.__table__, "uscc"),
        ):
            ids = taken.get(kind) or []
            if not ids:
                continue
            wanted = bindparam("ids", ids, type_=ARRAY(String))
            result = session.execute(
                update(table)
                .where(table.c[key] == wanted.any_())
                .values(building_id=new_id, updated_at=func.now())
            )
            counts[kind] += result.rowcount
    return counts


def residences_in(session: Session, room_ids: list[str]) -> int:
    """Residence records (all, past ones too) of the rooms: they follow their rooms."""
    if not room_ids:
        return 0
    wanted = bindparam("ids", room_ids, type_=ARRAY(String))
    return session.scalar(
        select(func.count()).select_from(Residence).where(Residence.room_id == wanted.any_())
    )


def record(
    session: Session,
    kind: str,
    pairs: list[tuple[str, str]],
    community_code: str,
    account: str,
    note: str | None,
) -> int:
    """Append the event's lineage rows; its id."""
    event_id = session.scalar(select(func.nextval("building_lineage_event")))
    session.execute(
        insert(BuildingLineage),
        [
            {
                "event_id": event_id,
                "kind": kind,
                "predecessor_id": old,
                "successor_id": new,
                "community_code": community_code,
                "account": account,
                "note": note or None,
            }
            for old, new in pairs
        ],
    )
    return event_id


def retire(session: Session, building_ids: list[str]) -> None:
    """Delete the emptied buildings, which the lineage now names as predecessors (through
    ``registry_retire_building``: the API role has no DELETE of its own)."""
    try:
        with session.begin_nested():
            for building_id in building_ids:
                session.execute(select(func.registry_retire_building(building_id)))
    except IntegrityError as exc:
        # something outside the caller's view still refers to it (another jurisdiction)
        detail = getattr(getattr(exc.orig, "diag", None), "message_detail", None) or ""
        raise NotPermittedError(
            f"buildings {', '.join(building_ids)} are still referred to by rows you cannot "
            f"see or move ({detail or exc.orig.__class__.__name__})"
        ) from None


def split_building(
    session: Session,
    building_id: str,
    parts: list[Part],
    account: str,
    note: str | None = None,
    expected_version: int | None = None,
    sees_persons: bool = True,
) -> dict[str, Any]:
    """Split a building into ``parts`` with new ids; the old id is retired. Every room,
    address naming it and organization placed in it must go to exactly one part. The
    parts keep the community, status and use (and floors unless given), unverified.
    Residence counts are None unless ``sees_persons``."""
    if not isinstance(parts, list) or not 2 <= len(parts) <= MAX_PARTS:
        raise InvalidInputError(f"parts: a split needs from 2 to {MAX_PARTS} parts")
    outlines = []
    for i, part in enumerate(parts, start=1):
        where = f"parts[{i}]"
        outlines.append(checked_part_outline(session, part.geometry, f"{where}.geometry"))
        checked_floors(part.floors, f"{where}.floors")
        for kind in KINDS:
            text_list(getattr(part, kind), f"{where}.{kind}")
    old = lock(session, building_id, expected_version, sees_persons)
    row = session.execute(
        select(Building.name, Building.floors, Building.use).where(Building.id == building_id)
    ).one()
    check_assignment(building_id, parts, holdings(session, [building_id]))

    successors, moves = [], {}
    for part, wkt in zip(parts, outlines, strict=True):
        new_id = insert_new_building(
            session,
            old.community_code,
            {
                "community_code": old.community_code,
                "name": part.name or row.name,
                "floors": part.floors or row.floors,
                "use": part.use or row.use,
                "status": old.status,
                "verification": "unverified",
                "footprint": func.ST_Multi(func.ST_GeomFromText(wkt, SRID)),
            },
        )
        successors.append(new_id)
        moves[new_id] = {k: list(dict.fromkeys(getattr(part, k))) for k in KINDS}
    moved = move(session, moves)
    event_id = record(
        session, "split", [(building_id, s) for s in successors], old.community_code, account, note
    )
    retire(session, [building_id])
    return {
        "event_id": event_id,
        "kind": "split",
        "retired": [building_id],
        "successors": [
            {
                "id": new_id,
                "rooms": moves[new_id]["rooms"],
                "addresses": moves[new_id]["addresses"],
                "organizations": moves[new_id]["organizations"],
                "residences": residences_in(session, moves[new_id]["rooms"])
                if sees_persons
                else None,
            }
            for new_id in successors
        ],
        "moved": {
            **moved,
            "residences": residences_in(session, [r for m in moves.values() for r in m["rooms"]])
            if sees_persons
            else None,
        },
    }


def merged_status(statuses: list[str]) -> str:
    return "in_use" if "in_use" in statuses else statuses[0]


def merge_buildings(
    session: Session,
    building_ids: list[str],
    account: str,
    note: str | None = None,
    outline: Any = None,
    name: str | None = None,
    floors: int | None = None,
    use: str | None = None,
    sees_persons: bool = True,
) -> dict[str, Any]:
    """Merge two or more buildings of one community into one with a new id; the old ids
    are retired. The outline is the union of their footprints unless ``outline`` is
    given; every room, address and organization moves to the new building."""
    if not isinstance(building_ids, list) or not all(isinstance(i, str) for i in building_ids):
        raise InvalidInputError("ids: a list of building ids is needed")
    ids = list(dict.fromkeys(building_ids))
    if len(ids) < 2:
        raise InvalidInputError(
            f"ids: a merge needs at least 2 different buildings, not {', '.join(ids) or 'none'}"
        )
    if len(ids) > MAX_PARTS:
        raise InvalidInputError(f"ids: at most {MAX_PARTS} buildings in one merge")
    wkt = checked_part_outline(session, outline, "geometry") if outline is not None else None
    checked_floors(floors, "floors")
    locked = [lock(session, i, None, sees_persons) for i in sorted(ids)]  # one lock order
    communities = sorted({b.community_code for b in locked})
    if len(communities) > 1:
        listing = ", ".join(f"{b.id} in {b.community_code}" for b in locked)
        raise InvalidInputError(
            f"ids: a merge joins buildings of one community, not several ({listing})"
        )
    code = communities[0]
    wanted = bindparam("ids", ids, type_=ARRAY(String))
    rows = session.execute(
        select(Building.name, Building.floors, Building.use)
        .where(Building.id == wanted.any_())
        .order_by(Building.id)
    ).all()
    names = {r.name for r in rows if r.name}
    uses = {r.use for r in rows if r.use}
    footprint = (
        func.ST_Multi(func.ST_GeomFromText(wkt, SRID))
        if wkt
        else select(func.ST_Multi(func.ST_CollectionExtract(func.ST_Union(Building.footprint), 3)))
        .where(Building.id == wanted.any_())
        .scalar_subquery()
    )
    new_id = insert_new_building(
        session,
        code,
        {
            "community_code": code,
            "name": name or (names.pop() if len(names) == 1 else None),
            "floors": floors or max((r.floors for r in rows if r.floors), default=None),
            "use": use or (uses.pop() if len(uses) == 1 else None),
            "status": merged_status([b.status for b in locked]),
            "verification": "unverified",
            "footprint": footprint,
        },
    )
    held = holdings(session, ids)
    moved = move(session, {new_id: held})
    event_id = record(session, "merge", [(i, new_id) for i in ids], code, account, note)
    retire(session, ids)
    residences = residences_in(session, held["rooms"]) if sees_persons else None
    return {
        "event_id": event_id,
        "kind": "merge",
        "retired": ids,
        "successors": [{"id": new_id, **held, "residences": residences}],
        "moved": {**moved, "residences": residences},
    }
