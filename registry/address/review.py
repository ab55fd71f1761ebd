"""The review queue: addresses the matcher would not place by itself, and who decided.

Every ``review`` or ``unmatched`` result can be queued with its candidates. A person
accepts a candidate (or names a room or standard address directly) or rejects the item;
either way their name and the time are recorded. Accepting an item linked to a residence
places that residence in the chosen room. Repository functions never commit.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from registry.address.match import MatchResult
from registry.models import Address, AddressReview, Residence, Room
from registry.settings import RegistryError

MAX_LIST = 1000


class ReviewNotFoundError(RegistryError):
    """No review item has that id."""


class ReviewClosedError(RegistryError):
    """The item was already accepted or rejected."""


def queue(
    session: Session, result: MatchResult, source: str, residence_id: int | None = None
) -> AddressReview:
    """Add a result the matcher did not place to the queue."""
    if result.status == "matched":
        raise ValueError("matched results are placed, not reviewed")
    item = AddressReview(
        source=source,
        input=result.text,
        parsed=result.parsed.as_dict(),
        candidates=[c.as_dict() for c in result.candidates],
        match_status=result.status,
        residence_id=residence_id,
    )
    session.add(item)
    session.flush()
    return item


def list_reviews(
    session: Session, status: str | None = "open", after: int = 0, limit: int = 100
) -> list[dict[str, Any]]:
    """Review items in id order, ``limit`` at a time after id ``after``."""
    if status is not None and status not in ("open", "accepted", "rejected"):
        raise RegistryError(f"status must be open, accepted or rejected, not {status!r}")
    if not 1 <= limit <= MAX_LIST:
        raise RegistryError(f"limit must be between 1 and {MAX_LIST}, not {limit}")
    query = select(AddressReview).where(AddressReview.id > after).order_by(AddressReview.id)
    if status is not None:
        query = query.where(AddressReview.status == status)
    return [as_dict(item) for item in session.scalars(query.limit(limit))]


def as_dict(item: AddressReview) -> dict[str, Any]:
    return {
        "id": item.id,
        "source": item.source,
        "input": item.input,
        "match_status": item.match_status,
        "status": item.status,
        "candidates": item.candidates,
        "parsed": item.parsed,
        "residence_id": item.residence_id,
        "address_code": item.address_code,
        "room_id": item.room_id,
        "resolved_by": item.resolved_by,
        "resolved_at": item.resolved_at.isoformat() if item.resolved_at else None,
        "note": item.note,
        "created_at": item.created_at.isoformat() if item.created_at else None,
    }


def open_item(session: Session, review_id: int) -> AddressReview:
    item = session.get(AddressReview, review_id, with_for_update=True)
    if item is None:
        raise ReviewNotFoundError(f"no review item {review_id}")
    if item.status != "open":
        raise ReviewClosedError(
            f"review item {review_id} was already {item.status} by {item.resolved_by} "
            f"at {item.resolved_at:%Y-%m-%d %H:%M}"
        )
    return item


def check_by(by: str) -> str:
    name = by.strip()
    if not name:
        raise RegistryError("say who decides: a reviewer's name is required")
    return name


def accept(
    session: Session,
    review_id: int,
    by: str,
    *,
    candidate: int | None = None,
    room_id: str | None = None,
    address_code: str | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Accept candidate number ``candidate`` (1-based), or a room / standard address named
    directly; the linked residence, if any, moves into the room."""
    by = check_by(by)
    item = open_item(session, review_id)
    if candidate is not None:
        if room_id or address_code:
            raise RegistryError("give a candidate number, or a room and address, not both")
        if not 1 <= candidate <= len(item.candidates):
            raise RegistryError(
                f"review item {review_id} has {len(item.candidates)} candidates, "
                f"not a number {candidate}"
            )
        chosen = item.candidates[candidate - 1]
        room_id, address_code = chosen["room_id"], chosen["address_code"]
    if room_id is None and address_code is None:
        raise RegistryError("accept needs a candidate number, a room id or an address code")
    room = session.get(Room, room_id) if room_id else None
    if room_id and room is None:
        raise RegistryError(f"no room {room_id!r}")
    address = session.get(Address, address_code) if address_code else None
    if address_code and address is None:
        raise RegistryError(f"no standard address {address_code!r}")
    if room and address and address.building_id != room.building_id:
        raise RegistryError(
            f"room {room_id!r} is in building {room.building_id!r}, but address "
            f"{address_code!r} labels building {address.building_id!r}"
        )
    if item.residence_id is not None and room is None:
        raise RegistryError(
            f"review item {review_id} places a resident: choose a room, not only an address"
        )
    item.status, item.room_id, item.address_code = "accepted", room_id, address_code
    resolve(item, by, note)
    if item.residence_id is not None:
        session.execute(
            update(Residence)
            .where(Residence.id == item.residence_id)
            .values(room_id=room_id, updated_at=dt.datetime.now(dt.UTC))
        )
    session.flush()
    return as_dict(item)


def reject(session: Session, review_id: int, by: str, note: str | None = None) -> dict[str, Any]:
    """Close the item without placing anything (the residence stays unplaced)."""
    item = open_item(session, review_id)
    item.status = "rejected"
    resolve(item, check_by(by), note)
    session.flush()
    return as_dict(item)


def resolve(item: AddressReview, by: str, note: str | None) -> None:
    item.resolved_by = by
    item.resolved_at = dt.datetime.now(dt.UTC)
    item.note = note
