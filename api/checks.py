"""``GET /reports/checks``: the data-quality findings (registry/checks.py) in the caller's
jurisdiction, as JSON, GeoJSON or CSV; ``GET /reports/checks/catalogue``: the checks.

The checks run as the caller under row-level security, filtered to their jurisdiction.
Checks about residents (``persons`` in the catalogue) run only for the roles that may
read residents (``officer``, ``station``); for the others they are listed under
``not_run`` with the reason, rather than run and silently find nothing.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session

from api.auth import principal_of
from api.problems import bad_request
from api.reports import PROBLEMS, AsOfParam, CodeParam, no_match, parse_as_of, scope_of
from registry import checks
from registry.auth import PERSON_READERS
from registry.gaps import has_communities
from registry.settings import RegistryError

router = APIRouter(prefix="/reports", tags=["reports"])

Format = Literal["json", "geojson", "csv"]
NOT_RUN_REASON = "counts residents: only for roles that may read residents (officer, station)"


def chosen_checks(
    check: list[str] | None, severity: list[str] | None, sees_persons: bool
) -> tuple[list[checks.Check], list[checks.Check]]:
    """The checks to run and those withheld, or a 400 naming the bad parameter."""
    for name, values, validate in (
        ("check", check, checks.check_codes),
        ("severity", severity, checks.check_severities),
    ):
        try:
            validate(values)
        except RegistryError as exc:
            raise bad_request(
                f"query parameter '{name}': {exc}",
                errors=[{"parameter": name, "in": "query", "reason": str(exc)}],
            ) from None
    return checks.select_checks(check, severity, sees_persons)


def findings_data(
    session: Session,
    chosen: list[checks.Check],
    code: str | None,
    as_of: dt.date,
    scope: tuple[str, ...] | None,
) -> list[dict[str, Any]] | None:
    """The findings; None when ``code`` matches no community."""
    if code and not has_communities(session, code):
        return None
    return checks.run_checks(session, chosen, code, as_of, scope)


@router.get(
    "/checks",
    response_model=None,
    responses={
        **PROBLEMS,
        200: {
            "description": "The findings: JSON (`as_of`, `checks` run, `not_run`, "
            "`findings`), a GeoJSON FeatureCollection, or CSV (UTF-8 with BOM, WKT).",
            "content": {"application/geo+json": {}, "text/csv": {}},
        },
    },
)
async def findings(
    request: Request,
    code: CodeParam = None,
    check: Annotated[
        list[str] | None,
        Query(description="Only these checks (catalogue codes); repeatable."),
    ] = None,
    severity: Annotated[
        list[str] | None,
        Query(description="Only checks of these severities (error, warning, info)."),
    ] = None,
    as_of: AsOfParam = None,
    fmt: Annotated[Format, Query(alias="format", description="json, geojson or csv.")] = "json",
) -> Response:
    """Data-quality findings per community, computed live (docs/quality-checks.md)."""
    date = parse_as_of(as_of)
    principal = principal_of(request)
    chosen, withheld = chosen_checks(check, severity, principal.role in PERSON_READERS)
    rows = await request.app.state.database.run_sync(
        principal, findings_data, chosen, code, date, scope_of(principal, code)
    )
    if rows is None:
        raise no_match(code)
    headers = {"X-As-Of": date.isoformat()}
    if fmt == "csv":
        name = "-".join(["checks", *([code] if code else []), date.isoformat()])
        headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        return Response(
            "\ufeff" + checks.findings_csv(rows),
            media_type="text/csv; charset=utf-8",
            headers=headers,
        )
    extra = {
        "code": code,
        "checks": [c.code for c in chosen],
        "not_run": [{"check": c.code, "reason": NOT_RUN_REASON} for c in withheld],
    }
    if fmt == "geojson":
        body = checks.findings_geojson(rows, date, **extra)
        return JSONResponse(body, media_type="application/geo+json", headers=headers)
    return JSONResponse(checks.findings_json(rows, date, **extra), headers=headers)


@router.get("/checks/catalogue")
async def catalogue() -> JSONResponse:
    """The catalogue of checks: code, severity, target kind, title, description, fix."""
    return JSONResponse([checks.describe(c) for c in checks.CATALOGUE])
