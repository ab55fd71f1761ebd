"""Accounts, roles, jurisdictions, bearer tokens and web sessions.

A principal is who is asking: an account's name, role and jurisdiction (code prefixes).
Requests carry it into the database with :data:`SET_CONTEXT`, where row-level
security (migration 0006) filters every table of persons, rooms and buildings by it.

Tokens are 256-bit random secrets shown once; the database keeps only their SHA-256
(a hash suffices for a random secret, unlike for a password or an identity number).
Passwords are hashed with scrypt.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from registry.models import ROLES, Account, ApiToken
from registry.settings import RegistryError

TOKEN_PREFIX = "rgt_"
SESSION_PREFIX = "rgs_"
EDITORS = ("officer", "station", "admin")
PERSON_READERS = ("officer", "station")  # may see persons and unmask them, audited
CODE_LENGTHS = (2, 4, 6, 9, 12)  # province, city, district, street, community
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class Principal:
    """Who is asking: an account with its role and jurisdiction."""

    name: str
    role: str
    jurisdiction: tuple[str, ...]

    @property
    def sees_all(self) -> bool:
        return self.role == "admin"

    @property
    def scope(self) -> str:
        """The jurisdiction as the database's ``registry.scope`` setting (comma-joined)."""
        return ",".join(self.jurisdiction)

    @property
    def scope_key(self) -> str:
        """What the rows this principal sees depend on: for caches shared by requests."""
        return "*" if self.sees_all else f"{self.role}:{self.scope}"

    def overlaps(self, code: str) -> bool:
        """True if some of the area under the prefix ``code`` is in the jurisdiction."""
        return self.sees_all or any(
            code.startswith(prefix) or prefix.startswith(code) for prefix in self.jurisdiction
        )


# ---------------------------------------------------------------- secrets


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt$hash`` in hex, so the cost can be raised later."""
    salt = secrets.token_bytes(16)
    derived = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${derived.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Constant-time check; an account without a password never signs in with one."""
    if not stored:
        # spend the same time, so that timing does not tell which names exist
        hashlib.scrypt(b"x", salt=b"0" * 16, dklen=32, **SCRYPT)
        return False
    try:
        kind, n, r, p, salt, expected = stored.split("$")
        derived = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), dklen=32, n=int(n), r=int(r), p=int(p)
        )
    except ValueError:
        return False
    return kind == "scrypt" and hmac.compare_digest(derived.hex(), expected)


# ---------------------------------------------------------------- validation


def check_account(name: str, role: str, jurisdiction: list[str]) -> None:
    """Refuse names, roles and jurisdictions the policies could not apply as meant."""
    if not NAME_PATTERN.match(name):
        raise RegistryError(
            f"account name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'"
        )
    if role not in ROLES:
        raise RegistryError(f"role {role!r}: must be one of {', '.join(ROLES)}")
    for code in jurisdiction:
        if not code.isdigit() or len(code) not in CODE_LENGTHS:
            raise RegistryError(
                f"jurisdiction {code!r}: a district (6 digits), street (9) or community (12) "
                "code, or a province (2) or city (4) prefix"
            )
    if role != "admin" and not jurisdiction:
        raise RegistryError(f"role {role} needs --jurisdiction (a district, street or community)")
    if role == "officer" and any(len(code) < 9 for code in jurisdiction):
        raise RegistryError(
            "an officer's jurisdiction is a community (12 digits) or a beat of communities "
            "or streets (repeat --jurisdiction), not a whole district"
        )


def parse_duration(value: str) -> dt.timedelta:
    """``30d``, ``12h``, ``90m`` or ``2w``."""
    match = re.fullmatch(r"(\d+)([mhdw])", value.strip())
    if not match or int(match[1]) == 0:
        raise RegistryError(f"--expires {value!r}: use a number and m, h, d or w, e.g. 30d")
    unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[match[2]]
    return dt.timedelta(**{unit: int(match[1])})


# ---------------------------------------------------------------- accounts


def add_account(
    session: Session,
    name: str,
    role: str,
    jurisdiction: list[str],
    password: str | None = None,
) -> Account:
    check_account(name, role, jurisdiction)
    if session.get(Account, name) is not None:
        raise RegistryError(f"account {name} exists")
    account = Account(
        name=name,
        role=role,
        jurisdiction=sorted(set(jurisdiction)),
        password_hash=hash_password(password) if password else None,
    )
    session.add(account)
    session.flush()
    return account


def get_account(session: Session, name: str) -> Account:
    account = session.get(Account, name)
    if account is None:
        raise RegistryError(f"no account {name}")
    return account


def set_password(session: Session, name: str, password: str) -> None:
    get_account(session, name).password_hash = hash_password(password)


def disable_account(session: Session, name: str) -> None:
    """Disabling is immediate for new requests: every token and session stops working."""
    account = get_account(session, name)
    account.disabled_at = account.disabled_at or dt.datetime.now(dt.UTC)
    revoke_all(session, name)


def list_accounts(session: Session) -> list[Account]:
    return list(session.scalars(select(Account).order_by(Account.name)))


# ---------------------------------------------------------------- tokens and sessions


def create_token(session: Session, name: str, expires: dt.timedelta | None = None) -> str:
    """A new bearer token for ``name``: returned once, stored only as a digest."""
    account = get_account(session, name)
    if account.disabled_at is not None:
        raise RegistryError(f"account {name} is disabled")
    secret = new_secret(TOKEN_PREFIX)
    session.execute(
        insert(ApiToken).values(
            account=name,
            kind="token",
            digest=digest(secret),
            expires_at=func.now() + expires if expires else None,
        )
    )
    return secret


def create_web_session(session: Session, name: str, lifetime: dt.timedelta) -> tuple[str, str]:
    """A sign-in session: (cookie secret, CSRF token the page must send back)."""
    secret = new_secret(SESSION_PREFIX)
    csrf = secrets.token_urlsafe(24)
    session.execute(
        insert(ApiToken).values(
            account=name,
            kind="session",
            digest=digest(secret),
            csrf=csrf,
            expires_at=func.now() + lifetime,
        )
    )
    return secret, csrf


def revoke(session: Session, token_id: int) -> None:
    done = session.execute(
        update(ApiToken)
        .where(ApiToken.id == token_id, ApiToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    if done.rowcount == 0:  # type: ignore[attr-defined]
        raise RegistryError(f"no active token {token_id}")


def revoke_secret(session: Session, secret: str) -> bool:
    """Revoke by the secret itself (sign-out); False if it was not active."""
    done = session.execute(
        update(ApiToken)
        .where(ApiToken.digest == digest(secret), ApiToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return bool(done.rowcount)  # type: ignore[attr-defined]


def revoke_all(session: Session, name: str) -> int:
    done = session.execute(
        update(ApiToken)
        .where(ApiToken.account == name, ApiToken.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
    return int(done.rowcount)  # type: ignore[attr-defined]


def list_tokens(session: Session, name: str | None = None) -> list[ApiToken]:
    query = select(ApiToken).order_by(ApiToken.id)
    if name:
        query = query.where(ApiToken.account == name)
    return list(session.scalars(query))


def principal_query(secret_digest: bytes) -> Select:
    """The account behind an active token or session: one indexed look-up."""
    return (
        select(Account.name, Account.role, Account.jurisdiction, ApiToken.kind, ApiToken.csrf)
        .join(ApiToken, ApiToken.account == Account.name)
        .where(
            ApiToken.digest == secret_digest,
            ApiToken.revoked_at.is_(None),
            or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > func.now()),
            Account.disabled_at.is_(None),
        )
    )


def principal_from(account: Any) -> Principal:
    """The principal of an account (a row or an :class:`Account` with name, role and
    jurisdiction)."""
    return Principal(account.name, account.role, tuple(account.jurisdiction))


# ---------------------------------------------------------------- the database side

SET_CONTEXT = text(
    "SELECT set_config('registry.user', :user, true), "
    "set_config('registry.role', :role, true), "
    "set_config('registry.scope', :scope, true)"
)


def context_params(principal: Principal) -> dict[str, str]:
    """The values of :data:`SET_CONTEXT`: who is asking, for the rest of the transaction."""
    return {"user": principal.name, "role": principal.role, "scope": principal.scope}
