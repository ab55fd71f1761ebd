"""Field verification over HTTP: the building panel, verifications, outline edits, new
buildings, photos, and a community's progress and work list (docs/web-map.md).

Reads are for every signed-in role (row-level security scopes them); writes are for
editors. Every write is one transaction: the building, its history row, its photo and the
counters behind the rates change together or not at all, and the answer carries the
building's new state, its ``ETag`` and the community's progress, so the map updates
without reloading. A write based on a stale copy (``If-Match``) is a 409 that carries the
current state; nothing is overwritten.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from starlette.datastructures import UploadFile

from api.auth import allow, client_ip, in_jurisdiction, principal_of
from api.problems import PROBLEM_JSON, Problem, not_found
from registry import audit, verification
from registry.auth import EDITORS, PERSON_READERS, Principal
from registry.disclosure import suppress_rates_row
from registry.photos import Photo, PhotoError, checked_photo
from registry.progress import community_progress
from registry.settings import RegistryError
from registry.verification import Position
from registry.worklist import worklist

router = APIRouter(tags=["Field verification"])

MAX_ID = 64
MAX_NOTE = 2000
BuildingId = Annotated[
    str, Path(min_length=1, max_length=MAX_ID, description="the building's permanent id")
]
CommunityCode = Annotated[str, Path(pattern=r"^[0-9]{12}$", description="12-digit community code")]
EDITING = [Depends(allow(*EDITORS, what="edit buildings"))]
NO_STORE = "private, no-store"


def problem(status: int, description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {}}}


WRITE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    403: problem(403, "Not an editor, or outside the jurisdiction."),
    404: problem(404, "No such building in the jurisdiction."),
    409: problem(409, "The building changed since If-Match (`current` has its state)."),
    422: problem(422, "A state, note, position or outline that cannot be recorded."),
}


class PositionIn(BaseModel):
    lon: float = Field(ge=-180, le=180, description="longitude, WGS 84 / CGCS2000")
    lat: float = Field(ge=-90, le=90, description="latitude")
    accuracy: float | None = Field(default=None, ge=0, description="metres, as reported")


class VerificationIn(BaseModel):
    state: Literal["verified", "corrected", "not_found", "disputed"]
    note: str | None = Field(default=None, max_length=MAX_NOTE)
    position: PositionIn | None = None
    geometry: dict[str, Any] | None = Field(
        default=None, description="with `corrected`: the new outline, GeoJSON (lon/lat)"
    )


class DemolitionIn(BaseModel):
    confirm: bool = Field(description="true: the building is gone; false: it is not")
    note: str | None = Field(default=None, max_length=MAX_NOTE)


class DoorPlateIn(BaseModel):
    lon: float = Field(ge=-180, le=180, description="where the plate is: longitude")
    lat: float = Field(ge=-90, le=90, description="latitude")
    note: str | None = Field(default=None, max_length=MAX_NOTE)


class NewBuildingIn(BaseModel):
    geometry: dict[str, Any] = Field(description="the outline, GeoJSON Polygon (lon/lat)")
    community_code: str | None = Field(default=None, pattern=r"^[0-9]{12}$")
    name: str | None = Field(default=None, max_length=200)
    floors: int | None = Field(default=None, ge=1, le=200)
    use: str | None = Field(default=None, max_length=100)
    note: str | None = Field(default=None, max_length=MAX_NOTE)
    position: PositionIn | None = None


MULTIPART_FIELDS = {
    "state": {"type": "string", "enum": list(verification.STATE_ACTIONS)},
    "note": {"type": "string", "maxLength": MAX_NOTE},
    "lon": {"type": "number"},
    "lat": {"type": "number"},
    "accuracy": {"type": "number", "minimum": 0},
    "geometry": {"type": "string", "description": "GeoJSON text, with `corrected`"},
    "photo": {"type": "string", "format": "binary", "description": "JPEG or PNG"},
}
VERIFICATION_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": VerificationIn.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["state"],
                    "properties": MULTIPART_FIELDS,
                }
            },
        },
    }
}


# ---------------------------------------------------------------- helpers


def sees_persons(principal: Principal) -> bool:
    return principal.role in PERSON_READERS


def etag(version: int) -> str:
    return f'"v{version}"'


def expected_version(request: Request, required: bool) -> int | None:
    """The version ``If-Match`` names: None when absent (428 if ``required``); a value
    that names no version (or several) can never match, so it is a conflict too."""
    header = request.headers.get("if-match")
    if header is None or not header.strip():
        if required:
            raise Problem(
                428,
                "If-Match is required: send the ETag of the building you edited, so a "
                "change made since is not overwritten",
            )
        return None
    value = header.strip()
    if value == "*":
        return None
    value = value.removeprefix("W/").strip('"')
    if value.startswith("v") and value[1:].isdigit() and len(value) < 12:
        return int(value[1:])
    return -1


def registry_problem(exc: RegistryError) -> Problem:
    if isinstance(exc, PhotoError):
        return Problem(exc.status, str(exc))
    if isinstance(exc, verification.StaleBuildingError):
        return Problem(409, str(exc), current=exc.current)
    if isinstance(exc, verification.BuildingNotFoundError):
        return Problem(404, str(exc))
    if isinstance(exc, verification.VerificationConflictError):
        return Problem(409, str(exc))
    if isinstance(exc, verification.NotPermittedError):
        return Problem(403, str(exc))
    return Problem(422, str(exc))


def no_nul(**values: str | None) -> None:
    for name, value in values.items():
        if value is not None and "\x00" in value:
            raise Problem(400, f"{name}: text has a NUL character")


def position_of(value: PositionIn | None) -> Position | None:
    return None if value is None else Position(value.lon, value.lat, value.accuracy)


def settings_of(request: Request) -> Any:
    return request.app.state.settings


def on_building(
    building_id: str, change: Callable[..., dict[str, Any]], *args: Any, **kwargs: Any
) -> Callable[[Session], tuple[str, dict[str, Any]]]:
    """An action for :func:`write`: ``change(session, building_id, *args, **kwargs)``, a
    repository function returning the history entry it appended."""

    def action(session: Session) -> tuple[str, dict[str, Any]]:
        return building_id, change(session, building_id, *args, **kwargs)

    return action


async def write(
    request: Request,
    principal: Principal,
    action: Callable[[Session], tuple[str, dict[str, Any]]],
    status: int = 200,
) -> JSONResponse:
    """Run ``action`` (returning the building id and its history entry) in one
    transaction with its ``verification`` audit row, and answer with the entry, the
    building and its community's progress."""
    cycle = settings_of(request).verification_cycle_days
    persons = sees_persons(principal)
    ip = client_ip(request)

    def run(session: Session) -> dict[str, Any]:
        building_id, entry = action(session)
        audit.record(
            session,
            principal,
            "verification",
            client_ip=ip,
            targets=[building_id],
            detail={"action": entry["action"], "history_id": entry["id"]},
        )
        building = verification.building_detail(session, building_id, persons)
        assert building is not None
        progress = community_progress(session, building["community_code"], cycle)
        return {"verification": entry, "building": building, "progress": progress}

    try:
        answer = await request.app.state.database.write_sync(principal, run)
    except RegistryError as exc:
        raise registry_problem(exc) from None
    except DBAPIError as exc:
        if getattr(exc.orig, "sqlstate", None) == "42501":  # row-level security refused it
            raise Problem(403, f"outside the jurisdiction of {principal.name}") from None
        raise
    building = answer["building"]
    headers = {"ETag": etag(building["version"]), "Cache-Control": NO_STORE}
    if status == 201:
        headers["Location"] = f"/buildings/{building['id']}"
    return JSONResponse(answer, status_code=status, headers=headers)


# ---------------------------------------------------------------- reading


@router.get(
    "/buildings/{building_id}",
    summary="A building as the field panel shows it",
    responses={404: problem(404, "No such building in the jurisdiction.")},
)
async def building(request: Request, building_id: BuildingId) -> JSONResponse:
    """Addresses, rooms, resident counts (for roles that may see persons), history, and
    the ``ETag`` to send back as ``If-Match``."""
    no_nul(building_id=building_id)
    principal = principal_of(request)
    detail = await request.app.state.database.run_sync(
        principal, verification.building_detail, building_id, sees_persons(principal)
    )
    if detail is None:
        from api.lineage import missing_building  # builds on this module

        raise await missing_building(request, principal, building_id)  # 410 if retired
    return JSONResponse(
        detail, headers={"ETag": etag(detail["version"]), "Cache-Control": NO_STORE}
    )


@router.get(
    "/photos/{photo_id}",
    summary="An evidence photo",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}, "image/png": {}}},
        404: problem(404, "No such photo in the jurisdiction."),
    },
)
async def photo(request: Request, photo_id: Annotated[int, Path(ge=1, le=2**62)]) -> Response:
    found = await request.app.state.database.run_sync(
        principal_of(request), verification.photo, photo_id
    )
    if found is None:
        raise not_found(f"no photo {photo_id} in your jurisdiction")
    media_type, content = found
    return Response(
        content, media_type=media_type, headers={"Cache-Control": "private, max-age=86400"}
    )


@router.get(
    "/communities/{code}/progress",
    summary="A community's rates and verified rate",
    responses={403: problem(403, "Outside the jurisdiction."), 404: problem(404, "Unknown.")},
)
async def progress(request: Request, code: CommunityCode) -> dict[str, Any]:
    principal = principal_of(request)
    in_jurisdiction(principal, code)
    cycle = settings_of(request).verification_cycle_days
    scope = None if principal.sees_all else principal.jurisdiction
    found = await request.app.state.database.run_sync(
        principal, community_progress, code, cycle, scope
    )
    if found is None:
        raise not_found(f"no community {code}")
    # the gis role passes aggregates on: small person counts are suppressed, as in reports
    return suppress_rates_row(found) if principal.role == "gis" else found


@router.get(
    "/communities/{code}/worklist",
    summary="A community's field work list",
    responses={403: problem(403, "Outside the jurisdiction.")},
)
async def community_worklist(
    request: Request,
    code: CommunityCode,
    lon: Annotated[float | None, Query(ge=-180, le=180, description="officer's longitude")] = None,
    lat: Annotated[float | None, Query(ge=-90, le=90, description="officer's latitude")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:
    """Buildings to place, verify or re-verify, disputes, unconfirmed demolitions,
    unlabelled buildings and coverage gaps: nearest first when ``lon`` and ``lat`` are
    given."""
    principal = principal_of(request)
    in_jurisdiction(principal, code)
    if (lon is None) != (lat is None):
        raise Problem(400, "lon and lat go together: give both or neither")
    cycle = settings_of(request).verification_cycle_days
    here = Position(lon, lat) if lon is not None and lat is not None else None
    items = await request.app.state.database.run_sync(principal, worklist, code, cycle, here, limit)
    return {"community": code, "cycle_days": cycle, "items": items}


# ---------------------------------------------------------------- writing


async def verification_input(request: Request) -> tuple[VerificationIn, Photo | None]:
    """The body as JSON, or as multipart/form-data with an optional photo."""
    content_type = request.headers.get("content-type", "")
    limit = settings_of(request).photo_max_kb * 1024
    try:
        if content_type.startswith("multipart/form-data"):
            async with request.form(max_files=1, max_fields=16) as form:
                fields = {k: v for k, v in form.items() if isinstance(v, str)}
                upload = form.get("photo")
                photo_in = None
                if isinstance(upload, UploadFile):
                    content = await upload.read(limit + 1)
                    if content:
                        photo_in = checked_photo(content, limit, upload.filename or "photo")
            return form_verification(fields), photo_in
        body = await request.json()
        return VerificationIn.model_validate(body), None
    except PhotoError as exc:
        raise Problem(exc.status, str(exc)) from None
    except ValidationError as exc:
        raise Problem(422, validation_detail(exc)) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise Problem(400, f"the body is not JSON or multipart/form-data: {exc}") from None
    except AssertionError as exc:  # starlette's multipart parser on a malformed body
        raise Problem(400, f"malformed multipart body: {exc}") from None


def form_verification(fields: dict[str, str]) -> VerificationIn:
    data: dict[str, Any] = {"state": fields.get("state"), "note": fields.get("note") or None}
    if fields.get("lon") or fields.get("lat"):
        data["position"] = {
            "lon": number(fields, "lon"),
            "lat": number(fields, "lat"),
            "accuracy": number(fields, "accuracy") if fields.get("accuracy") else None,
        }
    if fields.get("geometry"):
        try:
            data["geometry"] = json.loads(fields["geometry"])
        except json.JSONDecodeError as exc:
            raise Problem(422, f"geometry: not GeoJSON text ({exc})") from None
    return VerificationIn.model_validate(data)


def number(fields: dict[str, str], name: str) -> float:
    try:
        value = float(fields.get(name, ""))
    except ValueError:
        raise Problem(422, f"{name}: a number is needed") from None
    if not math.isfinite(value):
        raise Problem(422, f"{name}: a finite number is needed")
    return value


def validation_detail(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
    )


@router.post(
    "/buildings/{building_id}/verifications",
    summary="Record a field verification",
    status_code=201,
    dependencies=EDITING,
    responses={
        **WRITE_PROBLEMS,
        413: problem(413, "The photo is too large."),
        415: problem(415, "The photo is not a JPEG or PNG."),
        428: problem(428, "A geometry needs If-Match."),
    },
    openapi_extra=VERIFICATION_BODY,
)
async def verify(request: Request, building_id: BuildingId) -> JSONResponse:
    """``verified``, ``corrected`` (with a ``geometry`` and ``If-Match``), ``not_found``
    (proposes demolished) or ``disputed``; a note, the device's position and a photo
    are optional. A position more than 100 m from the building is flagged, not refused."""
    no_nul(building_id=building_id)
    principal = principal_of(request)
    body, photo_in = await verification_input(request)
    no_nul(note=body.note)
    expected = expected_version(request, required=body.geometry is not None)

    action = on_building(
        building_id,
        verification.record_verification,
        body.state,
        principal.name,
        expected_version=expected,
        note=body.note,
        position=position_of(body.position),
        outline=body.geometry,
        photo_in=photo_in,
        sees_persons=sees_persons(principal),
    )
    return await write(request, principal, action, status=201)


@router.put(
    "/buildings/{building_id}/geometry",
    summary="Replace or place a building's outline",
    dependencies=EDITING,
    responses={**WRITE_PROBLEMS, 428: problem(428, "If-Match is required.")},
)
async def put_geometry(
    request: Request, building_id: BuildingId, body: dict[str, Any]
) -> JSONResponse:
    """A GeoJSON Polygon or MultiPolygon (lon/lat), or a Feature with one and an optional
    ``properties.note``; recorded as a ``corrected`` verification with old and new
    outline."""
    no_nul(building_id=building_id)
    principal = principal_of(request)
    expected = expected_version(request, required=True)
    note = None
    geometry: Any = body
    if body.get("type") == "Feature":
        geometry = body.get("geometry")
        if geometry is None:
            raise Problem(422, "geometry: the Feature has no geometry")
        properties = body.get("properties") or {}
        note = properties.get("note") if isinstance(properties, dict) else None
        if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
            raise Problem(422, f"properties.note: text of at most {MAX_NOTE} characters")
    no_nul(note=note)

    action = on_building(
        building_id,
        verification.replace_outline,
        geometry,
        principal.name,
        expected,
        note=note,
        sees_persons=sees_persons(principal),
    )
    return await write(request, principal, action)


@router.post(
    "/buildings/{building_id}/demolition",
    summary="Confirm or reject a not-found report",
    dependencies=EDITING,
    responses=WRITE_PROBLEMS,
)
async def demolition(request: Request, building_id: BuildingId, body: DemolitionIn) -> JSONResponse:
    """A second person decides: any editor but the one who reported the building as not
    found. Confirmed: ``demolished``; rejected: ``disputed``."""
    no_nul(building_id=building_id, note=body.note)
    principal = principal_of(request)
    expected = expected_version(request, required=False)

    action = on_building(
        building_id,
        verification.decide_demolition,
        body.confirm,
        principal.name,
        note=body.note,
        expected_version=expected,
        sees_persons=sees_persons(principal),
    )
    return await write(request, principal, action)


@router.put(
    "/buildings/{building_id}/addresses/{address_code}/door-plate",
    summary="Place a door plate where it is",
    dependencies=EDITING,
    responses=WRITE_PROBLEMS,
)
async def door_plate(
    request: Request,
    building_id: BuildingId,
    address_code: Annotated[str, Path(min_length=1, max_length=MAX_ID)],
    body: DoorPlateIn,
) -> JSONResponse:
    """Moves the door plate (门牌) of one of the building's active standard addresses:
    labelling counts a plate within 30 m of the outline. Recorded in the building's
    history as ``door_plate_moved`` with the old and new point."""
    no_nul(building_id=building_id, address_code=address_code, note=body.note)
    principal = principal_of(request)
    expected = expected_version(request, required=False)

    action = on_building(
        building_id,
        verification.move_door_plate,
        address_code,
        Position(body.lon, body.lat),
        principal.name,
        note=body.note,
        expected_version=expected,
        sees_persons=sees_persons(principal),
    )
    return await write(request, principal, action)


@router.post(
    "/buildings",
    summary="Register a building drawn in the field",
    status_code=201,
    dependencies=EDITING,
    responses=WRITE_PROBLEMS,
)
async def create(request: Request, body: NewBuildingIn) -> JSONResponse:
    """A new permanent id, in the community containing the outline's point-on-surface
    unless ``community_code`` names one; it must be in the caller's jurisdiction."""
    no_nul(name=body.name, use=body.use, note=body.note)
    principal = principal_of(request)
    if body.community_code:
        in_jurisdiction(principal, body.community_code)

    def action(session: Session) -> tuple[str, dict[str, Any]]:
        return verification.create_building(
            session,
            body.geometry,
            principal.name,
            community_code=body.community_code,
            name=body.name,
            floors=body.floors,
            use=body.use,
            note=body.note,
            position=position_of(body.position),
        )

    return await write(request, principal, action, status=201)
