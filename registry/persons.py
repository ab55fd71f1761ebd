"""Persons as the API shows them: a room's residents and look-up by identity number.

Every function takes a session already carrying the caller's identity
(:data:`registry.auth.SET_CONTEXT`), so row-level security (migration 0006) decides
which rows exist: persons and residences only for ``officer`` and ``station``, only in
their jurisdiction. None of them commits.

Names and numbers are masked here, on the server: a number to its last four characters
(from ``id_tail``, nothing decrypted), a name to its surname and ``*``. Clear values need
the key file's vault and are audited as ``unmask``. Each read is audited in the
caller's transaction (:mod:`registry.audit`), so data is returned only with its audit row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, Select, func, or_, select
from sqlalchemy.orm import Session

from registry import audit
from registry.auth import Principal
from registry.models import Building, Person, Residence, Room
from registry.vault import IdentityVault

ID_LENGTH = 18
# two-character surnames (复姓) common enough that a name starting with one most likely
# has it: masking keeps the whole surname, never a character of the given name
COMPOUND_SURNAMES = frozenset(
    {
        "欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐",
        "长孙", "宇文", "司徒", "夏侯", "端木", "独孤", "南宫", "西门", "轩辕", "澹台",
        "公冶", "宗政", "濮阳", "太史", "申屠", "闻人", "呼延", "万俟", "赫连", "钟离",
    }
)  # fmt: skip


def mask_name(name: str) -> str:
    """The surname and one ``*`` (``张*``, ``欧阳*``): the length of the given name is
    hidden too. A two-character name keeps only its first character even if the two
    spell a compound surname, since the second is then the given name."""
    name = name.strip()
    if not name:
        return ""
    surname = name[:2] if len(name) > 2 and name[:2] in COMPOUND_SURNAMES else name[:1]
    return surname + "*"


def mask_number(tail: str) -> str:
    """An 18-character identity number shown by its last four characters only, as
    :func:`registry.idnumber.mask` would show it, from the stored tail."""
    return "*" * (ID_LENGTH - len(tail)) + tail


@dataclass(frozen=True)
class Access:
    """Who reads persons, from where and why; with ``vault``, in clear (``unmask``)."""

    principal: Principal
    client_ip: str | None = None
    purpose: str | None = None
    vault: IdentityVault | None = None

    @property
    def unmasked(self) -> bool:
        return self.vault is not None


# ---------------------------------------------------------------- queries


def residents_query(access: Access, *conditions: Any) -> Select:
    """Residences joined to their persons; the ciphertext only when unmasking."""
    clear = (Person.id_cipher, Person.id_hmac, Person.key_version) if access.unmasked else ()
    return (
        select(
            Person.id.label("person_id"),
            Person.name,
            Person.id_tail,
            *clear,
            Residence.category,
            Residence.moved_in,
            Residence.moved_out,
            Residence.room_id,
            Residence.community_code,
        )
        .join(Person, Person.id == Residence.person_id)
        .where(*conditions)
        .order_by(Residence.moved_in.asc().nulls_first(), Residence.id)
    )


def identity(access: Access, row: Row) -> tuple[str, str]:
    """A person's name and identity number as the access may see them: in clear when it
    unmasks (decrypted here, on the server), else masked."""
    if access.vault is not None:
        return row.name, access.vault.decrypt(row.id_cipher, row.id_hmac, row.key_version)
    return mask_name(row.name), mask_number(row.id_tail)


def present(access: Access, row: Row) -> dict[str, Any]:
    """One residence as the API returns it: masked unless the access unmasks."""
    name, number = identity(access, row)
    return {
        "person_id": row.person_id,
        "name": name,
        "id_number": number,
        "category": row.category,
        "moved_in": row.moved_in,
        "moved_out": row.moved_out,
        "room_id": row.room_id,
        "community_code": row.community_code,
    }


def person_ids(rows: Iterable[dict[str, Any]]) -> list[int]:
    return sorted({row["person_id"] for row in rows})


def record(
    session: Session, access: Access, action: str, ids: Sequence[int], **detail: Any
) -> None:
    """The audit row of a read (and of its unmasking): ids only, never a number or name."""
    rows = [(action, detail)]
    if access.unmasked:
        rows.append(("unmask", {"via": action, **detail}))
    for name, details in rows:
        audit.record(
            session,
            access.principal,
            name,
            client_ip=access.client_ip,
            targets=ids,
            purpose=access.purpose,
            detail=details,
        )


# ---------------------------------------------------------------- reads


def room_residents(session: Session, access: Access, room_id: str) -> list[dict[str, Any]]:
    """Every residence of a room the caller may see, past ones included; audited as
    ``read_persons`` even when none is visible (the question was asked)."""
    rows = [
        present(access, r)
        for r in session.execute(residents_query(access, Residence.room_id == room_id))
    ]
    record(session, access, "read_persons", person_ids(rows), room_id=room_id)
    return rows


def room_with_residents(session: Session, access: Access, room_id: str) -> dict[str, Any] | None:
    """A room and its current residents (not moved out by today, as the rates count
    them); None when the caller sees no such room, and then nothing is audited."""
    room = session.execute(
        select(
            Room.id,
            Room.building_id,
            Building.name.label("building_name"),
            Building.community_code,
            Room.unit,
            Room.floor,
            Room.number,
            Room.use,
        )
        .join(Building, Building.id == Room.building_id)
        .where(Room.id == room_id)
    ).first()
    if room is None:
        return None
    today = session.scalar(select(func.current_date()))
    current = or_(Residence.moved_out.is_(None), Residence.moved_out > func.current_date())
    rows = [
        present(access, r)
        for r in session.execute(residents_query(access, Residence.room_id == room_id, current))
    ]
    record(session, access, "read_persons", person_ids(rows), room_id=room_id)
    return {**room._asdict(), "as_of": today, "residents": rows}


def search_identity(
    session: Session, access: Access, lookup_keys: Sequence[bytes]
) -> list[dict[str, Any]]:
    """The residences of the person whose number has one of ``lookup_keys`` (its HMAC
    under each key version), as far as the caller sees them. Audited as
    ``search_identity`` with the persons found: the number and its HMAC are never kept."""
    rows = [
        present(access, r)
        for r in session.execute(residents_query(access, Person.id_hmac.in_(lookup_keys)))
    ]
    ids = person_ids(rows)
    record(session, access, "search_identity", ids, found=len(ids))
    return rows
