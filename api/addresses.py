"""Free-text address matching and the review queue over HTTP.

``POST /addresses/match`` answers single addresses and small batches; ``/reviews`` lists
the queue and records who accepted or rejected each item: the signed-in account, with
an audit row. Only editors (officer, station, admin) may use them, and row-level security
shows each only the items of residents in their jurisdiction (or linked to none).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.auth import allow, client_ip, principal_of
from api.problems import Problem, bad_request
from registry import audit
from registry.address.gazetteer import Gazetteer
from registry.address.match import AddressIndex, Matcher
from registry.address.review import (
    ReviewClosedError,
    ReviewNotFoundError,
    accept,
    list_reviews,
    reject,
)
from registry.auth import EDITORS, Principal
from registry.models import Address, Community
from registry.settings import RegistryError

router = APIRouter(tags=["Addresses"])

MAX_BATCH = 1000
MAX_TEXT = 500


class MatchRequest(BaseModel):
    addresses: list[Annotated[str, Field(max_length=MAX_TEXT)]] = Field(
        min_length=1, max_length=MAX_BATCH, description="free-text addresses, up to 1000"
    )


BY = "ignored: the signed-in account is recorded as the decider"


class AcceptRequest(BaseModel):
    by: str | None = Field(default=None, max_length=200, description=BY)
    candidate: int | None = Field(default=None, ge=1, description="candidate number, from 1")
    room_id: str | None = Field(default=None, max_length=64)
    address_code: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=2000)


class RejectRequest(BaseModel):
    by: str | None = Field(default=None, max_length=200, description=BY)
    note: str | None = Field(default=None, max_length=2000)


class MatcherCache:
    """The address index, rebuilt only when standard addresses or communities change."""

    def __init__(self) -> None:
        self.version: tuple[Any, ...] | None = None
        self.parts: tuple[Gazetteer, AddressIndex] | None = None
        self.lock = asyncio.Lock()

    def matcher(self, session: Session) -> Matcher:
        version = tuple(
            session.execute(
                select(func.count(), func.max(table.updated_at)).select_from(table)
            ).one()
            for table in (Address, Community)
        )
        if version != self.version or self.parts is None:
            loaded = Matcher.load(session)
            self.parts, self.version = (loaded.gazetteer, loaded.index), version
            return loaded
        return Matcher(session, *self.parts)


MATCHER_SCOPES = 16


def matcher_cache(request: Request, principal: Principal) -> MatcherCache:
    """The matcher of the addresses this principal sees (row-level security decides), one
    per distinct view: one jurisdiction's index must never answer another's."""
    state = request.app.state
    if not hasattr(state, "matcher_caches"):
        state.matcher_caches = OrderedDict()
    caches: OrderedDict[str, MatcherCache] = state.matcher_caches
    cache = caches.get(principal.scope_key)
    if cache is None:
        cache = caches[principal.scope_key] = MatcherCache()
        while len(caches) > MATCHER_SCOPES:
            caches.popitem(last=False)
    caches.move_to_end(principal.scope_key)
    return cache


EDITORS_ONLY = [Depends(allow(*EDITORS, what="match addresses or decide reviews"))]


def audited(
    decide: Callable[..., dict[str, Any]], principal: Principal, review_id: int, ip: str | None
) -> Callable[..., dict[str, Any]]:
    """``decide`` followed, in its transaction, by a ``review`` audit row."""

    def run(session: Session, *args: Any, **kwargs: Any) -> dict[str, Any]:
        item = decide(session, *args, **kwargs)
        audit.record(
            session,
            principal,
            "review",
            client_ip=ip,
            targets=[review_id],
            detail={"decision": item.get("status")},
        )
        return item

    return run


def registry_problem(exc: RegistryError) -> Problem:
    if isinstance(exc, ReviewNotFoundError):
        return Problem(404, str(exc))
    if isinstance(exc, ReviewClosedError):
        return Problem(409, str(exc))
    return bad_request(str(exc))


@router.post(
    "/addresses/match", summary="Match free-text addresses to rooms", dependencies=EDITORS_ONLY
)
async def match_addresses(request: Request, body: MatchRequest) -> dict[str, Any]:
    """Each address's status (matched | review | unmatched), placement and candidates.

    Nothing is written: only an exact building-and-room match is reported as matched.
    """
    if any("\x00" in text for text in body.addresses):
        raise bad_request("addresses: text contains a NUL character")
    principal = principal_of(request)
    cache = matcher_cache(request, principal)

    def run(session: Session) -> list[dict[str, Any]]:
        results = cache.matcher(session).match_many(body.addresses)
        return [r.as_dict() for r in results]

    async with cache.lock:
        results = await request.app.state.database.run_sync(principal, run)
    return {"results": results}


@router.get("/reviews", summary="The review queue", dependencies=EDITORS_ONLY)
async def reviews(
    request: Request,
    status: Literal["open", "accepted", "rejected"] = "open",
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    items = await request.app.state.database.run_sync(
        principal_of(request), list_reviews, status, after, limit
    )
    return {"items": items, "numberReturned": len(items)}


@router.post(
    "/reviews/{review_id}/accept",
    summary="Accept a candidate or name a room",
    dependencies=EDITORS_ONLY,
)
async def accept_review(request: Request, review_id: int, body: AcceptRequest) -> dict[str, Any]:
    """Only items the caller sees (their residents' or unlinked); the decision is audited."""
    principal = principal_of(request)
    try:
        return await request.app.state.database.write_sync(
            principal,
            audited(accept, principal, review_id, client_ip(request)),
            review_id,
            principal.name,
            candidate=body.candidate,
            room_id=body.room_id,
            address_code=body.address_code,
            note=body.note,
        )
    except RegistryError as exc:
        raise registry_problem(exc) from None


@router.post(
    "/reviews/{review_id}/reject", summary="Reject a review item", dependencies=EDITORS_ONLY
)
async def reject_review(request: Request, review_id: int, body: RejectRequest) -> dict[str, Any]:
    principal = principal_of(request)
    try:
        return await request.app.state.database.write_sync(
            principal,
            audited(reject, principal, review_id, client_ip(request)),
            review_id,
            principal.name,
            body.note,
        )
    except RegistryError as exc:
        raise registry_problem(exc) from None
