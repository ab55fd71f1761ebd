"""The officers' web map: ``/map`` (a static page) and ``/map/config`` (what it needs).

The page and everything it loads (MapLibre GL JS, vendored under /static/vendor) come
from this server, so it works on a network with no internet; a raster base layer is
drawn only when ``REGISTRY_BASEMAP_URL`` is set. The API it calls is in
:mod:`api.fieldwork` and :mod:`api.tiles`; see docs/web-map.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.auth import principal_of
from registry.auth import EDITORS, PERSON_READERS, Principal
from registry.models import Community
from registry.rates import within
from registry.verification import FAR_M

router = APIRouter(tags=["Web map"])

PAGE = Path(__file__).parent / "static" / "map" / "index.html"
TILE_LAYERS = "communities,buildings,addresses,coverage-gaps"


def communities_of(session: Session, principal: Principal) -> list[dict[str, Any]]:
    """The communities of the caller's jurisdiction with the bounding boxes of their
    boundaries (None without one), by code."""
    box = func.Box2D(Community.boundary)
    query = select(
        Community.code,
        Community.name,
        func.ST_XMin(box).label("xmin"),
        func.ST_YMin(box).label("ymin"),
        func.ST_XMax(box).label("xmax"),
        func.ST_YMax(box).label("ymax"),
    ).order_by(Community.code)
    if not principal.sees_all:
        query = query.where(within(Community.code, principal.jurisdiction))
    return [
        {
            "code": r.code,
            "name": r.name,
            "bbox": None if r.xmin is None else [r.xmin, r.ymin, r.xmax, r.ymax],
        }
        for r in session.execute(query)
    ]


@router.get("/map", include_in_schema=False)
async def web_map() -> FileResponse:
    """The page; a browser without a session is sent to the sign-in form first."""
    return FileResponse(PAGE, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/map/config", summary="What the web map needs to start")
async def map_config(request: Request) -> dict[str, Any]:
    """The signed-in account and what it may do, the CSRF token of a browser session,
    the base layer (null: none), the verification cycle, the photo limit, the
    jurisdiction's communities and the vector tile URL template."""
    principal = principal_of(request)
    settings = request.app.state.settings
    credential = getattr(request.state, "credential", None)
    communities = await request.app.state.database.run_sync(principal, communities_of, principal)
    basemap = (
        {"url": settings.basemap_url, "attribution": settings.basemap_attribution or ""}
        if settings.basemap_url
        else None
    )
    return {
        "user": {
            "name": principal.name,
            "role": principal.role,
            "jurisdiction": list(principal.jurisdiction),
        },
        "csrf_token": credential.csrf if credential is not None else None,
        "may_edit": principal.role in EDITORS,
        "sees_persons": principal.role in PERSON_READERS,
        "basemap": basemap,
        "cycle_days": settings.verification_cycle_days,
        "far_m": FAR_M,
        "photo_max_kb": settings.photo_max_kb,
        "communities": communities,
        "tiles": f"/tiles/{TILE_LAYERS}/{{z}}/{{x}}/{{y}}.mvt",
    }
