"""A community's field work list: what an officer still has to visit, check or draw.

The query is ``sql/worklist.sql``; this module runs it with bound parameters.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from registry.verification import Position, iso

KINDS = ("not_on_map", "never_verified", "stale", "disputed", "not_found", "unlabeled", "gap")
WORKLIST = text(files("registry").joinpath("sql", "worklist.sql").read_text(encoding="utf-8"))


def worklist(
    session: Session,
    code: str,
    cycle_days: int,
    position: Position | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """The tasks of community ``code`` (see the SQL for the kinds and their order):
    nearest first when ``position`` is known, else by kind, then id."""
    rows = session.execute(
        WORKLIST,
        {
            "code": code,
            "cycle_days": cycle_days,
            "lon": position.lon if position else None,
            "lat": position.lat if position else None,
            "max_items": limit,
        },
    )
    return [
        {
            "kind": r.kind,
            "id": r.id,
            "label": r.label,
            "lon": r.lon,
            "lat": r.lat,
            "distance_m": None if r.distance_m is None else round(r.distance_m, 1),
            "verified_at": iso(r.verified_at),
        }
        for r in rows
    ]
