"""The per-community counters behind the rates: deferring them in bulk, recounting, checking.

Triggers (migration 0004) recount the communities each statement touches, in the same
transaction, so reading the rates is a small sum over ``community_count`` and
``community_resident_count``. A bulk load defers that work for its transaction and
recounts every community once at the end; :func:`differences` compares the counters with
the definitions, for tests and for ``registry rates --recount`` audits.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session


def defer_counts(session: Session) -> None:
    """Skip the count triggers until the end of this transaction; call :func:`recount`
    before committing, or the counters stay stale."""
    session.execute(text("SELECT set_config('registry.defer_counts', 'on', true)"))


def resume_counts(session: Session) -> None:
    """Let the count triggers run again in this transaction."""
    session.execute(text("SELECT set_config('registry.defer_counts', 'off', true)"))


DERIVED_TABLES = ("footprint_cover_state", "community_count", "community_resident_count")


def recount(session: Session) -> None:
    """Recompute every footprint's cover and every community's counts from the rate
    definitions (what a deferred bulk load does once at its end), and refresh the
    planner's statistics of those tables, which the next edit's triggers query."""
    session.execute(text("SELECT registry_refresh_all()"))
    for table in DERIVED_TABLES:
        session.execute(text(f"ANALYZE {table}"))  # names from this module, not from input


def differences(session: Session, as_of: dt.date | None = None) -> list[dict[str, Any]]:
    """Communities whose counters differ from the definitions at ``as_of``: an empty list
    when the triggers have kept every count right."""
    from registry.rates import compute_rates

    kept = {r["code"]: r for r in compute_rates(session, as_of=as_of)}
    exact = {r["code"]: r for r in compute_rates(session, as_of=as_of, recount=True)}
    return [
        {"code": code, "counters": kept.get(code), "definition": row}
        for code, row in exact.items()
        if kept.get(code) != row
    ]
