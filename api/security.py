"""Hardening of every response: security headers, a request size limit, no tracebacks.

- Every response: ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: same-origin``,
  ``X-Frame-Options: DENY``. HTML also gets a Content-Security-Policy that allows scripts
  from this server only; a page that must inline a script (the folium report map) names
  each one by its SHA-256 (:func:`script_hashes`) instead of allowing inline scripts.
- A request body above ``max_body_kb`` is refused with 413 before it is read whole,
  whether announced by Content-Length or streamed in chunks.
- An unexpected error answers a problem+json 500 with an id that is also in the server's
  log: never a traceback, never the exception's text (it may hold a query or a secret).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
from collections.abc import Sequence
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.problems import problem_response

log = logging.getLogger("registry.api")

SCRIPT = re.compile(r"<script\b[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE)
COMMON_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)


def content_security_policy(
    extra_scripts: Sequence[str] = (), image_origin: str | None = None
) -> str:
    """The policy of an HTML page: everything from this server; styles may be inline
    (the map library sets them); scripts only from here or named by hash."""
    scripts = " ".join(["'self'", *extra_scripts])
    images = " ".join(["'self'", "data:", "blob:", *([image_origin] if image_origin else [])])
    return (
        f"default-src 'self'; script-src {scripts}; style-src 'self' 'unsafe-inline'; "
        f"img-src {images}; connect-src 'self'; worker-src 'self' blob:; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def script_hashes(page: str) -> list[str]:
    """CSP sources for each inline script of ``page``, by the SHA-256 of its text."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in SCRIPT.findall(page)
        if body.strip()
    ]


def origin_of(url: str | None) -> str | None:
    """``scheme://host[:port]`` of a tile URL template, for img-src."""
    if not url:
        return None
    parts = urlsplit(url.replace("{s}", "a"))
    if not parts.scheme or not parts.netloc:
        return None
    netloc = parts.netloc if "{" not in parts.netloc else "*." + parts.netloc.split(".", 1)[-1]
    return f"{parts.scheme}://{netloc}"


class SecurityHeaders:
    """Adds the common headers, and the default CSP to HTML that does not set its own."""

    def __init__(self, app: ASGIApp, image_origin: str | None = None) -> None:
        self.app = app
        self.policy = content_security_policy(image_origin=image_origin).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers += [h for h in COMMON_HEADERS if h[0] not in names]
                content_type = dict(headers).get(b"content-type", b"")
                if (
                    content_type.startswith(b"text/html")
                    and b"content-security-policy" not in names
                ):
                    headers.append((b"content-security-policy", self.policy))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


VERIFICATION_UPLOAD = re.compile(r"^/buildings/[^/]+/verifications$")
"""The route that takes evidence photos, and so a larger body than the rest."""


class LimitBody:
    """Refuses request bodies above ``limit`` bytes with 413 problem+json; a POST to a
    path matching one of ``uploads`` may send up to that pattern's limit instead."""

    def __init__(
        self, app: ASGIApp, limit: int, uploads: dict[re.Pattern[str], int] | None = None
    ) -> None:
        self.app, self.default_limit = app, limit
        self.uploads = uploads or {}

    def limit_for(self, scope: Scope) -> int:
        if scope.get("method") == "POST":
            for pattern, limit in self.uploads.items():
                if pattern.match(scope.get("path", "")):
                    return max(limit, self.default_limit)
        return self.default_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b""):
            # no text the database could store has a NUL: refuse it before any handler
            response = problem_response(400, "the request's path or query has a NUL character")
            await response(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self.refuse(scope, receive, send, limit)
            return
        received = 0
        started = refused = False

        async def counting() -> Message:
            # past the limit: answer 413 now, and tell the app the client went away (an
            # exception here would be turned into a 400 by the body parser)
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit and not refused:
                    refused = True
                    if not started:
                        await self.refuse(scope, receive, send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def tracking(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the 413 is the answer
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting, tracking)
        except Exception:
            if not refused:
                raise

    async def refuse(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = problem_response(
            413, f"the request body is larger than {limit // 1024} kB", scope.get("path")
        )
        await response(scope, receive, send)


def install(
    app: FastAPI,
    max_body_kb: int,
    basemap_url: str | None,
    uploads_kb: dict[re.Pattern[str], int] | None = None,
) -> None:
    """Wire the three protections into ``app`` (outermost first: headers on everything).
    ``uploads_kb`` raises the body limit of POSTs to the paths it matches."""

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception):
        incident = secrets.token_hex(6)
        # the type and where, not the message: a driver error's text can quote a query
        log.error(
            "unexpected %s on %s %s (incident %s)",
            type(exc).__name__,
            request.method,
            request.url.path,
            incident,
            exc_info=exc,
        )
        return problem_response(
            500, f"internal error; incident {incident} is in the server log", request.url.path
        )

    uploads = {pattern: kb * 1024 for pattern, kb in (uploads_kb or {}).items()}
    app.add_middleware(LimitBody, limit=max_body_kb * 1024, uploads=uploads)
    app.add_middleware(SecurityHeaders, image_origin=origin_of(basemap_url))
