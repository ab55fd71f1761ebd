"""Writing validated rows: COPY into a staging table, then one upsert per table.

An upsert only touches rows whose values differ (``IS DISTINCT FROM``), so loading the
same bundle twice changes nothing, and the counts say what was inserted, updated or
left unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import sql
from sqlalchemy import Column, MetaData, Table, func, literal_column, select, tuple_
from sqlalchemy.dialects.postgresql import Insert, distinct_on, insert
from sqlalchemy.orm import Session

from registry.models import Person, Residence


@dataclass
class WriteCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged}


def staging_table(session: Session, name: str, columns: Iterable[Column]) -> Table:
    """A temporary table of ``columns``, to be filled by :func:`copy_rows`."""
    stage = Table(name, MetaData(), *columns, prefixes=["TEMPORARY"])
    stage.drop(session.connection(), checkfirst=True)
    stage.create(session.connection())
    return stage


def typed_like(table: Table, names: Iterable[str]) -> list[Column]:
    """Fresh columns named ``names``, typed as the columns of ``table``."""
    return [Column(name, table.c[name].type) for name in names]


def copy_rows(session: Session, stage: Table, rows: Iterable[Sequence[Any]]) -> int:
    """Stream ``rows`` into ``stage`` with COPY; geometries travel as hex EWKB text."""
    driver = session.connection().connection.driver_connection
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(stage.name), sql.SQL(", ").join(sql.Identifier(c.name) for c in stage.c)
    )
    count = 0
    with driver.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
            count += 1
    return count


def upsert_from_stage(
    session: Session, target: Table, stage: Table, key: Sequence[str], staged: int
) -> WriteCounts:
    """Insert new rows and update changed ones; unchanged rows are not rewritten."""
    columns = [c.name for c in stage.c]
    changing = [name for name in columns if name not in key]
    statement = insert(target).from_select(columns, select(*stage.c))
    excluded = statement.excluded
    set_ = {name: excluded[name] for name in changing}
    if "updated_at" in target.c:
        set_["updated_at"] = func.now()
    statement = statement.on_conflict_do_update(
        index_elements=list(key),
        set_=set_,
        where=tuple_(*(target.c[n] for n in changing)).is_distinct_from(
            tuple_(*(excluded[n] for n in changing))
        ),
    )
    return run_upsert(session, statement, stage, staged)


def run_upsert(session: Session, statement: Insert, stage: Table, staged: int) -> WriteCounts:
    """Execute an upsert, count inserted rows (``xmax = 0``) and updated ones, drop the stage."""
    counts = WriteCounts()
    for (inserted,) in session.execute(statement.returning(literal_column("xmax = 0"))):
        if inserted:
            counts.inserted += 1
        else:
            counts.updated += 1
    counts.unchanged = staged - counts.inserted - counts.updated
    stage.drop(session.connection())
    return counts


def write_table(
    session: Session, target: Table, key: Sequence[str], columns: Sequence[str], rows: list
) -> WriteCounts:
    stage = staging_table(session, f"stage_{target.name}", typed_like(target, columns))
    staged = copy_rows(session, stage, rows)
    return upsert_from_stage(session, target, stage, key, staged)


RESIDENT_COLUMNS = (
    "id_hmac",
    "id_cipher",
    "id_tail",
    "name",
    "room_id",
    "community_code",
    "category",
    "moved_in",
    "moved_out",
)


def write_residents(session: Session, rows: list[Sequence[Any]]) -> WriteCounts:
    """Persons first (one per identity HMAC), then their residences.

    ``rows`` follow :data:`RESIDENT_COLUMNS`. A person's ciphertext is written once: a
    new nonce on every load would otherwise make each reload look like a change.
    """
    person, residence = Person.__table__, Residence.__table__
    columns = typed_like(person, RESIDENT_COLUMNS[:4]) + typed_like(residence, RESIDENT_COLUMNS[4:])
    stage = staging_table(session, "stage_residents", columns)
    staged = copy_rows(session, stage, rows)

    persons = insert(person).from_select(
        ["id_hmac", "id_cipher", "id_tail", "name"],
        select(stage.c.id_hmac, stage.c.id_cipher, stage.c.id_tail, stage.c.name).ext(
            distinct_on(stage.c.id_hmac)
        ),
    )
    session.execute(
        persons.on_conflict_do_update(
            index_elements=["id_hmac"],
            set_={"name": persons.excluded.name, "updated_at": func.now()},
            where=person.c.name.is_distinct_from(persons.excluded.name),
        )
    )

    changing = ["room_id", "community_code", "category", "moved_out"]
    residences = insert(residence).from_select(
        ["person_id", "moved_in", *changing],
        select(person.c.id, stage.c.moved_in, *(stage.c[n] for n in changing)).join(
            person, person.c.id_hmac == stage.c.id_hmac
        ),
    )
    excluded = residences.excluded
    statement = residences.on_conflict_do_update(
        constraint="uq_residence_person_id_moved_in",
        set_={**{n: excluded[n] for n in changing}, "updated_at": func.now()},
        where=tuple_(*(residence.c[n] for n in changing)).is_distinct_from(
            tuple_(*(excluded[n] for n in changing))
        ),
    )
    return run_upsert(session, statement, stage, staged)
