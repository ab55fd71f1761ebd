"""``registry history`` and ``registry changes``: what the register said, and when.

``history KIND KEY`` lists every version of one object (an investigation asks what the
register held at a given time); ``changes --after N`` prints the change feed as JSON
lines, for scripts that keep another system in step. Both run as the database owner,
like every CLI command: the API applies roles and jurisdictions.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from registry.changes import DEFAULT_LIMIT, changes_after
from registry.cli_common import console, migrated_engine, reports_errors
from registry.db import transaction
from registry.history import versions
from registry.models import VERSIONED
from registry.settings import RegistryError, Settings

SHOWN = ("valid_from", "valid_to", "recorded_at", "recorded_by", "superseded_at")


@reports_errors
def history_command(
    kind: Annotated[str, typer.Argument(help=f"One of {', '.join(VERSIONED)}.")],
    key: Annotated[str, typer.Argument(help="Its id (a building id, address code, uscc…).")],
    format: Annotated[str, typer.Option(help="table or json.")] = "table",
) -> None:
    """Every version of one object: its values, when each was valid, and when and by whom
    it was recorded and superseded (docs/history.md)."""
    if format not in ("table", "json"):
        raise RegistryError("--format must be table or json")
    with transaction(migrated_engine(Settings())) as session:
        rows = versions(session, kind, key)
    if not rows:
        raise RegistryError(f"no {kind} {key!r}, now or before")
    if format == "json":
        console.print_json(json.dumps(rows, default=str, ensure_ascii=False))
        return
    # one column per version, one row per field: how each field changed reads across
    names = [*SHOWN, *(n for n in rows[0] if n not in SHOWN and n != "superseded_by")]
    table = Table(title=f"{kind} {key}: {len(rows)} version{'s' if len(rows) > 1 else ''}")
    table.add_column("field")
    for number in range(1, len(rows) + 1):
        table.add_column(f"v{number}", overflow="fold")
    for name in names:
        table.add_row(name, *(short(row.get(name)) for row in rows))
    console.print(table)


def short(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict):  # a geometry
        return str(value.get("type", "geometry"))
    return str(value)


@reports_errors
def changes_command(
    after: Annotated[int, typer.Option(min=0, help="The last change number processed.")] = 0,
    limit: Annotated[int, typer.Option(min=1, help="Changes to print at most.")] = DEFAULT_LIMIT,
    entity: Annotated[
        list[str] | None, typer.Option(help="Keep these kinds only (repeat).")
    ] = None,
) -> None:
    """The change feed after a number, one JSON object per line, then a last line with
    ``next_after`` (docs/history.md)."""
    with transaction(migrated_engine(Settings())) as session:
        page = changes_after(session, after, limit, entity or None)
    for change in page.changes:
        print(json.dumps(change, default=str, ensure_ascii=False))
    print(json.dumps({"next_after": page.next_after, "latest": page.latest}))
