"""Writing validated rows with COPY: straight into a table the load found empty, else
into a staging table and then one upsert per table.

An upsert only touches rows whose values differ (``IS DISTINCT FROM``), so loading the
same bundle twice changes nothing, and the counts say what was inserted, updated or
left unchanged. Into an empty table every row is an insert, so it is copied as it is.

COPY data is sent by :class:`CopyPipe` from a thread of its own, so PostgreSQL ingests
one chunk (indexes, foreign-key checks) while Python reads and checks the next.
"""

from __future__ import annotations

import datetime as dt
import queue
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Protocol

import psycopg
from psycopg import sql
from sqlalchemy import (
    Column,
    LargeBinary,
    MetaData,
    SmallInteger,
    Table,
    func,
    literal,
    literal_column,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import Insert, distinct_on, insert
from sqlalchemy.orm import Session

from registry.models import Employment, Organization, Person, Residence
from registry.vault import IdentityVault

CHUNK_ROWS = 20_000  # rows per COPY chunk: big enough to amortise, small enough to overlap
QUEUED_CHUNKS = 4  # chunks waiting for the COPY thread at most (bounds memory)
_SPECIAL = re.compile(r"[\\\t\n\r]")
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


@dataclass
class WriteCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"inserted": self.inserted, "updated": self.updated, "unchanged": self.unchanged}


def copy_value(value: Any) -> str:
    """One value in COPY's text format; geometries travel as hex EWKB text."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_ESCAPES) if _SPECIAL.search(value) else value
    if isinstance(value, bytes):
        return "\\\\x" + value.hex()
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def copy_line(values: Iterable[Any]) -> str:
    return "\t".join(map(copy_value, values)) + "\n"


def copy_statement(table: str, columns: Sequence[str]) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )


class CopyPipe:
    """Runs COPY statements on the session's connection from a thread, in order.

    Consecutive chunks for the same statement share one COPY. :meth:`drain` ends the
    open COPY and waits for everything sent, and must come before any other use of the
    connection; an error in the thread is raised again by the next call.
    """

    def __init__(self, session: Session) -> None:
        self.connection: psycopg.Connection = session.connection().connection.driver_connection
        self.jobs: queue.Queue[tuple[sql.Composed, str] | threading.Event | None] = queue.Queue(
            QUEUED_CHUNKS
        )
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="copy-pipe", daemon=True)
        self.thread.start()

    def send(self, statement: sql.Composed, data: str) -> None:
        self._check()
        self.jobs.put((statement, data))

    def drain(self) -> None:
        done = threading.Event()
        self.jobs.put(done)
        done.wait()
        self._check()

    def close(self, *, check: bool = True) -> None:
        """Stop the thread; what was queued is still sent (or discarded after an error).
        ``check=False`` when an error is already on its way up."""
        self.jobs.put(None)
        self.thread.join()
        if check:
            self._check()

    def _check(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _run(self) -> None:
        current: sql.Composed | None = None  # the statement of the open COPY
        copy: psycopg.Copy | None = None
        open_copy = ExitStack()
        while True:
            job = self.jobs.get()
            try:
                if not isinstance(job, tuple) or job[0] is not current:
                    current = copy = None
                    open_copy.close()
                if isinstance(job, tuple) and self.error is None:
                    if copy is None:
                        cursor = open_copy.enter_context(self.connection.cursor())
                        copy = open_copy.enter_context(cursor.copy(job[0]))
                        current = job[0]
                    copy.write(job[1])
            except BaseException as exc:  # handed to the main thread by _check
                current = copy = None
                self.error = self.error or exc
                open_copy = ExitStack()
            if isinstance(job, threading.Event):
                job.set()
            elif job is None:
                return


class Target(Protocol):
    """Where one layer's accepted rows go: :meth:`add` each, then :meth:`finish` once."""

    def add(self, row: Sequence[Any]) -> None: ...

    def finish(self) -> WriteCounts: ...


class Lines:
    """COPY text lines for one statement, sent through the pipe a chunk at a time."""

    def __init__(self, pipe: CopyPipe, table: str, columns: Sequence[str]) -> None:
        self.pipe = pipe
        self.statement = copy_statement(table, columns)
        self.lines: list[str] = []
        self.count = 0

    def add(self, values: Iterable[Any]) -> None:
        self.lines.append(copy_line(values))
        if len(self.lines) >= CHUNK_ROWS:
            self.flush()

    def append(self, values: Iterable[Any]) -> None:
        """Add without sending: the caller flushes (e.g. parents before children)."""
        self.lines.append(copy_line(values))

    def flush(self) -> None:
        if self.lines:
            self.count += len(self.lines)
            self.pipe.send(self.statement, "".join(self.lines))
            self.lines = []


class FreshTable:
    """Rows COPYed straight into a table that was empty (and is locked) at the start."""

    def __init__(self, pipe: CopyPipe, table: Table, columns: Sequence[str]) -> None:
        self.lines = Lines(pipe, table.name, columns)
        self.add = self.lines.add

    def finish(self) -> WriteCounts:
        self.lines.flush()
        return WriteCounts(inserted=self.lines.count)


class StagedTable:
    """Rows COPYed into a temporary table, then upserted by key in one statement."""

    def __init__(
        self,
        session: Session,
        pipe: CopyPipe,
        target: Table,
        key: Sequence[str],
        columns: Sequence[str],
    ) -> None:
        self.session, self.pipe, self.target, self.key = session, pipe, target, key
        pipe.drain()
        self.stage = staging_table(session, f"stage_{target.name}", typed_like(target, columns))
        self.lines = Lines(pipe, self.stage.name, columns)
        self.add = self.lines.add

    def finish(self) -> WriteCounts:
        self.lines.flush()
        self.pipe.drain()
        return upsert_from_stage(self.session, self.target, self.stage, self.key, self.lines.count)


def staging_table(session: Session, name: str, columns: Iterable[Column]) -> Table:
    """A temporary table of ``columns``, to be filled with COPY."""
    stage = Table(name, MetaData(), *columns, prefixes=["TEMPORARY"])
    stage.drop(session.connection(), checkfirst=True)
    stage.create(session.connection())
    return stage


def typed_like(table: Table, names: Iterable[str]) -> list[Column]:
    """Fresh columns named ``names``, typed as the columns of ``table``."""
    return [Column(name, table.c[name].type) for name in names]


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
    """Execute an upsert, count inserted rows (``xmax = 0``) and updated ones in the
    server, drop the stage."""
    written = statement.returning(literal_column("xmax = 0").label("inserted")).cte("written")
    inserted = func.count().filter(written.c.inserted)
    updated = func.count().filter(~written.c.inserted)
    row = session.execute(select(inserted, updated)).one()
    stage.drop(session.connection())
    return WriteCounts(row[0], row[1], staged - row[0] - row[1])


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
PERSON_COLUMNS = ("id", "id_hmac", "id_cipher", "id_tail", "name", "key_version")
# a person of the load as the registry may hold it under an older key version
REKEY_COLUMNS = ("old_hmac", "id_hmac", "id_cipher")
RESIDENCE_COLUMNS = ("person_id", "room_id", "community_code", "category", "moved_in", "moved_out")


class FreshResidents:
    """Persons and residences COPYed straight into empty (locked) tables.

    Person ids are ``first_id`` plus the person's index from validation, taken from
    ``person``'s identity sequence by :func:`reserve_person_ids`; each chunk of persons
    is sent before the residences that refer to them.
    """

    def __init__(self, pipe: CopyPipe, vault: IdentityVault, first_id: int) -> None:
        self.vault, self.first_id = vault, first_id
        self.version = vault.current
        self.persons = Lines(pipe, Person.__tablename__, PERSON_COLUMNS)
        self.residences = Lines(pipe, Residence.__tablename__, RESIDENCE_COLUMNS)
        self.written = bytearray()
        self.last_id = first_id - 1

    def add(self, row: Sequence[Any]) -> None:
        """``row``: identity number, name, community, room, address, category, moved in,
        moved out, person index."""
        id_number, name, community, room, _, category, moved_in, moved_out, index = row
        person_id = self.first_id + index
        if index >= len(self.written):
            self.written.extend(bytes(index + 1 - len(self.written)))
        if not self.written[index]:
            self.written[index] = 1
            self.last_id = max(self.last_id, person_id)
            lookup = self.vault.lookup_key(id_number)
            cipher = self.vault.encrypt(id_number, lookup)
            self.persons.lines.append(
                f"{person_id}\t\\\\x{lookup.hex()}\t\\\\x{cipher.hex()}\t{id_number[-4:]}\t"
                f"{copy_value(name)}\t{self.version}\n"
            )
        self.residences.append((person_id, room, community, category, moved_in, moved_out))
        if len(self.residences.lines) >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        self.persons.flush()
        self.residences.flush()

    def finish(self) -> WriteCounts:
        self.flush()
        return WriteCounts(inserted=self.residences.count)


def reserve_person_ids(session: Session) -> tuple[int, Callable[[int], None]]:
    """The next id of ``person``'s sequence, and a function that moves the sequence past
    the last id used. Only safe while ``person`` is locked against other writers."""
    sequence = session.scalar(text("SELECT pg_get_serial_sequence('person', 'id')"))
    first = session.scalar(text("SELECT nextval(CAST(:s AS regclass))"), {"s": sequence})

    def release(last: int) -> None:
        if last >= first:
            session.execute(
                text("SELECT setval(CAST(:s AS regclass), :last)"), {"s": sequence, "last": last}
            )

    return int(first), release


class StagedResidents:
    """Residents COPYed into a staging table, then persons and residences upserted.

    While the key file has more than one version (a rotation is under way, or the old
    keys are kept), each row also stages its look-up key under every older version, so
    that a person the registry holds under an older key is found (one HMAC per version
    per row, no query per row) and re-encrypted under the current one.
    """

    def __init__(self, session: Session, pipe: CopyPipe, vault: IdentityVault) -> None:
        self.session, self.pipe, self.vault = session, pipe, vault
        person, residence = Person.__table__, Residence.__table__
        columns = typed_like(person, RESIDENT_COLUMNS[:4]) + typed_like(
            residence, RESIDENT_COLUMNS[4:]
        )
        pipe.drain()
        self.stage = staging_table(session, "stage_residents", columns)
        self.lines = Lines(pipe, self.stage.name, RESIDENT_COLUMNS)
        self.rekey_stage: Table | None = None
        self.rekey_lines: Lines | None = None
        if len(vault.versions) > 1:
            rekey_columns = [Column(name, LargeBinary) for name in REKEY_COLUMNS]
            self.rekey_stage = staging_table(session, "stage_person_keys", rekey_columns)
            self.rekey_lines = Lines(pipe, self.rekey_stage.name, REKEY_COLUMNS)

    def add(self, row: Sequence[Any]) -> None:
        id_number, name, community, room, _, category, moved_in, moved_out, _ = row
        if self.rekey_lines is None:
            lookup = self.vault.lookup_key(id_number)
            cipher = self.vault.encrypt(id_number, lookup)
        else:
            lookup, *older = self.vault.lookup_keys(id_number)
            cipher = self.vault.encrypt(id_number, lookup)
            for old in older:
                self.rekey_lines.add((old, lookup, cipher))
        self.lines.add(
            (lookup, cipher, id_number[-4:], name, room, community, category, moved_in, moved_out)
        )

    def finish(self) -> WriteCounts:
        self.lines.flush()
        if self.rekey_lines is not None:
            self.rekey_lines.flush()
        self.pipe.drain()
        if self.rekey_stage is not None:
            rekey_persons(self.session, self.rekey_stage, self.vault.current)
        return upsert_residents(self.session, self.stage, self.lines.count, self.vault.current)


def rekey_persons(session: Session, stage: Table, key_version: int) -> None:
    """Move the load's persons that the registry holds under an older key version to
    the current one (new look-up key, new ciphertext), then drop the stage.

    Afterwards every person of the load is keyed by its current look-up key, so the
    upsert by ``id_hmac`` finds it instead of inserting a duplicate.
    """
    person = Person.__table__
    keys = (
        select(stage.c.old_hmac, stage.c.id_hmac, stage.c.id_cipher)
        .ext(distinct_on(stage.c.old_hmac))
        .subquery("keys")
    )
    session.execute(
        update(person)
        .where(person.c.id_hmac == keys.c.old_hmac)
        .values(id_hmac=keys.c.id_hmac, id_cipher=keys.c.id_cipher, key_version=key_version)
    )
    stage.drop(session.connection())


def upsert_persons(session: Session, stage: Table, key_version: int) -> None:
    """The stage's persons, one per identity HMAC: new ones inserted under
    ``key_version``, known ones' names updated where they differ.

    A person's ciphertext is written once: a new nonce on every load would otherwise
    make each reload look like a change.
    """
    person = Person.__table__
    persons = insert(person).from_select(
        ["id_hmac", "id_cipher", "id_tail", "name", "key_version"],
        select(
            stage.c.id_hmac,
            stage.c.id_cipher,
            stage.c.id_tail,
            stage.c.name,
            literal(key_version, SmallInteger),
        ).ext(distinct_on(stage.c.id_hmac)),
    )
    session.execute(
        persons.on_conflict_do_update(
            index_elements=["id_hmac"],
            set_={"name": persons.excluded.name, "updated_at": func.now()},
            where=person.c.name.is_distinct_from(persons.excluded.name),
        )
    )


def upsert_residents(session: Session, stage: Table, staged: int, key_version: int) -> WriteCounts:
    """Persons first (see :func:`upsert_persons`), then their residences."""
    upsert_persons(session, stage, key_version)
    person, residence = Person.__table__, Residence.__table__
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


EMPLOYEE_COLUMNS = (
    "id_hmac",
    "id_cipher",
    "id_tail",
    "name",
    "organization_uscc",
    "position",
    "started",
    "ended",
)


class StagedEmployees:
    """Employees COPYed into a staging table, then persons (shared with residents, by
    identity HMAC) and employments upserted; see :class:`StagedResidents` for keys."""

    def __init__(self, session: Session, pipe: CopyPipe, vault: IdentityVault) -> None:
        self.session, self.pipe, self.vault = session, pipe, vault
        columns = typed_like(Person.__table__, EMPLOYEE_COLUMNS[:4]) + typed_like(
            Employment.__table__, EMPLOYEE_COLUMNS[4:]
        )
        pipe.drain()
        self.stage = staging_table(session, "stage_employees", columns)
        self.lines = Lines(pipe, self.stage.name, EMPLOYEE_COLUMNS)
        self.rekey_stage: Table | None = None
        self.rekey_lines: Lines | None = None
        if len(vault.versions) > 1:
            rekey_columns = [Column(name, LargeBinary) for name in REKEY_COLUMNS]
            self.rekey_stage = staging_table(session, "stage_employee_keys", rekey_columns)
            self.rekey_lines = Lines(pipe, self.rekey_stage.name, REKEY_COLUMNS)

    def add(self, row: Sequence[Any]) -> None:
        """``row``: identity number, name, uscc, position, started, ended."""
        id_number, name, uscc, position, started, ended = row
        lookup, *older = self.vault.lookup_keys(id_number)
        cipher = self.vault.encrypt(id_number, lookup)
        if self.rekey_lines is not None:
            for old in older:
                self.rekey_lines.add((old, lookup, cipher))
        self.lines.add((lookup, cipher, id_number[-4:], name, uscc, position, started, ended))

    def finish(self) -> WriteCounts:
        self.lines.flush()
        if self.rekey_lines is not None:
            self.rekey_lines.flush()
        self.pipe.drain()
        if self.rekey_stage is not None:
            rekey_persons(self.session, self.rekey_stage, self.vault.current)
        return upsert_employees(self.session, self.stage, self.lines.count, self.vault.current)


def upsert_employees(session: Session, stage: Table, staged: int, key_version: int) -> WriteCounts:
    """Persons, then employments keyed by person, organization and ``started``; each
    takes its organization's community, the scope of the record."""
    upsert_persons(session, stage, key_version)
    person, employment = Person.__table__, Employment.__table__
    organization = Organization.__table__
    changing = ["community_code", "position", "ended"]
    employments = insert(employment).from_select(
        ["person_id", "organization_uscc", "started", *changing],
        select(
            person.c.id,
            stage.c.organization_uscc,
            stage.c.started,
            organization.c.community_code,
            stage.c.position,
            stage.c.ended,
        )
        .join(person, person.c.id_hmac == stage.c.id_hmac)
        .join(organization, organization.c.uscc == stage.c.organization_uscc),
    )
    excluded = employments.excluded
    statement = employments.on_conflict_do_update(
        constraint="uq_employment_person_id_organization_uscc_started",
        set_={**{n: excluded[n] for n in changing}, "updated_at": func.now()},
        where=tuple_(*(employment.c[n] for n in changing)).is_distinct_from(
            tuple_(*(excluded[n] for n in changing))
        ),
    )
    return run_upsert(session, statement, stage, staged)
