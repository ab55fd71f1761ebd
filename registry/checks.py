"""The catalogue of data-quality checks: what each finds, how badly, and how to fix it.

Every check has a stable **code** (lower snake_case naming the problem, e.g.
``door_plate_far``: never renamed, never reused for another definition), a
**severity** (``error``: a fact is wrong or contradicts another; ``warning``: probably
wrong, or it keeps a rate from being measured; ``info``: worth a look), and one packaged
query, ``registry/sql/checks/<code>.sql``, with bound parameters only (``:as_of``).

A check's query returns ``community_code, target_id, detail, geom`` (EPSG:4490, or null);
:func:`run_checks` adds the code, severity and target kind, filters by community prefix
and jurisdiction, and orders the findings (errors first). Findings are computed live from
the data: fix the data and the finding is gone on the next run. Persons never appear:
checks about residents count them per building (and :attr:`Check.persons` marks them, so
the API runs them only for roles that may read residents). See docs/quality-checks.md.

>>> [check.code for check in CATALOGUE][:2]
['building_outside_community', 'residents_in_demolished']
>>> check_codes(["door_plate_far"])
('door_plate_far',)
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, Literal

import shapely
from sqlalchemy import String, column, func, select, text
from sqlalchemy.orm import Session

from registry.address.keys import building_key, compound_key, house_number_key, road_key
from registry.rates import check_code_prefix, within
from registry.settings import RegistryError

Severity = Literal["error", "warning", "info"]
TargetKind = Literal["address", "building", "room", "community"]
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")
FIELDS = ("check", "severity", "community_code", "target_kind", "target_id", "detail")
Row = dict[str, Any]


@dataclass(frozen=True)
class Check:
    """One coded check of the catalogue."""

    code: str
    severity: Severity
    target_kind: TargetKind
    title: str
    description: str  # what it finds and why that matters
    fix: str  # how to make the finding go away
    persons: bool = False  # reads residents: only for roles that may see them
    # what the query returns besides community_code, target_id and geom
    columns: tuple[str, ...] = ("detail",)

    @property
    def sql_file(self) -> str:
        return f"checks/{self.code}.sql"

    def sql(self) -> str:
        return files("registry").joinpath("sql", self.sql_file).read_text(encoding="utf-8")


CATALOGUE: tuple[Check, ...] = (
    Check(
        "building_outside_community",
        "error",
        "building",
        "Building outline outside its community",
        "The point-on-surface of the building's outline is not inside the boundary of the "
        "community it is registered in: the outline or the community code is wrong, and "
        "coverage is credited to the wrong community.",
        "Move or redraw the outline, or correct the building's community code.",
    ),
    Check(
        "residents_in_demolished",
        "error",
        "building",
        "Residents in a demolished building",
        "Active residents (moved out empty or after the as-of date) live in rooms of a "
        "demolished building: they are counted but cannot be placed on the map.",
        "Record the residents' move-out or their new room, or correct the building's status.",
        persons=True,
    ),
    Check(
        "duplicate_addresses",
        "error",
        "address",
        "Duplicate standard addresses",
        "Two or more active addresses of one community have the same road, house number, "
        "compound and building number after normalization (registry/address/keys.py): a "
        "standard address must be unique, or matching cannot choose between them.",
        "Retire all but one of the codes (status retired) and move what names them to it.",
        columns=("road", "house_number", "compound", "building_no"),
    ),
    Check(
        "buildings_overlap",
        "warning",
        "building",
        "Two buildings overlap by more than half",
        "Two buildings that count (not demolished) with outlines overlap by more than 50% "
        "of the smaller outline's area: usually one building registered twice, which "
        "inflates the building counts.",
        "Retire the duplicate (or split/merge them), or redraw the outline that is wrong.",
    ),
    Check(
        "door_plate_far",
        "warning",
        "address",
        "Door plate far from its building",
        "An active address's door plate is more than 30 m (on the spheroid; 0 inside) from "
        "the outline of the building it names — the labelling rate's distance, so the "
        "building does not count as labelled by it.",
        "Move the door plate to the building's entrance, or correct the building it names.",
    ),
    Check(
        "room_above_floors",
        "warning",
        "room",
        "Room above the building's floors",
        "A room's floor is above its building's floor count (both known): the floor, the "
        "room's building or the floor count is wrong.",
        "Correct the room's floor or building, or the building's floor count.",
    ),
    Check(
        "resident_community_mismatch",
        "warning",
        "building",
        "Residents registered in another community",
        "Active residents are registered in a community other than that of their room's "
        "building, so they count towards one community but live in another.",
        "Correct the residents' community (or room), or the building's community.",
        persons=True,
    ),
    Check(
        "community_without_boundary",
        "warning",
        "community",
        "Community without a boundary",
        "The community has no boundary: reference footprints cannot be assigned to it (its "
        "coverage rate stays null) and its buildings cannot be checked against it.",
        "Load the community's boundary polygon.",
    ),
)
BY_CODE = {check.code: check for check in CATALOGUE}
SEVERITY_RANK = {severity: rank for rank, severity in enumerate(SEVERITIES)}


def check_codes(codes: Iterable[str] | None) -> tuple[str, ...]:
    """The catalogue codes asked for (all when none), or a RegistryError naming the first
    unknown one."""
    wanted = tuple(dict.fromkeys(codes or ()))
    for code in wanted:
        if code not in BY_CODE:
            raise RegistryError(f"unknown check {code!r}: choose from {', '.join(sorted(BY_CODE))}")
    return wanted or tuple(BY_CODE)


def check_severities(severities: Iterable[str] | None) -> tuple[Severity, ...]:
    wanted = tuple(dict.fromkeys(severities or ()))
    for severity in wanted:
        if severity not in SEVERITIES:
            raise RegistryError(
                f"unknown severity {severity!r}: choose from {', '.join(SEVERITIES)}"
            )
    return wanted or SEVERITIES  # type: ignore[return-value]


def select_checks(
    codes: Iterable[str] | None = None,
    severities: Iterable[str] | None = None,
    sees_persons: bool = True,
) -> tuple[list[Check], list[Check]]:
    """The checks to run and those left out because the caller may not read residents."""
    wanted, levels = check_codes(codes), check_severities(severities)
    chosen = [c for c in CATALOGUE if c.code in wanted and c.severity in levels]
    return [c for c in chosen if sees_persons or not c.persons], [
        c for c in chosen if c.persons and not sees_persons
    ]


def run_checks(
    session: Session,
    checks: Sequence[Check] | None = None,
    code: str | None = None,
    as_of: dt.date | None = None,
    scope: Sequence[str] | None = None,
) -> list[Row]:
    """The findings of ``checks`` (default: the whole catalogue) as dicts of
    :data:`FIELDS` plus ``geom`` (WKB in EPSG:4490, or None), errors first, then by check,
    community and target. ``code`` keeps the communities whose code starts with it and
    ``scope`` those under any of its prefixes (a caller's jurisdiction; None: all)."""
    check_code_prefix(code)
    params = {"as_of": as_of or dt.date.today()}
    rows: list[Row] = []
    for check in CATALOGUE if checks is None else checks:
        found = POST.get(check.code, _as_is)(_query(session, check, code, scope, params))
        rows += [
            {
                "check": check.code,
                "severity": check.severity,
                "community_code": row["community_code"],
                "target_kind": check.target_kind,
                "target_id": row["target_id"],
                "detail": row["detail"],
                "geom": row["geom"],
            }
            for row in found
        ]
    rows.sort(
        key=lambda r: (SEVERITY_RANK[r["severity"]], r["check"], r["community_code"],
                       r["target_id"], r["detail"])
    )  # fmt: skip
    return rows


def _query(
    session: Session,
    check: Check,
    code: str | None,
    scope: Sequence[str] | None,
    params: dict[str, Any],
) -> list[Row]:
    """Run the check's packaged query with the community filters around it."""
    names = ("community_code", "target_id", *check.columns)
    found = (
        text(check.sql())
        .columns(*(column(n, String) for n in names), column("geom"))
        .subquery("found")
    )
    query = select(*(found.c[n] for n in names), func.ST_AsBinary(found.c.geom).label("geom"))
    if code:
        query = query.where(found.c.community_code.startswith(code, autoescape=True))
    if scope is not None:
        query = query.where(within(found.c.community_code, scope))
    result = session.execute(query, params)
    return [{**row._mapping, "geom": _bytes(row.geom)} for row in result]


def _bytes(value: Any) -> bytes | None:
    return None if value is None else bytes(value)


def _as_is(rows: list[Row]) -> list[Row]:
    return rows


def address_key(row: Row) -> tuple[Any, ...]:
    """What makes a standard address the same as another in its community: the
    normalized road, house number, compound and building number."""
    return (
        row["community_code"],
        road_key(row["road"]),
        house_number_key(row["house_number"]),
        compound_key(row["compound"]),
        building_key(row["building_no"]),
    )


def duplicate_groups(rows: list[Row]) -> list[Row]:
    """One finding per group of two or more addresses with the same :func:`address_key`,
    on the smallest code, listing the others; the geometry gathers their door plates."""
    groups: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        groups.setdefault(address_key(row), []).append(row)
    findings = []
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda r: r["target_id"])
        first = members[0]
        label = "".join(
            part or "" for part in (first["road"], first["house_number"], first["compound"],
                                    first["building_no"])
        )  # fmt: skip
        plates = [shapely.from_wkb(m["geom"]) for m in members if m["geom"] is not None]
        findings.append(
            {
                "community_code": first["community_code"],
                "target_id": first["target_id"],
                "detail": f"{len(members)} addresses {label}: "
                + ", ".join(m["target_id"] for m in members),
                "geom": shapely.to_wkb(shapely.multipoints(plates)) if plates else None,
            }
        )
    return findings


POST: dict[str, Callable[[list[Row]], list[Row]]] = {"duplicate_addresses": duplicate_groups}
"""Checks whose query returns candidates that Python reduces to findings."""


SUMMARY_FIELDS = ("findings", *(f"findings_{s}" for s in SEVERITIES))
LEVEL_PREFIX = {"community": 12, "street": 9, "district": 6, "city": 0}
"""How many digits of a community code name its street, district (the codes' check
constraints guarantee it) or city (one row: all)."""


def empty_summary() -> dict[str, int]:
    return dict.fromkeys(SUMMARY_FIELDS, 0)


def summarize(rows: Iterable[Row], level: str = "community") -> dict[str, dict[str, int]]:
    """Counts of findings, total and per severity, per community (or the street or
    district code it is in; for ``city`` under the key ``""``)."""
    digits = LEVEL_PREFIX[level]
    out: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = out.setdefault(row["community_code"][:digits], empty_summary())
        counts["findings"] += 1
        counts[f"findings_{row['severity']}"] += 1
    return out


def with_finding_counts(
    session: Session,
    rates_rows: list[Row],
    level: str,
    code: str | None,
    as_of: dt.date,
    scope: Sequence[str] | None,
    chosen: Sequence[Check] | None = None,
) -> list[Row]:
    """Rates rows (registry/rates.py) with :data:`SUMMARY_FIELDS` added: the findings of
    ``chosen`` (default: all) in each row's community, street, district or city."""
    counts = summarize(run_checks(session, chosen, code, as_of, scope), level)
    digits = LEVEL_PREFIX[level]
    return [
        {**row, **counts.get((row["code"] or "")[:digits] if digits else "", empty_summary())}
        for row in rates_rows
    ]


def table_csv(rows: list[Row], fields: Sequence[str]) -> str:
    """Rows as CSV with the columns ``fields`` (e.g. rates with finding counts)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


# ---------------------------------------------------------------- presenting findings


def describe(check: Check) -> dict[str, Any]:
    """A catalogue entry as JSON-ready fields."""
    return {
        "code": check.code,
        "severity": check.severity,
        "target_kind": check.target_kind,
        "title": check.title,
        "description": check.description,
        "fix": check.fix,
        "persons": check.persons,
        "sql": f"registry/sql/{check.sql_file}",
    }


def plain(row: Row) -> dict[str, Any]:
    """A finding without its geometry."""
    return {name: row[name] for name in FIELDS}


def findings_json(rows: list[Row], as_of: dt.date, **extra: Any) -> dict[str, Any]:
    """``{"as_of", **extra, "findings": [...]}``, the findings without geometry."""
    return {"as_of": as_of.isoformat(), **extra, "findings": [plain(r) for r in rows]}


def findings_geojson(rows: list[Row], as_of: dt.date, **extra: Any) -> dict[str, Any]:
    """A GeoJSON FeatureCollection (RFC 7946: longitude, latitude, CGCS2000 taken as
    WGS84, a zero shift); a finding without geometry has ``"geometry": null``."""
    features = [
        {
            "type": "Feature",
            "geometry": None
            if r["geom"] is None
            else json.loads(shapely.to_geojson(shapely.from_wkb(r["geom"]))),
            "properties": plain(r),
        }
        for r in rows
    ]
    return {"type": "FeatureCollection", "as_of": as_of.isoformat(), **extra,
            "features": features}  # fmt: skip


def findings_csv(rows: list[Row]) -> str:
    """CSV of :data:`FIELDS` and the geometry as WKT (empty when there is none)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*FIELDS, "wkt"])
    for r in rows:
        wkt = "" if r["geom"] is None else shapely.from_wkb(r["geom"]).wkt
        writer.writerow([*(r[name] for name in FIELDS), wkt])
    return buffer.getvalue()


__all__ = [
    "BY_CODE",
    "CATALOGUE",
    "FIELDS",
    "SEVERITIES",
    "SUMMARY_FIELDS",
    "Check",
    "check_codes",
    "check_severities",
    "describe",
    "findings_csv",
    "findings_geojson",
    "findings_json",
    "run_checks",
    "select_checks",
    "summarize",
    "table_csv",
    "with_finding_counts",
]
