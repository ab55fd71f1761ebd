"""The audit log: who read personal data, searched by identity number, exported, signed in.

Rows are written in the same transaction as the access they record, so a read that
returns data has its audit row, and one whose audit row fails returns nothing. Nobody
can change them afterwards (migration 0006). Never put an identity number, a name or a
secret in a row: targets are ids, and the purpose is what the caller stated.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Insert, Select, insert, select
from sqlalchemy.orm import Session

from registry.auth import Principal
from registry.models import AUDIT_ACTIONS, AuditLog
from registry.settings import RegistryError

MAX_PURPOSE = 500


def entry(
    principal: Principal | None,
    action: str,
    *,
    user_name: str | None = None,
    client_ip: str | None = None,
    targets: Iterable[Any] = (),
    purpose: str | None = None,
    detail: dict[str, Any] | None = None,
) -> Insert:
    """The INSERT of one audit row (for a session or an async connection alike)."""
    if action not in AUDIT_ACTIONS:
        raise ValueError(f"unknown audit action {action}")
    # the table (no RETURNING: see AuditLog), not the ORM entity
    return insert(AuditLog.__table__).values(
        user_name=principal.name if principal else (user_name or "-"),
        role=principal.role if principal else None,
        jurisdiction=list(principal.jurisdiction) if principal else None,
        client_ip=client_ip,
        action=action,
        target_ids=[str(t) for t in targets],
        purpose=(purpose or None) and purpose[:MAX_PURPOSE],
        detail=detail or {},
    )


def record(session: Session, principal: Principal | None, action: str, **kwargs: Any) -> None:
    session.execute(entry(principal, action, **kwargs))


def query(
    user: str | None = None,
    since: dt.datetime | None = None,
    action: str | None = None,
    limit: int = 1000,
) -> Select:
    if action is not None and action not in AUDIT_ACTIONS:
        raise RegistryError(f"--action {action!r}: one of {', '.join(AUDIT_ACTIONS)}")
    statement = select(AuditLog).order_by(AuditLog.id.desc()).limit(limit)
    if user:
        statement = statement.where(AuditLog.user_name == user)
    if since:
        statement = statement.where(AuditLog.at >= since)
    if action:
        statement = statement.where(AuditLog.action == action)
    return statement


def read(session: Session, **filters: Any) -> list[AuditLog]:
    """Newest first (the CLI's ``registry audit``; run as the owner, never by the API)."""
    return list(session.scalars(query(**filters)))
