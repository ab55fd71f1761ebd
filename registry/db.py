"""Engines and sessions. Commands own the transaction; repository functions never commit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from registry import migrate
from registry.settings import RegistryError


def make_engine(url: str, **kwargs) -> Engine:
    # errors and logs never show bound values: they can be identity numbers or names
    return create_engine(url, pool_pre_ping=True, hide_parameters=True, **kwargs)


def check_schema(engine: Engine) -> None:
    """Fail clearly when the database is unreachable or not migrated to the current head."""
    try:
        current = migrate.current_revision(engine)
    except OperationalError as exc:
        raise RegistryError(f"cannot connect to {engine.url!r}: {exc.orig}") from None
    head = migrate.head_revision(engine)
    if current != head:
        raise RegistryError(
            f"database schema is at revision {current or 'none'}, this registry needs {head}: "
            "run `registry db migrate`"
        )


@contextmanager
def transaction(engine: Engine) -> Iterator[Session]:
    """A session whose work is committed on success and rolled back on any error."""
    with sessionmaker(engine)() as session, session.begin():
        yield session
