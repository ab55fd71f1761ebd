"""Alembic environment: runs against a connection handed over by ``registry.migrate``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from registry.models import Base

config = context.config


def run_migrations(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        run_migrations(conn)
    engine.dispose()
