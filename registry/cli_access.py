"""``registry users``, ``registry token`` and ``registry audit``: who may use the API, and
what they did. Run by the database owner; the API itself can only add to the audit log."""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Annotated

import typer

from registry import audit, auth
from registry.cli_common import console, err, migrated_engine, reports_errors
from registry.db import transaction
from registry.settings import RegistryError, Settings

users_app = typer.Typer(help="Accounts of the API and web map: role and jurisdiction.")
token_app = typer.Typer(help="Bearer tokens of the API (shown once, stored as a digest).")

PASSWORD_ENV = "REGISTRY_NEW_PASSWORD"


def read_password(password: bool) -> str | None:
    """A new password from $REGISTRY_NEW_PASSWORD or a hidden prompt, never an argument
    (arguments show in the process list and the shell's history)."""
    if not password:
        return None
    value = os.environ.get(PASSWORD_ENV) or typer.prompt(
        "password", hide_input=True, confirmation_prompt=True
    )
    if len(value) < 10:
        raise RegistryError("a password needs at least 10 characters")
    return value


@users_app.command("add")
@reports_errors
def users_add(
    name: Annotated[str, typer.Argument(help="Account name (letters, digits, _ . @ -).")],
    role: Annotated[str, typer.Option(help="officer, station, analyst, gis or admin.")],
    jurisdiction: Annotated[
        list[str] | None,
        typer.Option(help="District, street or community code; repeat for several."),
    ] = None,
    password: Annotated[
        bool, typer.Option(help=f"Set a web sign-in password (prompted, or ${PASSWORD_ENV}).")
    ] = False,
) -> None:
    """Add an account. Codes are prefixes: a street code covers its communities."""
    secret = read_password(password)
    with transaction(migrated_engine(Settings())) as session:
        account = auth.add_account(session, name, role, list(jurisdiction or []), secret)
        console.print(
            f"added {account.name}: {account.role}, "
            f"jurisdiction {','.join(account.jurisdiction) or 'all'}",
            highlight=False,
        )


@users_app.command("list")
@reports_errors
def users_list() -> None:
    with transaction(migrated_engine(Settings())) as session:
        for a in auth.list_accounts(session):
            state = "disabled" if a.disabled_at else "active"
            console.print(
                f"{a.name}\t{a.role}\t{','.join(a.jurisdiction) or '*'}\t{state}\t"
                f"{'password' if a.password_hash else 'no password'}",
                highlight=False,
            )


@users_app.command("passwd")
@reports_errors
def users_passwd(name: Annotated[str, typer.Argument()]) -> None:
    """Set or change an account's web sign-in password."""
    secret = read_password(True)
    assert secret is not None
    with transaction(migrated_engine(Settings())) as session:
        auth.set_password(session, name, secret)
    console.print(f"password of {name} set")


@users_app.command("disable")
@reports_errors
def users_disable(name: Annotated[str, typer.Argument()]) -> None:
    """Disable an account and revoke all its tokens and sessions."""
    with transaction(migrated_engine(Settings())) as session:
        auth.disable_account(session, name)
    console.print(f"{name} disabled; its tokens and sessions are revoked")


@token_app.command("create")
@reports_errors
def token_create(
    name: Annotated[str, typer.Argument(help="The account the token acts as.")],
    expires: Annotated[
        str | None, typer.Option(help="Lifetime, e.g. 30d, 12h, 2w (default: no expiry).")
    ] = None,
) -> None:
    """Print a new bearer token once: only its digest is stored."""
    lifetime = auth.parse_duration(expires) if expires else None
    with transaction(migrated_engine(Settings())) as session:
        secret = auth.create_token(session, name, lifetime)
    err.print("the token is shown only now; send it as: Authorization: Bearer <token>")
    console.print(secret, highlight=False)


@token_app.command("list")
@reports_errors
def token_list(name: Annotated[str | None, typer.Argument()] = None) -> None:
    with transaction(migrated_engine(Settings())) as session:
        for t in auth.list_tokens(session, name):
            state = (
                "revoked"
                if t.revoked_at
                else "expired"
                if t.expires_at and t.expires_at <= dt.datetime.now(dt.UTC)
                else "active"
            )
            expiry = t.expires_at.isoformat(timespec="minutes") if t.expires_at else "never"
            console.print(
                f"{t.id}\t{t.account}\t{t.kind}\t{state}\texpires {expiry}", highlight=False
            )


@token_app.command("revoke")
@reports_errors
def token_revoke(
    token_id: Annotated[int | None, typer.Argument(help="Token id (see `token list`).")] = None,
    all_of: Annotated[
        str | None, typer.Option("--all-of", help="Revoke every token and session of this account.")
    ] = None,
) -> None:
    """Revoke one token, or all of an account's; the API stops accepting it within
    its credential cache time (REGISTRY_AUTH_CACHE_SECONDS, 5 s by default)."""
    if (token_id is None) == (all_of is None):
        raise RegistryError("name a token id or --all-of ACCOUNT")
    with transaction(migrated_engine(Settings())) as session:
        if token_id is not None:
            auth.revoke(session, token_id)
            console.print(f"token {token_id} revoked")
        else:
            count = auth.revoke_all(session, all_of or "")
            console.print(f"{count} tokens and sessions of {all_of} revoked")


@reports_errors
def audit_command(
    user: Annotated[str | None, typer.Option(help="Only this account.")] = None,
    since: Annotated[
        str | None, typer.Option(help="From this date or time (ISO 8601, e.g. 2026-11-01).")
    ] = None,
    action: Annotated[str | None, typer.Option(help="Only this action.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 1000,
    format: Annotated[str, typer.Option(help="table or json.")] = "table",
) -> None:
    """Read the audit log, newest first: who read personal data, searched, exported,
    signed in or failed to."""
    if format not in ("table", "json"):
        raise RegistryError("--format must be table or json")
    start = None
    if since:
        try:
            start = dt.datetime.fromisoformat(since)
        except ValueError:
            raise RegistryError(f"--since {since!r} is not an ISO date or time") from None
        if start.tzinfo is None:
            start = start.astimezone()
    with transaction(migrated_engine(Settings())) as session:
        rows = audit.read(session, user=user, since=start, action=action, limit=limit)
        records = [
            {
                "id": r.id,
                "at": r.at.isoformat(timespec="seconds"),
                "user": r.user_name,
                "role": r.role,
                "jurisdiction": r.jurisdiction,
                "client_ip": str(r.client_ip) if r.client_ip else None,
                "action": r.action,
                "targets": r.target_ids,
                "purpose": r.purpose,
                "detail": r.detail,
            }
            for r in rows
        ]
    if format == "json":
        console.print_json(json.dumps(records, ensure_ascii=False))
        return
    for r in records:
        targets = ",".join(r["targets"][:10]) + ("…" if len(r["targets"]) > 10 else "")
        console.print(
            f"{r['at']}\t{r['user']}\t{r['role'] or '-'}\t{r['client_ip'] or '-'}\t"
            f"{r['action']}\t{targets or '-'}\t{r['purpose'] or ''}",
            highlight=False,
            markup=False,
        )
