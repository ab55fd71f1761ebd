"""``registry checks``: run the data-quality catalogue (registry/checks.py) and print the
findings as a table, JSON, CSV or GeoJSON; ``--list`` prints the catalogue itself.

Runs as the database owner, so every check runs, those about residents included (they
print counts per building, never persons). Exit status 0 whenever the checks ran, with
or without findings.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from registry import checks
from registry.checks import findings_csv, findings_geojson, findings_json
from registry.cli_common import console, migrated_engine, reports_errors
from registry.db import transaction
from registry.rates import check_code_prefix
from registry.settings import RegistryError, Settings

FORMATS = ("table", "json", "csv", "geojson")


@reports_errors
def checks_command(
    code: Annotated[
        str | None,
        typer.Option(help="Only communities whose code starts with this (up to 12 digits)."),
    ] = None,
    check: Annotated[
        list[str] | None,
        typer.Option("--check", help="Run only this check (a catalogue code); repeatable."),
    ] = None,
    severity: Annotated[
        list[str] | None,
        typer.Option(help="Only checks of this severity (error, warning, info); repeatable."),
    ] = None,
    format: Annotated[str, typer.Option(help="table, json, csv or geojson.")] = "table",
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Residents active at this date (YYYY-MM-DD)."),
    ] = None,
    list_: Annotated[
        bool, typer.Option("--list", help="Print the catalogue of checks and exit.")
    ] = False,
    summary: Annotated[
        bool, typer.Option(help="Print counts of findings per community instead.")
    ] = False,
) -> None:
    """Data-quality findings per community (docs/quality-checks.md): live, so a finding is
    gone once the data is fixed."""
    if format not in FORMATS:
        raise RegistryError(f"--format {format!r}: choose one of {', '.join(FORMATS)}")
    chosen, _ = checks.select_checks(check, severity)
    if list_:
        print_catalogue(chosen, format)
        return
    try:
        check_code_prefix(code)
    except RegistryError:
        raise RegistryError(f"--code {code!r} is not a code prefix (up to 12 digits)") from None
    try:
        date = dt.date.fromisoformat(as_of) if as_of else dt.date.today()
    except ValueError:
        raise RegistryError(f"--as-of {as_of!r} is not a date (YYYY-MM-DD)") from None
    with transaction(migrated_engine(Settings())) as session:
        rows = checks.run_checks(session, chosen, code, date)
    if summary:
        print_summary(rows, format)
    elif format == "json":
        sys.stdout.write(json.dumps(findings_json(rows, date), ensure_ascii=False, indent=2) + "\n")
    elif format == "csv":
        sys.stdout.write(findings_csv(rows))
    elif format == "geojson":
        sys.stdout.write(json.dumps(findings_geojson(rows, date), ensure_ascii=False) + "\n")
    else:
        console.print(findings_table(rows, date))


def print_summary(rows: list[dict], format: str) -> None:
    """Findings per community (only communities with findings): total and per severity."""
    counts = [{"community_code": c, **n} for c, n in sorted(checks.summarize(rows).items())]
    fields = ["community_code", *checks.SUMMARY_FIELDS]
    if format == "csv":
        sys.stdout.write(checks.table_csv(counts, fields))
    elif format != "table":
        sys.stdout.write(json.dumps(counts, ensure_ascii=False, indent=2) + "\n")
    else:
        table = Table(title="findings per community")
        for name in fields:
            table.add_column(name, justify="left" if name == "community_code" else "right")
        for row in counts:
            table.add_row(*(str(row[name]) for name in fields))
        console.print(table)


def findings_table(rows: list[dict], as_of: dt.date) -> Table:
    table = Table(title=f"{len(rows)} findings as of {as_of.isoformat()}")
    for name in ("severity", "check", "community", "target", "detail"):
        table.add_column(name)
    for row in rows:
        table.add_row(
            row["severity"],
            row["check"],
            row["community_code"],
            f"{row['target_kind']} {row['target_id']}",
            row["detail"],
        )
    return table


def print_catalogue(chosen: list[checks.Check], format: str) -> None:
    """The checks as a table, or (any other format) as a JSON array."""
    if format != "table":
        sys.stdout.write(catalogue_json(chosen) + "\n")
        return
    table = Table(title="quality checks (descriptions: --list --format json)")
    for name in ("code", "severity", "target", "title"):
        table.add_column(name, no_wrap=name == "code")
    for c in chosen:
        table.add_row(c.code, c.severity, c.target_kind, c.title)
    console.print(table)


def catalogue_json(chosen: list[checks.Check]) -> str:
    return json.dumps([checks.describe(c) for c in chosen], ensure_ascii=False, indent=2)
