"""Persons over HTTP: a room's residents, a room with its current residents, and search
by identity number — for ``officer`` and ``station`` only, masked unless asked otherwise.

Row-level security decides what exists: a room or person outside the caller's
jurisdiction is simply not found. Every answer is read in one transaction with its audit
row (``read_persons``, ``search_identity``, and ``unmask`` for clear values), so a read
whose audit row cannot be written returns nothing. ``unmask`` needs a stated purpose.

Identity numbers travel only in POST bodies, never in URLs (access logs keep those),
and are never logged or written anywhere: the search uses their keyed HMAC. Answers
carry ``Cache-Control: no-store``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.auth import allow, client_ip
from api.problems import PROBLEM_JSON, Problem, bad_request, not_found
from registry import persons
from registry.auth import PERSON_READERS, Principal
from registry.idnumber import IdNumberError, parse_id_number
from registry.settings import RegistryError
from registry.vault import IdentityVault, bind_vault, load_vault

log = logging.getLogger("registry.api.persons")

router = APIRouter(tags=["Persons"])

MAX_PURPOSE = 500
MAX_ROOM_ID = 64  # room.id is varchar(64)
MAX_ID_INPUT = 64  # what a search accepts before saying why the number is wrong
NO_STORE = "no-store"

Reader = Annotated[Principal, Depends(allow(*PERSON_READERS, what="read persons"))]
RoomId = Annotated[
    str,
    Query(min_length=1, max_length=MAX_ROOM_ID, description="The room's id, e.g. GG-0008-1-101."),
]
Unmask = Annotated[
    bool,
    Query(description="Clear names and identity numbers (audited as `unmask`; needs `purpose`)."),
]
Purpose = Annotated[
    str | None,
    Query(
        max_length=MAX_PURPOSE,
        description="Why the data is read (recorded in the audit log); required with unmask.",
    ),
]


def problem(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Problem"}  # declared by api.openapi
    return {"description": description, "content": {PROBLEM_JSON: {"schema": schema}}}


PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: problem("A bad parameter, a malformed identity number or unmask without a purpose."),
    401: problem("Not signed in."),
    403: problem("The role may not read persons (only officer and station may)."),
    503: problem("The identity key file is not available to the server."),
}


class Resident(BaseModel):
    """One residence of a person: masked (``张*``, ``**************1234``) unless unmasked."""

    person_id: int
    name: str
    id_number: str
    category: str
    moved_in: dt.date | None
    moved_out: dt.date | None
    room_id: str | None
    community_code: str


class Residents(BaseModel):
    masked: bool
    residents: list[Resident]
    numberReturned: int


class RoomResidents(BaseModel):
    id: str
    building_id: str
    building_name: str | None
    community_code: str
    unit: str | None
    floor: int | None
    number: str
    use: str | None
    as_of: dt.date = Field(description="Residents are those not moved out by this date.")
    masked: bool
    residents: list[Resident]
    numberReturned: int


class SearchRequest(BaseModel):
    """A search by identity number: POSTed, so the number is in no URL or access log."""

    model_config = ConfigDict(extra="forbid")

    id_number: str = Field(
        min_length=1, max_length=MAX_ID_INPUT, description="An 18-character identity number."
    )
    purpose: str = Field(
        max_length=MAX_PURPOSE, description="Why the search is made (recorded in the audit log)."
    )
    unmask: bool = Field(default=False, description="Clear names and numbers in the answer.")


# ---------------------------------------------------------------- checks


def checked_text(name: str, value: str) -> str:
    """Refuse text PostgreSQL cannot store (NUL, lone surrogates from JSON escapes)."""
    if "\x00" in value:
        raise bad_request(f"{name}: contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(f"{name}: is not valid Unicode text") from None
    return value


def checked_purpose(purpose: str | None, required: bool) -> str | None:
    """The stated purpose, stripped; 400 if ``required`` and missing or blank."""
    purpose = checked_text("purpose", purpose).strip() if purpose is not None else None
    if required and not purpose:
        raise bad_request("purpose: state why the data is needed (required to unmask or search)")
    if purpose and len(purpose) > MAX_PURPOSE:
        raise bad_request(f"purpose: at most {MAX_PURPOSE} characters")
    return purpose or None


def masked_input(value: str) -> str:
    """A submitted number as an error message may show it: at most its last four
    characters, and only when at least as many are hidden."""
    tail = value[-4:] if len(value) >= 8 else ""
    return "*" * (len(value) - len(tail)) + tail


def checked_number(raw: str) -> str:
    """The normalised number; a 400 whose message shows it masked only — never the
    validator's own message, which can quote the birth date or the check character."""
    value = checked_text("id_number", raw).strip().upper()
    try:
        return parse_id_number(value).value
    except IdNumberError:
        pass
    if len(value) != persons.ID_LENGTH:
        reason = f"must have {persons.ID_LENGTH} characters, has {len(value)}"
    elif not (value[:17].isascii() and value[:17].isdigit()):
        reason = "the first 17 characters must be digits"
    else:
        reason = "the check character or the birth date is wrong"
    raise bad_request(f"id_number {masked_input(value)}: not a valid identity number ({reason})")


# ---------------------------------------------------------------- the key file


@dataclass
class KeyFile:
    """The identity vault, loaded on first need and again when the file changes (after
    ``registry keys rotate``), checked against the database's recorded fingerprints."""

    path: Path
    stamp: tuple[int, int, int] | None = None
    vault: IdentityVault | None = None

    def changed(self) -> tuple[IdentityVault, tuple[int, int, int]] | None:
        """The vault if the file changed since it was last accepted, else None."""
        try:
            stat = os.stat(self.path)
        except OSError as exc:
            raise RegistryError(f"key file {self.path}: {exc.strerror}") from None
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if stamp == self.stamp and self.vault is not None:
            return None
        return load_vault(self.path), stamp


def check_vault(session: Session, vault: IdentityVault, path: Path) -> None:
    bind_vault(session, vault, path, writing=False)


async def identity_vault(request: Request, principal: Principal) -> IdentityVault:
    """The server's vault, or a 503 that names no path (the log has the reason)."""
    state = request.app.state
    if not hasattr(state, "key_file"):
        state.key_file = KeyFile(state.settings.key_path)
    keys: KeyFile = state.key_file
    try:
        fresh = keys.changed()
        if fresh is not None:
            await state.database.run_sync(principal, check_vault, fresh[0], keys.path)
            keys.vault, keys.stamp = fresh
    except RegistryError as exc:
        log.error("identity numbers cannot be searched or unmasked: %s", exc)
        raise Problem(
            503,
            "identity numbers cannot be searched or unmasked now: the server's key file "
            "is missing or does not match the database",
        ) from None
    assert keys.vault is not None
    return keys.vault


async def access_for(
    request: Request,
    principal: Principal,
    purpose: str | None,
    unmask: bool,
    *,
    needs_purpose: bool = False,
) -> persons.Access:
    """How this request reads persons: 400 for a missing purpose, 503 without keys."""
    purpose = checked_purpose(purpose, required=unmask or needs_purpose)
    vault = await identity_vault(request, principal) if unmask else None
    return persons.Access(principal, client_ip(request), purpose, vault)


async def audited(request: Request, fn: Any, access: persons.Access, *args: Any) -> Any:
    """Run a read and its audit rows in one committed transaction; a key the file lacks
    for some row is a 503, like a missing file."""
    try:
        return await request.app.state.database.write_sync(access.principal, fn, access, *args)
    except RegistryError as exc:
        log.error("a person could not be unmasked: %s", exc)
        raise Problem(
            503, "an identity number could not be decrypted with the server's keys"
        ) from None


def answer(access: persons.Access, rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"masked": not access.unmasked, "residents": rows, "numberReturned": len(rows)}


# ---------------------------------------------------------------- routes


@router.get(
    "/persons", response_model=Residents, responses=PROBLEMS, summary="The residents of a room"
)
async def room_persons(
    request: Request,
    response: Response,
    principal: Reader,
    room_id: RoomId,
    unmask: Unmask = False,
    purpose: Purpose = None,
) -> dict[str, Any]:
    """Every residence of the room, past ones included, oldest first. A room outside the
    jurisdiction has no residents (an empty list). Audited as ``read_persons``."""
    checked_text("room_id", room_id)
    access = await access_for(request, principal, purpose, unmask)
    rows = await audited(request, persons.room_residents, access, room_id)
    response.headers["Cache-Control"] = NO_STORE
    return answer(access, rows)


@router.get(
    "/rooms/{room_id}",
    response_model=RoomResidents,
    responses={**PROBLEMS, 404: problem("No such room in the jurisdiction.")},
    summary="A room and its current residents",
)
async def room(
    request: Request,
    response: Response,
    principal: Reader,
    room_id: Annotated[str, PathParam(max_length=MAX_ROOM_ID, description="The room's id.")],
    unmask: Unmask = False,
    purpose: Purpose = None,
) -> dict[str, Any]:
    """The room (building, unit, floor, number, use) and who lives there today. Audited
    as ``read_persons``; a room outside the jurisdiction is a 404."""
    checked_text("room_id", room_id)
    access = await access_for(request, principal, purpose, unmask)
    found = await audited(request, persons.room_with_residents, access, room_id)
    if found is None:
        raise not_found(f"no room {room_id}")
    response.headers["Cache-Control"] = NO_STORE
    rows = found.pop("residents")
    return {**found, **answer(access, rows)}


@router.post(
    "/persons/search",
    response_model=Residents,
    responses=PROBLEMS,
    summary="Find a person by identity number",
)
async def search(
    request: Request, response: Response, principal: Reader, body: SearchRequest
) -> dict[str, Any]:
    """Exact search through the number's keyed HMAC: the residences of that person in
    the jurisdiction (none outside it). ``purpose`` is required; audited as
    ``search_identity`` with the persons found, never the number."""
    number = checked_number(body.id_number)
    access = await access_for(request, principal, body.purpose, body.unmask, needs_purpose=True)
    vault = access.vault or await identity_vault(request, principal)
    rows = await audited(request, persons.search_identity, access, vault.lookup_keys(number))
    response.headers["Cache-Control"] = NO_STORE
    return answer(access, rows)
