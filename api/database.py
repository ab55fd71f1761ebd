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
    """A pooled async engine and the two ways handlers use it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> Database:
        engine = create_async_engine(
            resolve_database_url(settings),
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_pre_ping=True,
            connect_args={
                "options": f"-c statement_timeout={settings.statement_timeout_ms}",
                "application_name": "registry-api",
            },
        )
        return cls(engine)

    @asynccontextmanager
    async def connect(self) -> AsyncIterator[AsyncConnection]:
        """A read-only transaction on a pooled connection, rolled back at the end."""
        async with self.engine.connect() as conn:
            await conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            try:
                yield conn
            finally:
                await conn.rollback()

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
