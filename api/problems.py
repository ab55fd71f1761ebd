"""RFC 9457 problem details: every client error says what was wrong, never a 500 for bad input."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_JSON = "application/problem+json"


class Problem(Exception):
    """Raise to answer with a problem+json body: ``status``, a short ``detail`` and extras."""

    def __init__(
        self, status: int, detail: str, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers
        self.extra = extra


def bad_request(detail: str, **extra: Any) -> Problem:
    return Problem(400, detail, **extra)


def not_found(detail: str) -> Problem:
    return Problem(404, detail)


def problem_response(
    status: int,
    detail: str,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def browsing(request: Request) -> bool:
    """A browser navigating (GET of a page), not a client that wants a problem document."""
    accept = request.headers.get("accept", "")
    return request.method == "GET" and accept.startswith("text/html")


def install_problem_handlers(app: FastAPI) -> None:
    """Map raised problems, HTTP errors and parameter validation errors to problem+json."""

    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> Response:
        if exc.status == 401 and browsing(request):
            # a person at a browser is sent to the sign-in form, and back here after it
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
        return problem_response(
            exc.status, exc.detail, str(request.url.path), headers=exc.headers, **exc.extra
        )

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return problem_response(
            exc.status_code, detail, str(request.url.path), headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "parameter": ".".join(str(p) for p in err.get("loc", ())[1:]) or None,
                "in": (err.get("loc") or ("query",))[0],
                "reason": err.get("msg"),
            }
            for err in exc.errors()
        ]
        detail = "; ".join(f"{e['in']} parameter {e['parameter']!r}: {e['reason']}" for e in errors)
        return problem_response(400, detail, str(request.url.path), errors=errors)

    @app.exception_handler(DBAPIError)
    async def on_database(request: Request, exc: DBAPIError) -> JSONResponse:
        """A query the client's input made impossible is a 400; a timeout is a 503."""
        code = getattr(exc.orig, "sqlstate", None) or ""
        message = str((getattr(exc.orig, "diag", None) and exc.orig.diag.message_primary) or "")
        if code == "57014":
            return problem_response(
                503,
                "the query took longer than the server allows; narrow it (bbox, filter)",
                str(request.url.path),
                headers={"Retry-After": "5"},
            )
        if code.startswith("22"):
            return problem_response(400, f"invalid value: {message}", str(request.url.path))
        raise exc
