"""Who is asking: bearer tokens and sign-in sessions, role checks, CSRF, sign-in and out.

Every route but the landing page, conformance, the API document, the sign-in page and
static files needs a principal (:func:`signed_in`); routes narrow it further with
:func:`allow`. The principal then travels into the database (``Database`` methods take
it), where row-level security filters rows by its jurisdiction.

A token or session is looked up once and remembered for ``auth_cache_seconds`` (a few
seconds by default): revoking or expiring takes effect within that delay.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from api import html
from api.problems import Problem
from registry import auth
from registry.auth import Principal

router = APIRouter(include_in_schema=False)

SESSION_COOKIE = "registry_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOGIN_WINDOW = dt.timedelta(minutes=15)


@dataclass(frozen=True)
class Credential:
    """A resolved token or session: the principal, and the CSRF token for sessions."""

    principal: Principal
    kind: str
    csrf: str | None
    checked: float


class CredentialCache:
    """Resolved credentials by digest, for ``ttl`` seconds: most requests need no look-up."""

    def __init__(self, ttl: float, size: int = 4096) -> None:
        self.ttl, self.size = ttl, size
        self.entries: OrderedDict[bytes, Credential | None] = OrderedDict()
        self.checked: dict[bytes, float] = {}

    def get(self, key: bytes) -> tuple[bool, Credential | None]:
        if key in self.entries and time.monotonic() - self.checked[key] < self.ttl:
            return True, self.entries[key]
        return False, None

    def put(self, key: bytes, credential: Credential | None) -> None:
        if self.ttl <= 0:
            return
        self.entries[key] = credential
        self.checked[key] = time.monotonic()
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            old, _ = self.entries.popitem(last=False)
            self.checked.pop(old, None)

    def forget(self, key: bytes) -> None:
        self.entries.pop(key, None)
        self.checked.pop(key, None)


def client_ip(request: Request) -> str | None:
    """The client's address as the audit log stores it (behind a proxy, uvicorn's
    ``--proxy-headers`` puts the forwarded address here); None if not an IP address."""
    host = request.client.host if request.client else None
    try:
        return str(ipaddress.ip_address(host)) if host else None
    except ValueError:
        return None


def presented_secret(request: Request) -> tuple[str, str] | None:
    """("token" | "session", secret) from the Authorization header or the session cookie."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise unauthorized("the Authorization header must be: Bearer <token>")
        return "token", value.strip()
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return "session", cookie
    return None


def unauthorized(detail: str) -> Problem:
    return Problem(401, detail, headers={"WWW-Authenticate": 'Bearer realm="registry"'})


async def resolve(request: Request) -> Credential | None:
    """The credential the request presents, or None for an anonymous request."""
    presented = presented_secret(request)
    if presented is None:
        return None
    kind, secret = presented
    key = auth.digest(secret)
    cache: CredentialCache = request.app.state.credentials
    hit, credential = cache.get(key)
    if not hit:
        async with request.app.state.database.authenticate() as conn:
            row = (await conn.execute(auth.principal_query(key))).first()
        credential = (
            Credential(auth.principal_from(row), row.kind, row.csrf, time.monotonic())
            if row is not None
            else None
        )
        cache.put(key, credential)
    if credential is None or credential.kind != kind:
        raise unauthorized("the token or session is unknown, expired or revoked")
    return credential


async def signed_in(request: Request) -> Principal:
    """The principal of an authenticated request; 401 without one, 403 on a CSRF failure."""
    credential = await resolve(request)
    if credential is None:
        raise unauthorized("sign in: send Authorization: Bearer <token>, or use /login")
    if credential.kind == "session" and request.method not in SAFE_METHODS:
        # a cookie is sent by the browser on its own; the page must prove it read the token
        sent = request.headers.get(CSRF_HEADER)
        if not sent or sent != credential.csrf:
            raise Problem(403, f"missing or wrong {CSRF_HEADER} header for a session request")
    request.state.principal = credential.principal
    request.state.credential = credential
    return credential.principal


SignedIn = Annotated[Principal, Depends(signed_in)]
SIGNED_IN = [Depends(signed_in)]


def principal_of(request: Request) -> Principal:
    """The principal :func:`signed_in` admitted; a route without that dependency fails
    closed (401) instead of querying with no identity."""
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise unauthorized("sign in: send Authorization: Bearer <token>, or use /login")
    return principal


def allow(*roles: str, what: str) -> Callable[..., Any]:
    """A dependency admitting only ``roles``; others get a 403 naming what they lack."""

    async def dependency(principal: SignedIn) -> Principal:
        if principal.role not in roles:
            raise Problem(403, f"role {principal.role} may not {what}")
        return principal

    return dependency


def in_jurisdiction(principal: Principal, code: str | None) -> None:
    """403 unless the code prefix ``code`` overlaps the principal's jurisdiction."""
    if code and not principal.overlaps(code):
        raise Problem(403, f"{code} is outside the jurisdiction of {principal.name}")


# ---------------------------------------------------------------- sign-in form and session


def login_page(message: str = "", next_url: str = "/", status: int = 200) -> HTMLResponse:
    error = f'<p role="alert" class="error">{html.escape(message)}</p>' if message else ""
    body = (
        f'{error}<form method="post" action="/login">'
        f'<input type="hidden" name="next" value="{html.escape(next_url)}">'
        '<p><label>账号 Account<br><input name="name" autocomplete="username" required '
        'maxlength="64"></label></p>'
        '<p><label>密码 Password<br><input name="password" type="password" '
        'autocomplete="current-password" required maxlength="256"></label></p>'
        '<p><button type="submit">登录 Sign in</button></p></form>'
    )
    return HTMLResponse(html.page("登录 Sign in", body), status_code=status)


def safe_next(next_url: str) -> str:
    """Only same-site paths: a sign-in must never redirect to another site."""
    if next_url.startswith("/") and not next_url.startswith("//") and "\\" not in next_url:
        return next_url
    return "/"


@router.get("/login")
async def login_form(next: str = "/") -> HTMLResponse:
    return login_page(next_url=safe_next(next))


@router.post("/login")
async def login(
    request: Request,
    name: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=256)],
    next: Annotated[str, Form(max_length=2000)] = "/",
) -> Response:
    """Check the password; on success set an HttpOnly, SameSite=Strict session cookie.

    Failed attempts are audited; beyond ``login_attempts`` failures per account or client
    address in 15 minutes, sign-in answers 429 until the window passes.
    """
    if "\x00" in name or "\x00" in password:
        raise Problem(400, "the account name or password has a NUL character")
    settings = request.app.state.settings
    database = request.app.state.database
    ip = client_ip(request)
    wants_json = "application/json" in request.headers.get("accept", "")
    lifetime = dt.timedelta(hours=settings.session_hours)
    outcome = await database.sign_in(
        name, password, ip, lifetime, settings.login_attempts, LOGIN_WINDOW
    )
    if outcome.status == "throttled":
        if wants_json:
            raise Problem(
                429,
                "too many failed sign-ins; wait and try again",
                headers={"Retry-After": str(int(LOGIN_WINDOW.total_seconds()))},
            )
        return login_page("Too many failed sign-ins: wait 15 minutes.", safe_next(next), 429)
    if outcome.status != "ok":
        if wants_json:
            raise unauthorized("wrong account or password")
        return login_page("Wrong account or password.", safe_next(next), 401)
    assert outcome.secret and outcome.csrf
    response: Response = (
        JSONResponse({"name": name, "csrf_token": outcome.csrf})
        if wants_json
        else RedirectResponse(safe_next(next), status_code=303)
    )
    response.set_cookie(
        SESSION_COOKIE,
        outcome.secret,
        max_age=int(lifetime.total_seconds()),
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request, principal: SignedIn) -> Response:
    presented = presented_secret(request)
    if presented and presented[0] == "session":
        await request.app.state.database.sign_out(principal, presented[1], client_ip(request))
        request.app.state.credentials.forget(auth.digest(presented[1]))
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


@router.get("/session")
async def whoami(request: Request, principal: SignedIn) -> dict[str, Any]:
    """Who is signed in, and (for sessions) the CSRF token state-changing calls must send."""
    credential: Credential = request.state.credential  # resolved by signed_in
    return {
        "name": principal.name,
        "role": principal.role,
        "jurisdiction": list(principal.jurisdiction),
        "csrf_token": credential.csrf,
    }
