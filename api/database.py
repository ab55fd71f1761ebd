"""The API's connection pool: async psycopg through SQLAlchemy, one statement timeout for all.

The API connects as ``registry_api``, a role that owns nothing, so PostgreSQL's row-level
security applies to every query it makes. Each scoped connection or session opens a
transaction and first tells the policies who is asking (:data:`registry.auth.SET_CONTEXT`,
local to that transaction): a pooled connection never carries one request's identity
into the next.

Every connection carries ``statement_timeout``, so no client can hold a backend for long;
when a client goes away, the request task is cancelled and psycopg cancels the running
query on the server (see :mod:`api.disconnect`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import cast, func, select, text
from sqlalchemy.dialects.postgresql import INET
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from api.settings import ApiSettings
from registry import audit, auth
from registry.auth import Principal
from registry.models import Account
from registry.settings import RegistryError, resolve_api_database_url

T = TypeVar("T")


class Database:
    """Two pools on one database, both as the API role: autocommit read-only connections for
    the hot read paths, and read-write sessions for repository functions.

    ``unscoped`` is one statement per round trip, for the tables row-level security does
    not cover (tile versions, credentials). ``scoped`` and ``snapshot`` open a read-only
    transaction carrying the principal; ``run_sync`` and ``write_sync`` run repository
    functions in a session carrying it. A connection found dead is invalidated by
    SQLAlchemy and the request gets a 503.
    """

    def __init__(self, engine: AsyncEngine, reader: AsyncEngine | None = None) -> None:
        self.engine = engine
        self.reader = reader or engine

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> Database:
        url = resolve_api_database_url(settings)
        timeout = f"-c statement_timeout={settings.statement_timeout_ms}"
        engine = create_async_engine(
            url,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_pre_ping=True,
            hide_parameters=True,  # errors and logs never show bound values
            connect_args={"options": timeout, "application_name": "registry-api"},
        )
        reader = create_async_engine(
            url,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            isolation_level="AUTOCOMMIT",
            hide_parameters=True,
            connect_args={
                "options": f"{timeout} -c default_transaction_read_only=on",
                "application_name": "registry-api-read",
            },
        )
        return cls(engine, reader)

    async def check_role(self) -> None:
        """Refuse to serve as a role that row-level security would not bind."""
        async with self.unscoped() as conn:
            row = (await conn.execute(ROLE_CHECK)).one()
        if row.bypasses:
            raise RegistryError(
                f"the API connects as {row.user}, which bypasses row-level security "
                "(a superuser, BYPASSRLS or the tables' owner): connect it as registry_api "
                "(REGISTRY_API_DATABASE_URL)"
            )

    @asynccontextmanager
    async def unscoped(self) -> AsyncIterator[AsyncConnection]:
        """A pooled read-only connection with no principal: only for tables without
        row-level security. Each statement is its own snapshot."""
        async with self.reader.connect() as conn:
            yield conn

    authenticate = unscoped

    @asynccontextmanager
    async def scoped(
        self, principal: Principal, isolation: str = "READ COMMITTED"
    ) -> AsyncIterator[AsyncConnection]:
        """A read-only connection in one transaction that knows who is asking."""
        async with self.reader.connect() as conn:
            await conn.exec_driver_sql(f"BEGIN ISOLATION LEVEL {isolation} READ ONLY")
            try:
                await conn.execute(auth.SET_CONTEXT, auth.context_params(principal))
                yield conn
            finally:
                await end_read(conn)

    def snapshot(self, principal: Principal) -> Any:
        """As :meth:`scoped`, in one REPEATABLE READ snapshot: for reads that must agree."""
        return self.scoped(principal, "REPEATABLE READ")

    async def run_sync(
        self, principal: Principal, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """Run a repository function ``fn(session, *args)`` in a read-only session."""
        async with AsyncSession(self.engine) as session, session.begin():
            await session.connection(execution_options={"postgresql_readonly": True})
            await session.execute(auth.SET_CONTEXT, auth.context_params(principal))
            return await session.run_sync(fn, *args, **kwargs)

    async def write_sync(
        self, principal: Principal, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """Run ``fn(session, *args)`` in one read-write transaction, committed if it returns."""
        async with AsyncSession(self.engine) as session, session.begin():
            await session.execute(auth.SET_CONTEXT, auth.context_params(principal))
            return await session.run_sync(fn, *args, **kwargs)

    async def audit(self, principal: Principal, action: str, **kwargs: Any) -> None:
        """Append one audit row in its own transaction (for reads that wrote nothing)."""
        async with AsyncSession(self.engine) as session, session.begin():
            await session.execute(audit.entry(principal, action, **kwargs))

    # ------------------------------------------------------------ sign-in

    async def sign_in(
        self,
        name: str,
        password: str,
        client_ip: str | None,
        lifetime: dt.timedelta,
        attempts: int,
        window: dt.timedelta,
    ) -> SignIn:
        """Throttle, check the password (scrypt, off the event loop), open a session.

        Every outcome is audited: ``login`` or ``login_failed`` (a throttled attempt too).
        """
        async with AsyncSession(self.engine) as session, session.begin():
            failures = await session.scalar(
                select(
                    func.registry_login_failures(name, cast(client_ip, INET), func.now() - window)
                )
            )
            account = await session.get(Account, name) if auth.NAME_PATTERN.match(name) else None
            stored = (
                account.password_hash
                if account is not None and account.disabled_at is None
                else None
            )
            if failures is not None and failures >= attempts:
                status = "throttled"
            else:
                ok = await asyncio.to_thread(auth.verify_password, password, stored)
                status = "ok" if ok else "failed"
            if status != "ok":
                await session.execute(
                    audit.entry(
                        None,
                        "login_failed",
                        # only a real account's name: whatever else was typed (an identity
                        # number, a password in the wrong field) must not be kept
                        user_name=name if account is not None else "(unknown account)",
                        client_ip=client_ip,
                        detail={"throttled": status == "throttled"},
                    )
                )
                return SignIn(status)
            assert account is not None
            principal = auth.principal_from(account)
            secret, csrf = await session.run_sync(auth.create_web_session, name, lifetime)
            await session.execute(audit.entry(principal, "login", client_ip=client_ip))
            return SignIn("ok", secret, csrf)

    async def sign_out(self, principal: Principal, secret: str, client_ip: str | None) -> None:
        async with AsyncSession(self.engine) as session, session.begin():
            await session.run_sync(auth.revoke_secret, secret)
            await session.execute(audit.entry(principal, "logout", client_ip=client_ip))

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.reader is not self.engine:
            await self.reader.dispose()


async def end_read(conn: AsyncConnection) -> None:
    """Roll back a read's transaction. A connection that cannot (its query was cancelled
    because the client went away, or the server is gone) is invalidated instead, so it
    never returns to the pool mid-transaction; the rollback's own error is not raised,
    since whatever ended the request (a cancellation, the first error) is what counts."""
    if conn.invalidated:
        return
    try:
        await conn.exec_driver_sql("ROLLBACK")
    except BaseException as exc:
        await conn.invalidate()
        if not isinstance(exc, Exception):
            raise  # this very await was cancelled: let the cancellation through


@dataclass(frozen=True)
class SignIn:
    status: str  # "ok" | "failed" | "throttled"
    secret: str | None = None
    csrf: str | None = None


ROLE_CHECK = text(
    "SELECT current_user AS user, r.rolsuper OR r.rolbypassrls "
    "OR pg_has_role(current_user, t.tableowner, 'USAGE') AS bypasses "
    "FROM pg_roles r, pg_tables t "
    "WHERE r.rolname = current_user AND t.schemaname = 'public' AND t.tablename = 'building'"
)
