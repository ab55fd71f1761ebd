"""Placing residents by free-text address at import (``residents.csv``'s ``address`` column).

A resident row may name its room by ``room_id`` or describe it by ``address``. Addresses
go through the matcher: an exact building-and-room match fills ``room_id``; any other
row is still loaded (the resident counts, unplaced), reported as a warning that names
the row, and queued for review with its candidates. A reload never un-places a resident
already placed, and never queues the same residence twice.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.address.match import Matcher, MatchResult
from registry.address.review import queue
from registry.bundle.problems import Problem
from registry.bundle.read import Record
from registry.bundle.validate import LayerPlan
from registry.models import AddressReview, Person, Residence
from registry.vault import IdentityVault


@dataclass
class Pending:
    """A resident row whose address was not placed automatically."""

    record: Record
    values: dict[str, Any]
    result: MatchResult


def resolve_addresses(
    session: Session, plan: LayerPlan, vault: IdentityVault, problems: list[Problem]
) -> list[Pending]:
    """Fill ``room_id`` of rows whose address matches exactly; return the others."""
    rows = [
        (record, values)
        for record, values in plan.accepted
        if values.get("address") and values.get("room_id") is None
    ]
    if not rows:
        return []
    results = Matcher.load(session).match_many([values["address"] for _, values in rows])
    pending = []
    for (record, values), result in zip(rows, results, strict=True):
        if result.status == "matched":
            values["room_id"] = result.room_id
            continue
        placed = current_room(session, vault, values)
        if placed is not None:
            values["room_id"] = placed  # placed before (by review): keep it
            continue
        pending.append(Pending(record, values, result))
        problems.append(
            Problem(
                plan.file.label,
                record.number,
                "address",
                f"{values['address']!r} not placed ({result.status}, "
                f"{len(result.candidates)} candidates): loaded without a room and queued "
                "for review",
                "warning",
                plan.file.unit,
            )
        )
    return pending


def residence_of(session: Session, vault: IdentityVault, values: dict[str, Any]):
    lookup = vault.lookup_key(values["id_number"])
    return session.execute(
        select(Residence.id, Residence.room_id)
        .join(Person, Person.id == Residence.person_id)
        .where(
            Person.id_hmac == lookup,
            Residence.moved_in.is_not_distinct_from(values["moved_in"]),
        )
    ).one_or_none()


def current_room(session: Session, vault: IdentityVault, values: dict[str, Any]) -> str | None:
    found = residence_of(session, vault, values)
    return found.room_id if found else None


def queue_pending(
    session: Session, pending: list[Pending], vault: IdentityVault, source: str
) -> int:
    """After the residences are written: queue each pending row once, linked to it."""
    queued = 0
    for item in pending:
        found = residence_of(session, vault, item.values)
        residence_id = found.id if found else None
        already = session.scalar(
            select(AddressReview.id).where(
                AddressReview.residence_id == residence_id,
                AddressReview.status == "open",
            )
        )
        if residence_id is not None and already is not None:
            continue
        queue(session, item.result, source, residence_id)
        queued += 1
    return queued


def import_source(bundle_name: str) -> str:
    return f"import:{bundle_name}:{dt.date.today().isoformat()}"
