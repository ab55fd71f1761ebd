"""The register at any time: bitemporal reads of the history, and the change feed.

Triggers of migration 0010 keep every version of every community, footprint, building,
address, room, residence, organization and employment, with its valid time (when it was
true) and its record time (the commit that recorded it and the one that replaced it).
A :class:`Moment` names what to read: the register as valid at ``valid``, as known at
``known`` (None: as known now). A date means the end of that day in the registry's time
zone (``REGISTRY_TIME_ZONE``, default the system's), the moment a daily figure is read.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from geoalchemy2 import Geometry
from sqlalchemy import (
    DateTime,
    FromClause,
    Integer,
    String,
    Table,
    column,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.orm import Session

from registry.models import HISTORY_TABLES, VERSIONED, RegistryTxn
from registry.settings import RegistryError

INSTANT = DateTime(timezone=True)
TXN = RegistryTxn.__table__
ONE_MICROSECOND = dt.timedelta(microseconds=1)
# columns of a history row that are bookkeeping, not the object
HISTORY_COLUMNS = (
    "history_id",
    "valid_from",
    "valid_to",
    "recorded_txid",
    "superseded_txid",
    "scope_code",
)
# columns of a row that are derived copies, not data (tile copies, point-on-surface)
DERIVED_COLUMNS = ("footprint_3857", "geom_3857", "anchor")


class HistoryError(RegistryError):
    """A time that cannot be read: malformed, in the future, or a valid-from too late."""


@cache
def time_zone() -> dt.tzinfo:
    """The registry's time zone, in which a date begins and ends: ``REGISTRY_TIME_ZONE``,
    else the system's (whose date is "today" for the rates)."""
    name = os.environ.get("REGISTRY_TIME_ZONE")
    if not name:
        zone = dt.datetime.now().astimezone().tzinfo
        assert zone is not None
        return zone
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise HistoryError(f"REGISTRY_TIME_ZONE {name!r} is not a time zone") from None


def end_of_day(day: dt.date) -> dt.datetime:
    """The last microsecond of ``day`` in the registry's time zone."""
    start = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tzinfo=time_zone())
    return start - ONE_MICROSECOND


def parse_instant(value: str | dt.date | dt.datetime, name: str) -> dt.datetime:
    """An instant from an ISO 8601 date (its end) or date-time (without an offset: in the
    registry's time zone); ``name`` is the parameter, for the error message."""
    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, dt.date):
        return end_of_day(value)
    else:
        text_value = value.strip()
        try:
            if len(text_value) == 10:
                return end_of_day(dt.date.fromisoformat(text_value))
            moment = dt.datetime.fromisoformat(text_value.replace("Z", "+00:00"))
        except ValueError:
            raise HistoryError(
                f"{name} {value!r} is not an ISO 8601 date (2026-06-30) or date-time "
                "(2026-06-30T18:00:00+08:00)"
            ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=time_zone())
    return moment


@dataclass(frozen=True)
class Moment:
    """The register as valid at ``valid``, as known at ``known`` (None: now)."""

    valid: dt.datetime
    known: dt.datetime | None = None

    @property
    def as_of(self) -> dt.date:
        """The date residents and organizations are counted active at: ``valid``'s date
        in the registry's time zone."""
        return self.valid.astimezone(time_zone()).date()

    def describe(self) -> dict[str, str | None]:
        return {
            "valid_at": self.valid.isoformat(),
            "known_at": self.known.isoformat() if self.known else None,
        }


def moment(
    valid_at: str | dt.date | dt.datetime | None = None,
    known_at: str | dt.date | dt.datetime | None = None,
) -> Moment | None:
    """The moment to read, or None to read the current register (both unset). A known-at
    time alone reads the register valid then as known then; a valid-at time alone reads
    it as known now."""
    if valid_at is None and known_at is None:
        return None
    now = dt.datetime.now(dt.UTC)
    known = parse_instant(known_at, "known_at") if known_at is not None else None
    valid = parse_instant(valid_at, "valid_at") if valid_at is not None else known
    assert valid is not None
    if known is not None and known > now:
        known = None  # later than now, the record is what is known now
    return Moment(valid=valid, known=known)


def parse_valid_from(value: str | dt.date | dt.datetime) -> dt.datetime:
    """When a change took effect: a date means its start (in the registry's time zone),
    a date-time is taken as given; never later than now."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        instant = dt.datetime.combine(value, dt.time(), tzinfo=time_zone())
    elif isinstance(value, str) and len(value.strip()) == 10:
        instant = parse_instant(value, "valid_from") + ONE_MICROSECOND - dt.timedelta(days=1)
    else:
        instant = parse_instant(value, "valid_from")
    if instant > dt.datetime.now(dt.UTC):
        raise HistoryError(f"valid_from {instant.isoformat()} is in the future")
    return instant


def rates_moment(as_of: dt.date | None, known_at: str | dt.datetime | None) -> Moment | None:
    """What a rates request reads: the history for a past date or a known-at time (so the
    figures for a past day never change with later edits); None for today or a later
    date, which the kept counters answer (residents counted at that date)."""
    if known_at is None and (as_of is None or as_of >= dt.date.today()):
        return None
    return moment(as_of, known_at)


def set_valid_from(session: Session, when: str | dt.date | dt.datetime) -> dt.datetime:
    """Make this transaction's changes valid from ``when`` (a correction that took effect
    earlier, a survey date) instead of from the transaction's start."""
    instant = parse_valid_from(when)
    session.execute(
        text("SELECT set_config('registry.valid_from', :value, true)"),
        {"value": instant.isoformat()},
    )
    return instant


# ---------------------------------------------------------------- state at a moment


def table_at(table: Table, at: Moment | None) -> FromClause:
    """``table`` itself, or (``at``) its versions valid then as known then, with the same
    column names: ``registry_<table>_at()`` of migration 0010."""
    if at is None:
        return table
    if table.name not in VERSIONED:
        raise HistoryError(f"{table.name} has no history")
    history = HISTORY_TABLES[table.name]
    function = getattr(func, f"registry_{table.name}_at")
    return function(literal(at.valid, INSTANT), literal(at.known, INSTANT)).table_valued(
        *(column(c.name, c.type) for c in history.columns), name=f"{table.name}_at"
    )


COUNT_NAMES = ("code", "name", "street_code", "street_name", "district_code", "district_name")


def community_counts_at(counts: tuple[str, ...]) -> FromClause:
    """The per-community counts of ``sql/community_counts_at.sql`` as a subquery with the
    columns of rates.community_counts(); binds :valid, :known, :as_of and :code_prefix."""
    sql = files("registry").joinpath("sql", "community_counts_at.sql").read_text("utf-8")
    return (
        text(sql)
        .columns(*(column(n, String) for n in COUNT_NAMES), *(column(n, Integer) for n in counts))
        .subquery("counts")
    )


def counts_params(at: Moment, code_prefix: str | None = None) -> dict[str, Any]:
    """The parameters of :func:`community_counts_at`; ``code_prefix`` (digits, checked by
    the caller) limits the counting to the communities under it."""
    return {
        "valid": at.valid,
        "known": at.known,
        "as_of": at.as_of,
        "code_prefix": code_prefix or "",
    }


# ---------------------------------------------------------------- versions of one object


def versions(session: Session, entity: str, key: str) -> list[dict[str, Any]]:
    """Every version of one object, oldest valid time first, as the caller may see them:
    its values (geometries as GeoJSON), valid from/to, and when and by whom it was
    recorded and superseded. Empty when the object never existed (or is out of scope)."""
    if entity not in VERSIONED:
        raise HistoryError(f"no history of {entity!r}; kinds: {', '.join(VERSIONED)}")
    history = HISTORY_TABLES[entity]
    recorded = TXN.alias("recorded")
    superseded = TXN.alias("superseded")
    key_column = history.c[VERSIONED[entity][0]]
    query = (
        select(
            *value_columns(history),
            history.c.valid_from,
            history.c.valid_to,
            recorded.c.committed_at.label("recorded_at"),
            recorded.c.account.label("recorded_by"),
            superseded.c.committed_at.label("superseded_at"),
            superseded.c.account.label("superseded_by"),
        )
        .join_from(history, recorded, recorded.c.txid == history.c.recorded_txid, isouter=True)
        .join(superseded, superseded.c.txid == history.c.superseded_txid, isouter=True)
        .where(key_column == key)
        .order_by(history.c.valid_from, recorded.c.committed_at.nulls_last(), history.c.history_id)
    )
    return [geojson_values(history, dict(row._mapping)) for row in session.execute(query)]


def is_geometry(col: Any) -> bool:
    return isinstance(col.type, Geometry)


def value_columns(history: Table) -> list[Any]:
    """The object's own columns of a history table, geometries as GeoJSON text (the
    bookkeeping and derived copies left out)."""
    return [
        (func.ST_AsGeoJSON(c, 7, 0).label(c.name) if is_geometry(c) else c)
        for c in history.columns
        if c.name not in HISTORY_COLUMNS and c.name not in DERIVED_COLUMNS
    ]


def geojson_values(history: Table, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with the GeoJSON text of :func:`value_columns` parsed, in place."""
    for c in history.columns:
        if is_geometry(c) and row.get(c.name) is not None:
            row[c.name] = json.loads(row[c.name])
    return row
