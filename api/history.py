"""The register's history over HTTP: a building's versions, and the change feed.

``GET /buildings/{id}/history`` lists every version of a building (retired ones too),
with its valid time and when and by whom it was recorded and superseded.
``GET /changes?after=N`` returns the changes numbered after N in commit order, each with
the values the change left; a district GIS keeps ``next_after`` and asks again, instead
of downloading everything. Row-level security decides what each caller sees: residences
and employments (person-level) only for officers and stations in their jurisdiction.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.auth import principal_of
from api.features import base_url
from api.problems import bad_request, not_found
from registry.changes import DEFAULT_LIMIT, MAX_LIMIT, changes_after
from registry.history import HistoryError, versions
from registry.models import VERSIONED

router = APIRouter(tags=["History"])

NO_STORE = "private, no-store"


@router.get("/buildings/{building_id}/history", summary="Every version of a building")
async def building_history(
    request: Request,
    building_id: Annotated[str, Path(min_length=1, max_length=64)],
) -> JSONResponse:
    """Versions oldest first: the building's values (footprint as GeoJSON), ``valid_from``
    and ``valid_to`` (when it was so), ``recorded_at``/``recorded_by`` and
    ``superseded_at``/``superseded_by`` (when the register learnt it, and replaced it)."""
    rows = await request.app.state.database.run_sync(
        principal_of(request), versions, "building", building_id
    )
    if not rows:
        raise not_found(f"no building {building_id!r} in the jurisdiction, now or before")
    body = {"id": building_id, "versions": rows}
    return JSONResponse(jsonable_encoder(body), headers={"Cache-Control": NO_STORE})


def landing_links(root: str) -> list[dict[str, str]]:
    """The landing page links to the change feed."""
    return [
        {
            "href": f"{root}/changes",
            "rel": "related",
            "type": "application/json",
            "title": "changes in commit order (?after=N), to keep a copy in step",
        }
    ]


def feed(session: Session, after: int, limit: int, entities: list[str] | None) -> Any:
    return changes_after(session, after, limit, entities)


@router.get("/changes", summary="Changes after a sequence number, in commit order")
async def changes(
    request: Request,
    after: Annotated[
        int, Query(ge=0, description="the last change number already processed (0: all)")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="changes per page")] = (
        DEFAULT_LIMIT
    ),
    entity: Annotated[
        str | None,
        Query(description=f"comma-separated kinds to keep: {', '.join(VERSIONED)}"),
    ] = None,
) -> JSONResponse:
    """Each change: ``seq``, ``committed_at``, ``entity``, ``id``, ``op`` (insert, update,
    delete) and ``data`` (the values it left; null for a delete). ``next_after`` is the
    number to ask after next time; ``latest`` the newest change number of the register.
    Every change appears exactly once, in commit order, so a client that stores
    ``next_after`` misses nothing."""
    entities = [e.strip() for e in entity.split(",") if e.strip()] if entity else None
    try:
        page = await request.app.state.database.run_sync(
            principal_of(request), feed, after, limit, entities
        )
    except HistoryError as exc:
        raise bad_request(str(exc)) from None
    root = base_url(request)
    query = f"after={page.next_after}&limit={limit}" + (f"&entity={entity}" if entity else "")
    body = {
        "changes": page.changes,
        "next_after": page.next_after,
        "latest": page.latest,
        "links": [{"href": f"{root}/changes?{query}", "rel": "next", "type": "application/json"}],
    }
    return JSONResponse(jsonable_encoder(body), headers={"Cache-Control": NO_STORE})
