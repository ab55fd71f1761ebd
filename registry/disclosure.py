"""Small-count suppression: published person counts below 5 are shown as ``"<5"``.

A count of one or two residents in a community, joined with other public facts, can
point at a person. For roles that publish aggregates onwards (``gis``), counts of persons
from 1 to 4 become ``"<5"`` and the rates computed from them become null. Zero stays zero:
it reveals no one.

Reports (JSON, CSV, HTML) show ``"<5"``; typed outputs (features, tiles, exports of the
communities collection) cannot hold a string in an integer field, so the database's
``registry_disclose`` gives them null instead, with the same rule.
"""

from __future__ import annotations

from typing import Any

THRESHOLD = 5
SUPPRESSED = f"<{THRESHOLD}"
PERSON_COUNTS = ("residents", "residents_on_map")
PERSON_RATES = {"population_on_map_rate": PERSON_COUNTS}  # rate: the counts it is made of


def is_small(value: Any) -> bool:
    return isinstance(value, int) and 0 < value < THRESHOLD


def suppress_rates_row(row: dict[str, Any]) -> dict[str, Any]:
    """A rates row (docs/rates.md fields) with small person counts suppressed."""
    out = dict(row)
    for rate, counts in PERSON_RATES.items():
        if rate in out and any(is_small(row.get(count)) for count in counts):
            out[rate] = None
    for name in PERSON_COUNTS:
        if is_small(row.get(name)):
            out[name] = SUPPRESSED
    return out


def suppress_gaps_row(row: dict[str, Any]) -> dict[str, Any]:
    """A gaps row with a small ``residents_not_on_map`` count suppressed."""
    gap = row.get("residents_not_on_map")
    if gap and is_small(gap.get("count")):
        return {**row, "residents_not_on_map": {**gap, "count": SUPPRESSED}}
    return row
