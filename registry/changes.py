"""The change feed: every change to the register, once, in commit order.

Each changed row of a versioned table is one change, numbered at commit (migration 0010):
a transaction's changes take the next block of numbers under a lock held until its commit
is visible, so a reader that has seen number N has seen every change below N. A client
keeps the last number it processed and asks for the changes after it; ``next_after`` is
where to continue, even when row-level security hid every change of a page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Select, and_, bindparam, func, select, true
from sqlalchemy.dialects.postgresql import ARRAY, distinct_on
from sqlalchemy.orm import Session

from registry.history import HistoryError, geojson_values, value_columns
from registry.models import HISTORY_TABLES, VERSIONED, RegistryChange, RegistryClock, RegistryTxn

MAX_LIMIT = 10_000
DEFAULT_LIMIT = 1_000

CHANGE = RegistryChange.__table__
TXN = RegistryTxn.__table__


@dataclass
class ChangePage:
    """Changes after a number, the number to continue after, and the newest number."""

    changes: list[dict[str, Any]] = field(default_factory=list)
    next_after: int = 0
    latest: int = 0


def check_entities(entities: Sequence[str] | None) -> None:
    for entity in entities or ():
        if entity not in VERSIONED:
            raise HistoryError(f"entity {entity!r} is not one of {', '.join(VERSIONED)}")


def changes_after(
    session: Session,
    after: int,
    limit: int = DEFAULT_LIMIT,
    entities: Sequence[str] | None = None,
    with_data: bool = True,
) -> ChangePage:
    """Up to ``limit`` changes numbered after ``after``, oldest first, that the caller may
    see, each with the object's values as that change left them (``data``; null for a
    deletion) unless ``with_data`` is false."""
    if after < 0:
        raise HistoryError("after must be a change number, 0 or more")
    if not 1 <= limit <= MAX_LIMIT:
        raise HistoryError(f"limit must be from 1 to {MAX_LIMIT}")
    check_entities(entities)
    # the newest number first: every change up to it has committed, so a later statement
    # of this transaction sees them all
    latest = session.scalar(select(RegistryClock.last_seq)) or 0
    rows = [dict(row._mapping) for row in session.execute(page_query(after, limit, entities))]
    if with_data:
        attach_data(session, rows)
    for row in rows:
        row.pop("txid")
        row.setdefault("data", None)
    last = rows[-1]["seq"] if rows else after
    # a full page continues after its last change; a short one saw everything up to latest
    next_after = last if len(rows) == limit else max(last, latest, after)
    return ChangePage(changes=rows, next_after=next_after, latest=latest)


def page_query(after: int, limit: int, entities: Sequence[str] | None) -> Select:
    """Transactions in commit order, each read through its changes' index from the first
    one after ``after``: a page costs its own rows, even inside one bulk load's block."""
    within = (
        select(CHANGE.c.ordinal, CHANGE.c.entity, CHANGE.c.key, CHANGE.c.op)
        .where(CHANGE.c.txid == TXN.c.txid, CHANGE.c.ordinal > after - TXN.c.seq_first)
        .order_by(CHANGE.c.ordinal)
        .limit(limit)
    )
    if entities:
        within = within.where(CHANGE.c.entity.in_(list(entities)))
    changes = within.lateral("changes")
    return (
        select(
            (TXN.c.seq_first + changes.c.ordinal).label("seq"),
            TXN.c.committed_at,
            changes.c.entity,
            changes.c.key.label("id"),
            changes.c.op,
            TXN.c.txid,
        )
        .select_from(TXN.join(changes, true()))
        .where(TXN.c.committed_at.is_not(None), TXN.c.seq_last > after)
        .order_by(TXN.c.seq_last, changes.c.ordinal)
        .limit(limit)
    )


def attach_data(session: Session, rows: list[dict[str, Any]]) -> None:
    """Each insert or update's new version (the latest valid one its transaction
    recorded), fetched per entity in one query; the caller's row-level security applies."""
    wanted: dict[str, set[tuple[str, int]]] = {}
    for row in rows:
        if row["op"] != "delete":
            wanted.setdefault(row["entity"], set()).add((row["id"], row["txid"]))
    found: dict[tuple[str, str, int], dict[str, Any]] = {}
    for entity, pairs in wanted.items():
        for key, txid, data in version_data(session, entity, pairs):
            found[(entity, key, txid)] = data
    for row in rows:
        row["data"] = found.get((row["entity"], row["id"], row["txid"]))


def version_data(
    session: Session, entity: str, pairs: set[tuple[str, int]]
) -> list[tuple[str, int, dict[str, Any]]]:
    history = HISTORY_TABLES[entity]
    key_column = history.c[VERSIONED[entity][0]]
    # the (key, transaction) pairs as two arrays joined as one relation: a list of row
    # values in an IN clause grows PostgreSQL's parse tree with every pair
    key_type = ARRAY(key_column.type)
    keys = [key if key_column.type.python_type is str else int(key) for key, _ in pairs]
    wanted = (
        func.unnest(
            bindparam("keys", keys, type_=key_type),
            bindparam("txids", [txid for _, txid in pairs], type_=ARRAY(BigInteger)),
        )
        .table_valued("key", "txid")
        .render_derived(name="wanted")
    )
    query = (
        select(*value_columns(history), history.c.recorded_txid)
        .join_from(
            history,
            wanted,
            and_(key_column == wanted.c.key, history.c.recorded_txid == wanted.c.txid),
        )
        .order_by(key_column, history.c.recorded_txid, history.c.valid_from.desc())
        .ext(distinct_on(key_column, history.c.recorded_txid))
    )
    out = []
    for row in session.execute(query):
        data = geojson_values(history, dict(row._mapping))
        txid = data.pop("recorded_txid")
        for name, value in data.items():
            if isinstance(value, dt.date | dt.datetime):
                data[name] = value.isoformat()
        out.append((str(data[key_column.name]), txid, data))
    return out
