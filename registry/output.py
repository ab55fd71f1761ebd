"""Presenting load reports and rates: rich tables for people, JSON and CSV for machines."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from registry.idnumber import mask
from registry.rates import FIELDS, RATES

if TYPE_CHECKING:
    from registry.bundle.load import LoadReport

RATE_FORMATS = ("table", "json", "csv")
COUNT_COLUMNS = ("read", "inserted", "updated", "unchanged", "rejected")
RATE_TITLES = {
    "on_map_rate": "上图率 on map",
    "coverage_rate": "覆盖率 coverage",
    "labeling_rate": "标注率 labelled",
    "population_on_map_rate": "人口上图率 residents",
    "org_on_map_rate": "单位上图率 organizations",
}


def print_load_report(
    report: LoadReport, out: Console, err: Console, max_problems: int | None = None
) -> None:
    """Counts per file, then every error and the warnings (all, unless capped)."""
    bundle = report.bundle
    verb = "loaded" if report.written else "refused"
    out.print(f"bundle {bundle.name!r} ({bundle.crs}) {verb}", highlight=False)
    if report.counts:
        table = Table("file", *COUNT_COLUMNS)
        for plan_layer, counts in report.counts.items():
            table.add_row(
                report.validation.plans[plan_layer].file.label,
                *(str(counts[c]) for c in COUNT_COLUMNS),
            )
        out.print(table)
    print_problems("warning", report.warnings, err, max_problems)
    print_problems("error", report.errors, err, None)
    if report.errors and not report.written:
        err.print(
            f"{len(report.errors)} errors: nothing was written. Fix them, or load with "
            "--partial to write the valid rows.",
            highlight=False,
        )


def print_problems(kind: str, problems: list, err: Console, limit: int | None) -> None:
    shown = problems if limit is None else problems[:limit]
    colour = "red" if kind == "error" else "yellow"
    for problem in shown:
        err.print(f"[{colour}]{kind}:[/{colour}] {problem}", highlight=False)
    if len(problems) > len(shown):
        err.print(f"... and {len(problems) - len(shown)} more {kind}s", highlight=False)


def write_rejects(report: LoadReport, path: Path) -> int:
    """Refused rows with their reasons, as CSV; identity numbers masked."""
    from registry.bundle.validate import rejected_rows

    count = 0
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["file", "row", "field", "reason", "record"])
        for layer_file, record, problems in rejected_rows(report.validation):
            values = dict(record.values)
            if isinstance(values.get("id_number"), str):
                values["id_number"] = mask(values["id_number"])
            fields = "; ".join(p.field or "" for p in problems)
            reasons = "; ".join(p.reason for p in problems)
            writer.writerow(
                [
                    layer_file.label,
                    record.number,
                    fields,
                    reasons,
                    json.dumps(values, ensure_ascii=False, default=str),
                ]
            )
            count += 1
    return count


def print_rates(rows: list[dict[str, Any]], fmt: str, out: Console) -> None:
    if fmt == "json":
        sys.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2) + "\n")
    elif fmt == "csv":
        sys.stdout.write(rates_csv(rows))
    else:
        out.print(rates_table(rows))


def rates_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def rates_table(rows: list[dict[str, Any]]) -> Table:
    level = rows[0]["level"] if rows else "community"
    table = Table(title=f"rates by {level}")
    table.add_column("code", no_wrap=True)
    table.add_column("name")
    for title in RATE_TITLES.values():
        table.add_column(title, justify="right")
    for row in rows:
        table.add_row(
            row["code"] or "",
            row["name"] or "",
            *(format_rate(row, rate) for rate in RATE_TITLES),
        )
    return table


def format_rate(row: dict[str, Any], rate: str) -> str:
    """``96.2% (25/26)``, or ``— (0/0)`` when the denominator is 0."""
    numerator, denominator = RATES[rate]
    value = row[rate]
    shown = "—" if value is None else f"{value:.1%}"
    return f"{shown} ({row[numerator]}/{row[denominator]})"


def print_reviews(items: list[dict[str, Any]], fmt: str, out: Console) -> None:
    """Review items as a table (best candidate shown) or as JSON."""
    if fmt == "json":
        sys.stdout.write(json.dumps(items, ensure_ascii=False, indent=2) + "\n")
        return
    table = Table("id", "status", "input", "match", "best candidate", "candidates", "resolved")
    for item in items:
        best = item["candidates"][0] if item["candidates"] else None
        shown = f"{best['label']} ({best['room_id'] or best['address_code']})" if best else "—"
        resolved = (
            f"{item['resolved_by']} {item['resolved_at'][:16]}" if item["resolved_by"] else ""
        )
        table.add_row(
            str(item["id"]),
            item["status"],
            item["input"],
            item["match_status"],
            shown,
            str(len(item["candidates"])),
            resolved,
        )
    out.print(table)
