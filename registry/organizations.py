"""Organizations (实有单位) and their employees: the repository functions.

Organizations are not personal data: row-level security (migration 0008) shows every
role those of its jurisdiction. Employments are, under the residences' rules: only
``officer`` and ``station`` of the organization's community see them, masked, and every
read is audited like a read of residents (:mod:`registry.persons`). The session carries
the caller's identity; nothing here commits.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row, select, update
from sqlalchemy.orm import Session

from registry.models import Employment, Organization, Person
from registry.persons import Access, identity, person_ids, record


def sync_employment_scope(session: Session) -> int:
    """Copy each organization's community onto its employments where it changed (the
    copy is the employment's row-level security scope); the number of rows moved."""
    result = session.execute(
        update(Employment)
        .where(
            Employment.organization_uscc == Organization.uscc,
            Employment.community_code != Organization.community_code,
        )
        .values(community_code=Organization.community_code)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount or 0


def organization_exists(session: Session, uscc: str) -> bool:
    """Whether the caller sees the organization (row-level security decides)."""
    return session.scalar(select(Organization.uscc).where(Organization.uscc == uscc)) is not None


def present_employee(access: Access, row: Row) -> dict[str, Any]:
    """One employment as the API returns it: masked unless the access unmasks."""
    name, number = identity(access, row)
    return {
        "person_id": row.person_id,
        "name": name,
        "id_number": number,
        "position": row.position,
        "started": row.started,
        "ended": row.ended,
    }


def organization_employees(
    session: Session, access: Access, uscc: str
) -> list[dict[str, Any]] | None:
    """Every employment of the organization the caller may see, past ones included,
    earliest first; None when the caller sees no such organization (nothing audited).
    Audited as ``read_persons`` even when no employee is visible."""
    if not organization_exists(session, uscc):
        return None
    clear = (Person.id_cipher, Person.id_hmac, Person.key_version) if access.unmasked else ()
    query = (
        select(
            Person.id.label("person_id"),
            Person.name,
            Person.id_tail,
            *clear,
            Employment.position,
            Employment.started,
            Employment.ended,
        )
        .join(Person, Person.id == Employment.person_id)
        .where(Employment.organization_uscc == uscc)
        .order_by(Employment.started.asc().nulls_first(), Employment.id)
    )
    rows = [present_employee(access, r) for r in session.execute(query)]
    record(session, access, "read_persons", person_ids(rows), organization_uscc=uscc)
    return rows
