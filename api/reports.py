"""Coverage reports: the four rates as JSON, CSV or an HTML page with a map, and the gap
work lists behind them.

``GET /reports/coverage`` answers exactly what ``registry rates`` prints (same rows and
field names); ``GET /reports/gaps`` lists, per community, what keeps each rate below 100%.
Both echo the effective as-of date in the ``X-As-Of`` header.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.auth import in_jurisdiction, principal_of
from api.problems import Problem, bad_request, not_found
from api.report_map import coverage_page, outlines
from api.security import content_security_policy, origin_of, script_hashes
from registry import checks
from registry.auth import PERSON_READERS, Principal
from registry.disclosure import suppress_gaps_row, suppress_rates_row
from registry.gaps import DEFAULT_LIMIT, community_gaps, has_communities
from registry.history import HistoryError, Moment, rates_moment
from registry.output import rates_csv
from registry.rates import Level, compute_rates

router = APIRouter(prefix="/reports", tags=["reports"])

Format = Literal["json", "csv", "html"]
RateName = Literal[
    "on_map_rate", "coverage_rate", "labeling_rate", "population_on_map_rate", "org_on_map_rate"
]
MAX_LIMIT = 100_000
PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"description": "A bad parameter (named in the problem details)."},
    404: {"description": "No community code starts with `code`."},
}

LevelParam = Annotated[Level, Query(description="Row level: community, street, district, city.")]
CodeParam = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9]{1,12}$",
        description="Only communities whose code starts with this (up to 12 digits).",
    ),
]
AsOfParam = Annotated[
    str | None,
    Query(
        pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
        description="Count active residents and open organizations at this date, YYYY-MM-DD "
        "(default: today).",
    ),
]


KnownAtParam = Annotated[
    str | None,
    Query(
        description="Only what the register had recorded by this time (ISO 8601 date-time): "
        "reproduces figures computed then. A past as_of or a known_at reads the history.",
    ),
]


def rates_moment_or_400(as_of: str | None, date: dt.date, known_at: str | None) -> Moment | None:
    """What a rates request reads (registry.history.rates_moment); 400 for a bad time."""
    try:
        return rates_moment(date if as_of else None, known_at)
    except HistoryError as exc:
        raise bad_request(str(exc)) from None


def parse_as_of(value: str | None) -> dt.date:
    """The as-of date (today when absent); a 400 naming ``as_of`` when it is no date."""
    if value is None:
        return dt.date.today()
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        reason = f"{value!r} is not a date (YYYY-MM-DD)"
        raise bad_request(
            f"query parameter 'as_of': {reason}",
            errors=[{"parameter": "as_of", "in": "query", "reason": reason}],
        ) from None


def no_match(code: str | None) -> Problem:
    return not_found(f"no community code starts with {code!r}")


def coverage_data(
    session: Session,
    level: Level,
    code: str | None,
    as_of: dt.date,
    with_outlines: bool,
    scope: tuple[str, ...] | None,
    findings: list[checks.Check] | None = None,
    at: Moment | None = None,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]] | None:
    """Rates rows and (for the map) outlines; None when ``code`` matches no community.
    With ``findings``, each row also counts those checks' findings (registry/checks.py)."""
    if code and not has_communities(session, code):
        return None
    rows = compute_rates(session, level, code, as_of, scope=scope, at=at)
    if findings is not None:
        rows = checks.with_finding_counts(session, rows, level, code, as_of, scope, findings)
    return rows, outlines(session, level, code) if with_outlines else {}


def gaps_data(
    session: Session, code: str | None, as_of: dt.date, limit: int, scope: tuple[str, ...] | None
) -> list[dict[str, Any]] | None:
    if code and not has_communities(session, code):
        return None
    return community_gaps(session, code, as_of, limit, scope=scope)


def scope_of(principal: Principal, code: str | None) -> tuple[str, ...] | None:
    """The communities a caller's report may include: 403 for a code outside them."""
    in_jurisdiction(principal, code)
    return None if principal.sees_all else principal.jurisdiction


@router.get(
    "/coverage",
    response_model=None,
    responses={
        **PROBLEMS,
        200: {
            "description": "The rates: a JSON array of rows (as `registry rates --format "
            "json`), a CSV file (UTF-8 with BOM) or an HTML page with a map.",
            "content": {"text/csv": {}, "text/html": {}},
        },
    },
)
async def coverage(
    request: Request,
    level: LevelParam = "community",
    code: CodeParam = None,
    as_of: AsOfParam = None,
    known_at: KnownAtParam = None,
    f: Annotated[Format, Query(description="json, csv or html.")] = "json",
    rate: Annotated[RateName, Query(description="The rate the HTML map is coloured by.")] = (
        "on_map_rate"
    ),
    findings: Annotated[
        bool,
        Query(
            description="Add counts of quality-check findings (findings, findings_error, "
            "findings_warning, findings_info; JSON and CSV) of the checks the caller may "
            "run: see /reports/checks."
        ),
    ] = False,
) -> Response:
    """Per-community (or street, district, city) rates with numerators and denominators."""
    date = parse_as_of(as_of)
    at = rates_moment_or_400(as_of, date, known_at)
    principal = principal_of(request)
    counted: dict[str, Any] = {"at": at}
    if findings and f != "html":  # resident checks only for roles that may read residents
        sees_persons = principal.role in PERSON_READERS
        counted["findings"] = checks.select_checks(sees_persons=sees_persons)[0]
    scope = scope_of(principal, code)
    data = await request.app.state.database.run_sync(
        principal, coverage_data, level, code, date, f == "html", scope, **counted
    )
    if data is None:
        raise no_match(code)
    rows, shapes = data
    if principal.role == "gis":
        rows = [suppress_rates_row(row) for row in rows]
    headers = {"X-As-Of": date.isoformat()}
    if at is not None and at.known is not None:
        headers["X-Known-At"] = at.known.isoformat()
    if f == "csv":
        name = "-".join(["rates", level, *([code] if code else []), date.isoformat()])
        headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        body = checks.table_csv(rows, list(rows[0])) if findings and rows else rates_csv(rows)
        return Response("\ufeff" + body, media_type="text/csv; charset=utf-8", headers=headers)
    if f == "html":
        settings = request.app.state.settings
        page = await run_in_threadpool(
            lambda: coverage_page(
                rows,
                shapes,
                level=level,
                code=code,
                as_of=date,
                rate=rate,
                static_root=request.scope.get("root_path", "").rstrip("/"),
                basemap_url=settings.basemap_url,
                basemap_attribution=getattr(settings, "basemap_attribution", None),
            )
        )
        # folium inlines the map's scripts: allow exactly those, by hash
        headers["Content-Security-Policy"] = content_security_policy(
            script_hashes(page), origin_of(settings.basemap_url)
        )
        return HTMLResponse(page, headers=headers)
    return JSONResponse(rows, headers=headers)


@router.get("/gaps", responses=PROBLEMS)
async def gaps(
    request: Request,
    code: CodeParam = None,
    as_of: AsOfParam = None,
    limit: Annotated[
        int, Query(ge=0, le=MAX_LIMIT, description="Most ids listed per community and list.")
    ] = DEFAULT_LIMIT,
) -> JSONResponse:
    """Per community, the complements of the rate numerators: buildings not on the map,
    on-map buildings not labelled, reference footprints not covered (each with up to
    ``limit`` ids and whether the list was truncated) and residents not placed (a count)."""
    date = parse_as_of(as_of)
    principal = principal_of(request)
    rows = await request.app.state.database.run_sync(
        principal, gaps_data, code, date, limit, scope_of(principal, code)
    )
    if rows is None:
        raise no_match(code)
    if principal.role == "gis":
        rows = [suppress_gaps_row(row) for row in rows]
    body = {"as_of": date.isoformat(), "limit": limit, "communities": rows}
    return JSONResponse(body, headers={"X-As-Of": date.isoformat()})
