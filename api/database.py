"""The API's connection pool: async psycopg through SQLAlchemy, one statement timeout for all.

Every connection carries ``statement_timeout``, so no client can hold a backend for long;
when a client goes away, the request task is cancelled and psycopg cancels the running
query on the server (see :mod:`api.disconnect`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine

from api.settings import ApiSettings
from registry.settings import resolve_database_url

T = TypeVar("T")


class Database:
    """Two pools on one database: autocommit read-only connections for the hot read paths,
    and read-write sessions for repository functions.

    A read (``connect``) is one statement per round trip: no BEGIN, no SET, no ROLLBACK,
    no pre-ping (a connection found dead is invalidated by SQLAlchemy and the request
    gets a 503). ``snapshot`` opens a REPEATABLE READ READ ONLY transaction on such a
    connection, for reads that must agree with each other or use a server-side cursor.
    """

    def __init__(self, engine: AsyncEngine, reader: AsyncEngine | None = None) -> None:
        self.engine = engine
        self.reader = reader or engine

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> Database:
        url = resolve_database_url(settings)
        timeout = f"-c statement_timeout={settings.statement_timeout_ms}"
        engine = create_async_engine(
            url,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_pre_ping=True,
            connect_args={"options": timeout, "application_name": "registry-api"},
        )
        reader = create_async_engine(
            url,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            isolation_level="AUTOCOMMIT",
            connect_args={
                "options": f"{timeout} -c default_transaction_read_only=on",
                "application_name": "registry-api-read",
            },
        )
        return cls(engine, reader)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A pooled read-only connection; each statement is its own snapshot."""
        async with self.reader.connect() as conn:
            yield conn

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection in one REPEATABLE READ transaction, rolled back after."""
        async with self.reader.connect() as conn:
            await conn.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield conn
            finally:
                try:
                    await conn.exec_driver_sql("ROLLBACK")
                except BaseException:
                    await conn.invalidate()  # never hand a connection mid-transaction on
                    raise

    async def run_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a registry repository function ``fn(session, *args)`` in a read-only session."""
        async with AsyncSession(self.engine) as session, session.begin():
            await session.connection(execution_options={"postgresql_readonly": True})
            return await session.run_sync(fn, *args, **kwargs)

    async def write_sync(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(session, *args)`` in one read-write transaction, committed if it returns."""
        async with AsyncSession(self.engine) as session, session.begin():
            return await session.run_sync(fn, *args, **kwargs)

    async def dispose(self) -> None:
        await self.engine.dispose()
        if self.reader is not self.engine:
            await self.reader.dispose()
