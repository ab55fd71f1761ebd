"""Key rotation: re-encrypt every identity number under a new key version, in batches.

``rotate`` adds a version of fresh random keys to the key file (atomically, after a
backup of the file), records its fingerprint, then moves the persons still under older
versions to it, a batch per short transaction (``FOR UPDATE SKIP LOCKED``), so readers,
the API and loads keep working meanwhile: a load with the new key file finds a person
under either version (registry/vault.py, ``lookup_keys``). Every step can be repeated:
a crash at any point is recovered by running ``rotate`` again, which resumes the
unfinished rotation instead of starting another.

The order makes that safe: the key file is on disk before the database records the
new version; a row is re-encrypted only once its version's fingerprint is recorded;
old versions leave the key file only after no row uses them.
"""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Row, bindparam, delete, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session

from registry.db import transaction
from registry.models import AuditLog, Person, RegistryMeta
from registry.settings import RegistryError
from registry.vault import (
    FINGERPRINT_KEY,
    MAX_VERSION,
    VERSION_FINGERPRINT_PREFIX,
    IdentityVault,
    KeyPair,
    bind_vault,
    load_vault,
    recorded_keys,
    write_key_file,
)

ROTATION_KEY = "key_rotation"  # registry_meta: the unfinished rotation, as JSON
ROTATION_LOCK = 0x7265_6769_6B65_7973  # pg advisory lock: one rotation at a time

Progress = Callable[[int, int], None]
"""Called after each batch with the rows re-encrypted so far by this run and the rows
that were under older versions when it started."""


@dataclass
class Rotation:
    """What a run of :func:`rotate` did."""

    from_version: int | None
    to_version: int
    rows: int = 0  # re-encrypted by this run
    total_rows: int = 0  # re-encrypted by the rotation, over all its runs
    remaining: int = 0  # rows still under older versions
    resumed: bool = False
    finished: bool = False
    retired: list[int] = field(default_factory=list)
    backups: list[Path] = field(default_factory=list)


def rotate(
    engine: Engine,
    key_path: Path,
    batch_size: int = 1000,
    progress: Progress | None = None,
    *,
    retire: bool = False,
    max_batches: int | None = None,
) -> Rotation:
    """Rotate the identity keys of the database behind ``engine`` and the key file at
    ``key_path``; resume an unfinished rotation rather than start another.

    ``retire`` removes the old versions from the key file once no row uses them (the
    previous file is kept as a backup). ``max_batches`` stops after that many batches,
    leaving the rotation unfinished (for tests; running again resumes it).
    """
    if batch_size < 1:
        raise RegistryError("the batch size must be at least 1")
    with rotation_lock(engine):
        rotation, vault = start(engine, key_path)
        if progress is not None:
            progress(0, rotation.remaining)
        rotation.remaining = reencrypt(engine, vault, rotation, batch_size, progress, max_batches)
        if rotation.remaining == 0:
            finish(engine, key_path, vault, rotation, retire)
    return rotation


@contextmanager
def rotation_lock(engine: Engine) -> Iterator[None]:
    """Hold a session advisory lock for the whole run: two rotations at once could each
    add a version, and one's keys would be lost."""
    with engine.connect() as connection:
        taken = connection.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": ROTATION_LOCK})
        connection.commit()
        if not taken:
            raise RegistryError("another key rotation is running on this database")
        try:
            yield
        finally:
            try:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ROTATION_LOCK})
                connection.commit()
            except SQLAlchemyError:
                connection.invalidate()  # closing the connection releases the lock


def start(engine: Engine, key_path: Path) -> tuple[Rotation, IdentityVault]:
    """Check the key file, add a new version unless a rotation is unfinished, record the
    new version's fingerprint and the rotation; the vault to rotate with."""
    vault = load_vault(key_path)
    with transaction(engine) as session:
        bind_vault(session, vault, key_path)
        marker = read_marker(session)
        unfinished = marker is not None or any_under_older(session, vault.current)
    backups = []
    if unfinished:
        # the key file was written (and perhaps recorded) by the interrupted run
        older = [v for v in vault.keys if v < vault.current]
        previous = marker["from"] if marker else max(older, default=None)
        total = int(marker["rows"]) if marker else 0
    else:
        previous, total = vault.current, 0
        version = max(vault.keys) + 1
        if version > MAX_VERSION:
            raise RegistryError(f"no key version is left after {MAX_VERSION}")
        added = IdentityVault({**vault.keys, version: KeyPair.generate()}, version)
        backup = write_key_file(key_path, added)
        if backup is not None:
            backups.append(backup)
        vault = load_vault(key_path)  # what is on disk is what rows get encrypted with
        if vault.fingerprints != added.fingerprints or vault.current != version:
            raise RegistryError(f"key file {key_path} did not read back as written")
    with transaction(engine) as session:
        # first wait for the loads under way (see record_current), then record
        record_current(session, vault)
        bind_vault(session, vault, key_path)
        if marker is None:
            write_marker(session, {"from": previous, "to": vault.current, "rows": total})
        remaining = rows_under_older(session, vault.current)
    rotation = Rotation(previous, vault.current, total_rows=total, remaining=remaining)
    rotation.resumed, rotation.backups = unfinished, backups
    return rotation, vault


def reencrypt(
    engine: Engine,
    vault: IdentityVault,
    rotation: Rotation,
    batch_size: int,
    progress: Progress | None,
    max_batches: int | None,
) -> int:
    """Move the rows under older versions to the current one, a batch per transaction;
    the number of rows still under older versions when it stops.

    Batches walk the primary key and skip rows that others hold locked (a load writing
    that person); once a pass has moved nothing but rows remain, the next pass waits
    for those locks instead of skipping.
    """
    started = rotation.remaining
    after, moved_in_pass, batches, skip_locked = 0, 0, 0, True
    while max_batches is None or batches < max_batches:
        with transaction(engine) as session:
            rows = session.execute(
                select(Person.id, Person.id_hmac, Person.id_cipher, Person.key_version)
                .where(Person.key_version < vault.current, Person.id > after)
                .order_by(Person.id)
                .limit(batch_size)
                .with_for_update(skip_locked=skip_locked)
            ).all()
            if rows:
                reencrypt_rows(session, vault, rows)
                rotation.total_rows += len(rows)
                write_marker(
                    session,
                    {
                        "from": rotation.from_version,
                        "to": vault.current,
                        "rows": rotation.total_rows,
                    },
                )
        if rows:
            batches += 1
            after = rows[-1].id
            moved_in_pass += len(rows)
            rotation.rows += len(rows)
            if progress is not None:
                progress(rotation.rows, started)
            continue
        with transaction(engine) as session:
            if not any_under_older(session, vault.current):
                return 0
        if not skip_locked and moved_in_pass == 0:
            raise RegistryError(
                "persons under an older key version keep appearing: is a load running "
                "with an old key file?"
            )
        skip_locked = moved_in_pass > 0
        after, moved_in_pass = 0, 0
    with transaction(engine) as session:
        return rows_under_older(session, vault.current)


def reencrypt_rows(session: Session, vault: IdentityVault, rows: Sequence[Row[Any]]) -> None:
    """Decrypt each row with its own version; store the current version's look-up key
    and ciphertext."""
    person = Person.__table__
    values = []
    for row in rows:
        try:
            number = vault.decrypt(row.id_cipher, row.id_hmac, row.key_version)
        except RegistryError:
            raise RegistryError(
                f"the identity number of person {row.id} cannot be decrypted with key "
                f"version {row.key_version} of the key file"
            ) from None
        lookup = vault.lookup_key(number)
        values.append(
            {"person_id": row.id, "new_hmac": lookup, "new_cipher": vault.encrypt(number, lookup)}
        )
    statement = (
        update(person)
        .where(person.c.id == bindparam("person_id"))
        .values(
            id_hmac=bindparam("new_hmac"),
            id_cipher=bindparam("new_cipher"),
            key_version=vault.current,
        )
    )
    try:
        session.execute(statement, values)
    except IntegrityError:
        raise RegistryError(
            f"a person between ids {rows[0].id} and {rows[-1].id} has the same identity "
            "number as another person under the new key: merge the duplicates first"
        ) from None


def finish(
    engine: Engine, key_path: Path, vault: IdentityVault, rotation: Rotation, retire: bool
) -> None:
    """Record the rotation in the audit log and close it; with ``retire``, drop the old
    versions from the key file (after a backup) and their fingerprints.

    The key file is rewritten before the transaction commits: if the commit is lost,
    the next run finds the rotation still open and finishes it again.
    """
    with transaction(engine) as session:
        if any_under_older(session, vault.current):
            return
        session.execute(
            insert(AuditLog.__table__).values(
                user_name=os_user(),
                action="key_rotation",
                detail={
                    "from": rotation.from_version,
                    "to": rotation.to_version,
                    "rows": rotation.total_rows,
                },
            )
        )
        session.execute(delete(RegistryMeta).where(RegistryMeta.key == ROTATION_KEY))
        old = sorted(v for v in vault.keys if v != vault.current)
        recorded_old = [v for v in recorded_keys(session).stored if v != vault.current]
        if retire and recorded_old:
            session.execute(
                delete(RegistryMeta).where(
                    RegistryMeta.key.in_([f"{VERSION_FINGERPRINT_PREFIX}{v}" for v in recorded_old])
                )
            )
        if retire and old:
            kept = IdentityVault({vault.current: vault.keys[vault.current]}, vault.current)
            backup = write_key_file(key_path, kept)
            if backup is not None:
                rotation.backups.append(backup)
            rotation.retired = old
    rotation.finished = True


def record_current(session: Session, vault: IdentityVault) -> None:
    """Make the current version the database's current one. Updating the row waits for
    every load that checked its keys before (they hold it FOR SHARE), so no load with
    a key file lacking this version is still writing once this commits."""
    session.execute(
        update(RegistryMeta)
        .where(
            RegistryMeta.key == FINGERPRINT_KEY,
            RegistryMeta.value.is_distinct_from(vault.fingerprint),
        )
        .values(value=vault.fingerprint)
    )


def read_marker(session: Session) -> dict[str, Any] | None:
    value = session.scalar(select(RegistryMeta.value).where(RegistryMeta.key == ROTATION_KEY))
    return None if value is None else json.loads(value)


def write_marker(session: Session, marker: dict[str, Any]) -> None:
    """Record the unfinished rotation (versions and rows so far): no keys, no numbers."""
    statement = pg_insert(RegistryMeta).values(key=ROTATION_KEY, value=json.dumps(marker))
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[RegistryMeta.key], set_={"value": statement.excluded.value}
        )
    )


def any_under_older(session: Session, version: int) -> bool:
    return bool(
        session.scalar(select(select(Person.id).where(Person.key_version < version).exists()))
    )


def rows_under_older(session: Session, version: int) -> int:
    return (
        session.scalar(select(func.count()).select_from(Person).where(Person.key_version < version))
        or 0
    )


def os_user() -> str:
    """The operating-system user running the rotation, for the audit log."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return f"uid:{os.getuid()}"
