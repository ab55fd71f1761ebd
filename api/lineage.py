"""Splits, merges and lineage over HTTP (docs/lineage.md).

``POST /buildings/{id}/split`` and ``POST /buildings/merge`` are for editors within their
jurisdiction; each is one transaction with its ``verification`` audit row (detail
``action`` ``split`` or ``merge``). A split may name the version it was based on
(``If-Match``, the building's ETag): a stale one is a 409 and nothing changes.
``GET /buildings/{id}/lineage`` answers for current and retired ids alike; a retired id
elsewhere answers 410 Gone with its successors (:func:`missing_building`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from api.auth import client_ip, principal_of
from api.fieldwork import (
    EDITING,
    MAX_NOTE,
    NO_STORE,
    WRITE_PROBLEMS,
    BuildingId,
    expected_version,
    no_nul,
    problem,
    registry_problem,
    sees_persons,
)
from api.problems import Problem, not_found
from registry import audit, lineage
from registry.auth import Principal
from registry.settings import RegistryError

router = APIRouter(tags=["Field verification"])

MAX_IDS = 10_000
LINEAGE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    **WRITE_PROBLEMS,
    410: problem(410, "A building id retired by a split or merge (`successors` lists them)."),
}


class PartIn(BaseModel):
    geometry: dict[str, Any] = Field(description="the part's outline, GeoJSON (lon/lat)")
    rooms: list[str] = Field(default_factory=list, max_length=MAX_IDS)
    addresses: list[str] = Field(default_factory=list, max_length=MAX_IDS)
    organizations: list[str] = Field(default_factory=list, max_length=MAX_IDS)
    floors: int | None = Field(default=None, ge=1, le=200)
    name: str | None = Field(default=None, max_length=200)
    use: str | None = Field(default=None, max_length=100)


class SplitIn(BaseModel):
    parts: list[PartIn] = Field(
        description="two or more parts; each room, address and "
        "organization of the building in exactly one"
    )
    note: str | None = Field(default=None, max_length=MAX_NOTE)


class MergeIn(BaseModel):
    ids: list[str] = Field(description="two or more buildings of one community", max_length=50)
    geometry: dict[str, Any] | None = Field(
        default=None, description="the outline; default: the union of their footprints"
    )
    name: str | None = Field(default=None, max_length=200)
    floors: int | None = Field(default=None, ge=1, le=200)
    use: str | None = Field(default=None, max_length=100)
    note: str | None = Field(default=None, max_length=MAX_NOTE)


def gone(exc: lineage.RetiredBuildingError, request: Request) -> Problem:
    root = str(request.base_url).rstrip("/")
    return Problem(
        410,
        str(exc),
        successors=exc.successors,
        event=exc.event,
        links=[
            {"href": f"{root}/buildings/{s}", "rel": "successor", "type": "application/json"}
            for s in exc.successors
        ]
        + [
            {
                "href": f"{root}/buildings/{exc.building_id}/lineage",
                "rel": "lineage",
                "type": "application/json",
            }
        ],
    )


async def missing_building(request: Request, principal: Principal, building_id: str) -> Problem:
    """410 Gone (with the successors) for a retired id, else 404."""
    retired = await request.app.state.database.run_sync(principal, lineage.retirement, building_id)
    if retired is not None:
        return gone(retired, request)
    return not_found(f"no building {building_id} in your jurisdiction")


async def change(request: Request, principal: Principal, operation: Any, status: int) -> Any:
    """Run ``operation(session)`` (a split or merge) with its audit row in one
    transaction; answer 201 with what it did."""
    ip = client_ip(request)

    def run(session: Session) -> dict[str, Any]:
        done = operation(session)
        audit.record(
            session,
            principal,
            "verification",
            client_ip=ip,
            targets=[*done["retired"], *(s["id"] for s in done["successors"])],
            detail={"action": done["kind"], "event_id": done["event_id"]},
        )
        return done

    try:
        done = await request.app.state.database.write_sync(principal, run)
    except lineage.RetiredBuildingError as exc:
        raise gone(exc, request) from None
    except RegistryError as exc:
        raise registry_problem(exc) from None
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == "42501":  # row-level security refused it
            raise Problem(403, f"outside the jurisdiction of {principal.name}") from None
        raise
    first = done["successors"][0]["id"]
    headers = {"Cache-Control": NO_STORE, "Location": f"/buildings/{first}"}
    return JSONResponse(done, status_code=status, headers=headers)


@router.post(
    "/buildings/merge",
    summary="Merge buildings into one with a new id",
    status_code=201,
    dependencies=EDITING,
    responses=LINEAGE_PROBLEMS,
)
async def merge(request: Request, body: MergeIn) -> JSONResponse:
    """The buildings' rooms, addresses and organizations move to the new building; the
    old ids are retired (410 from now on) and linked to it."""
    no_nul(name=body.name, use=body.use, note=body.note, ids="".join(body.ids))
    principal = principal_of(request)

    def operation(session: Session) -> dict[str, Any]:
        return lineage.merge_buildings(
            session,
            body.ids,
            principal.name,
            note=body.note,
            outline=body.geometry,
            name=body.name,
            floors=body.floors,
            use=body.use,
            sees_persons=sees_persons(principal),
        )

    return await change(request, principal, operation, 201)


@router.post(
    "/buildings/{building_id}/split",
    summary="Split a building into parts with new ids",
    status_code=201,
    dependencies=EDITING,
    responses=LINEAGE_PROBLEMS,
)
async def split(request: Request, building_id: BuildingId, body: SplitIn) -> JSONResponse:
    """Each part names the rooms, standard addresses and organizations it takes: every
    one of the building's, each in exactly one part. Residences follow their rooms. The
    old id is retired (410 from now on) and linked to the parts' new ids."""
    ids = [i for p in body.parts for i in (*p.rooms, *p.addresses, *p.organizations)]
    no_nul(building_id=building_id, note=body.note, ids="".join(ids))
    for p in body.parts:
        no_nul(name=p.name, use=p.use)
    principal = principal_of(request)
    expected = expected_version(request, required=False)
    parts = [
        lineage.Part(p.geometry, p.rooms, p.addresses, p.organizations, p.floors, p.name, p.use)
        for p in body.parts
    ]

    def operation(session: Session) -> dict[str, Any]:
        return lineage.split_building(
            session,
            building_id,
            parts,
            principal.name,
            note=body.note,
            expected_version=expected,
            sees_persons=sees_persons(principal),
        )

    return await change(request, principal, operation, 201)


@router.get(
    "/buildings/{building_id}/lineage",
    summary="Where a building id comes from and what became of it",
    responses={404: problem(404, "No such building id in the jurisdiction.")},
)
async def building_lineage(request: Request, building_id: BuildingId) -> JSONResponse:
    """Direct predecessors and successors, all ancestors and descendants, the current
    buildings descended from it, and every split or merge event on the way."""
    no_nul(building_id=building_id)
    found = await request.app.state.database.run_sync(
        principal_of(request), lineage.lineage, building_id
    )
    if found is None:
        raise not_found(f"no building id {building_id} in your jurisdiction")
    return JSONResponse(found, headers={"Cache-Control": NO_STORE})
