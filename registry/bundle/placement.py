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

from sqlalchemy import select
from sqlalchemy.orm import Session

from registry.address.match import Matcher, MatchResult
from registry.address.review import queue
from registry.bundle.layers import VALUES
from registry.bundle.problems import Problem
from registry.bundle.read import LayerFile
from registry.models import AddressReview, Person, Residence
from registry.vault import IdentityVault

ID_NUMBER, ROOM, ADDRESS, MOVED_IN = (
    VALUES["residents"].index(name) for name in ("id_number", "room_id", "address", "moved_in")
)


@dataclass
class Pending:
    """A resident row whose address was not placed automatically."""

    number: int
    values: tuple  # as checked: see registry.bundle.layers.VALUES["residents"]
    result: MatchResult


def place_addresses(
    session: Session,
    rows: list[tuple[int, tuple]],
    vault: IdentityVault,
    layer_file: LayerFile,
    problems: list[Problem],
) -> tuple[list[tuple], list[Pending]]:
    """Rows (numbered) that give an address and no room, with ``room_id`` filled where
    the address matches exactly or a review placed the residence before; and the others,
    pending review, each reported as a warning."""
    if not rows:
        return [], []
    results = Matcher.load(session).match_many([values[ADDRESS] for _, values in rows])
    placed, pending = [], []
    for (number, values), result in zip(rows, results, strict=True):
        room_id = (
            result.room_id if result.status == "matched" else current_room(session, vault, values)
        )
        placed.append((*values[:ROOM], room_id, *values[ROOM + 1 :]))
        if room_id is not None:
            continue
        pending.append(Pending(number, values, result))
        problems.append(
            Problem(
                layer_file.label,
                number,
                "address",
                f"{values[ADDRESS]!r} not placed ({result.status}, "
                f"{len(result.candidates)} candidates): loaded without a room and queued "
                "for review",
                "warning",
                layer_file.unit,
            )
        )
    return placed, pending


def residence_of(session: Session, vault: IdentityVault, values: tuple):
    """The residence of the row's person and ``moved_in``, whichever key version the
    person's row is under (during a rotation rows are under more than one)."""
    lookups = vault.lookup_keys(values[ID_NUMBER])
    return session.execute(
        select(Residence.id, Residence.room_id)
        .join(Person, Person.id == Residence.person_id)
        .where(
            Person.id_hmac.in_(lookups),
            Residence.moved_in.is_not_distinct_from(values[MOVED_IN]),
        )
    ).one_or_none()


def current_room(session: Session, vault: IdentityVault, values: tuple) -> str | None:
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
