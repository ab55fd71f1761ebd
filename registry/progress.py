"""A community's progress: its four rates (docs/rates.md) and its verified rate.

The verified rate is the field's own: buildings whose latest verification is
``verified`` or ``corrected`` within the last ``cycle_days`` ÷ buildings that count (not
demolished). Null when the community has no building, as every rate is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from registry.models import VERIFIED_STATES, Building
from registry.rates import compute_rates


def verified_counts(session: Session, code: str, cycle_days: int) -> tuple[int, int]:
    """(buildings verified within the cycle, buildings that count) of community ``code``."""
    since = func.now() - func.make_interval(0, 0, 0, cycle_days)
    row = session.execute(
        select(
            func.count().filter(
                Building.verification.in_(VERIFIED_STATES), Building.verified_at >= since
            ),
            func.count(),
        ).where(Building.community_code == code, Building.status != "demolished")
    ).one()
    return int(row[0]), int(row[1])


def community_progress(
    session: Session, code: str, cycle_days: int, scope: Sequence[str] | None = None
) -> dict[str, Any] | None:
    """The rates row of community ``code`` with ``buildings_verified``, ``verified_rate``
    and ``cycle_days``; None when there is no such community (within ``scope``)."""
    rows = compute_rates(session, "community", code=code, scope=scope)
    row = next((r for r in rows if r["code"] == code), None)
    if row is None:
        return None
    verified, counted = verified_counts(session, code, cycle_days)
    row.pop("level", None)
    return {
        **row,
        "as_of": dt.date.today().isoformat(),
        "buildings_verified": verified,
        "verified_rate": verified / counted if counted else None,
        "cycle_days": cycle_days,
    }
