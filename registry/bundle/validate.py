"""Checks across rows: duplicate keys in a file and references that must resolve.

A reference resolves when the row it names is accepted in this bundle or already held by
the registry, so a field bundle of buildings and residents can be loaded on top of an
earlier bundle of communities and reference footprints. A row that refers to a rejected
row is rejected too, which keeps ``--partial`` loads consistent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from registry.bundle.layers import LAYERS, check_columns, check_row
from registry.bundle.problems import Problem
from registry.bundle.read import LayerFile, Record
from registry.idnumber import mask

LOAD_ORDER = ("communities", "footprints", "buildings", "addresses", "rooms", "residents")

# (layer, field, layer it refers to)
REFERENCES: tuple[tuple[str, str, str], ...] = (
    ("buildings", "community_code", "communities"),
    ("addresses", "community_code", "communities"),
    ("addresses", "building_id", "buildings"),
    ("rooms", "building_id", "buildings"),
    ("residents", "community_code", "communities"),
    ("residents", "room_id", "rooms"),
)

ExistingKeys = Callable[[str, set[str]], set[str]]
"""Given a layer and keys, returns those the registry already holds."""


@dataclass
class LayerPlan:
    """The outcome of validating one file: rows to write and rows refused."""

    file: LayerFile
    accepted: list[tuple[Record, dict[str, Any]]] = field(default_factory=list)
    rejected: list[Record] = field(default_factory=list)
    rejected_keys: dict[str, int] = field(default_factory=dict)

    @property
    def accepted_keys(self) -> set[str]:
        key = LAYERS[self.file.layer].key
        return {values[key] for _, values in self.accepted}


@dataclass
class Validation:
    plans: dict[str, LayerPlan]
    problems: list[Problem]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


def validate(files: dict[str, LayerFile], existing: ExistingKeys) -> Validation:
    """Check every row of every file, in load order, against the rows before it."""
    problems: list[Problem] = []
    plans: dict[str, LayerPlan] = {}
    for layer in LOAD_ORDER:
        if layer not in files:
            continue
        layer_file = files[layer]
        problems.extend(layer_file.warnings)
        column_problems = check_columns(layer_file)
        problems.extend(column_problems)
        plan = LayerPlan(layer_file)
        if any(p.severity == "error" for p in column_problems):
            plan.rejected = list(layer_file.records)
        else:
            check_rows(plan, problems)
            check_references(plan, plans, existing, problems)
        plans[layer] = plan
    return Validation(plans, problems)


def check_rows(plan: LayerPlan, problems: list[Problem]) -> None:
    """Per-row checks, then duplicate keys (the first occurrence wins)."""
    layer_file = plan.file
    key_field = LAYERS[layer_file.layer].key
    first_seen: dict[Any, int] = {}
    residents = ResidentChecks(layer_file, problems) if layer_file.layer == "residents" else None
    for record in layer_file.records:
        values = check_row(layer_file, record, problems)
        if values is not None:
            key = (values[key_field], values["moved_in"]) if residents else values[key_field]
            if key in first_seen:
                problems.append(
                    row_problem(
                        layer_file,
                        record,
                        key_field,
                        f"duplicate {describe_key(key_field, key)} "
                        f"(first at {layer_file.unit} {first_seen[key]})",
                    )
                )
                values = None
            elif residents and not residents.accept(record, values):
                values = None
            else:
                first_seen[key] = record.number
        if values is None:
            reject(plan, record, key_field)
        else:
            plan.accepted.append((record, values))


class ResidentChecks:
    """One identity number is one person: one name, and at most one open residence."""

    def __init__(self, layer_file: LayerFile, problems: list[Problem]) -> None:
        self.file = layer_file
        self.problems = problems
        self.names: dict[str, tuple[str, int]] = {}
        self.open_rows: dict[str, int] = {}

    def accept(self, record: Record, values: dict[str, Any]) -> bool:
        id_number, name = values["id_number"], values["name"]
        known = self.names.setdefault(id_number, (name, record.number))
        if known[0] != name:
            self.problems.append(
                row_problem(
                    self.file,
                    record,
                    "name",
                    f"the same identity number has name {known[0]!r} at row {known[1]}",
                )
            )
            return False
        if values["moved_out"] is None:
            if id_number in self.open_rows:
                self.problems.append(
                    row_problem(
                        self.file,
                        record,
                        "moved_out",
                        "the same identity number already has a residence with no moved_out "
                        f"at row {self.open_rows[id_number]}",
                    )
                )
                return False
            self.open_rows[id_number] = record.number
        return True


def check_references(
    plan: LayerPlan,
    plans: dict[str, LayerPlan],
    existing: ExistingKeys,
    problems: list[Problem],
) -> None:
    """Reject accepted rows whose references name nothing in the bundle or the registry."""
    layer = plan.file.layer
    key_field = LAYERS[layer].key
    for ref_layer, ref_field, target in REFERENCES:
        if ref_layer != layer or not plan.accepted:
            continue
        target_plan = plans.get(target)
        in_bundle = target_plan.accepted_keys if target_plan else set()
        wanted = {v[ref_field] for _, v in plan.accepted if v[ref_field] is not None}
        known = in_bundle | existing(target, wanted - in_bundle)
        kept = []
        for record, values in plan.accepted:
            ref = values[ref_field]
            if ref is None or ref in known:
                kept.append((record, values))
                continue
            rejected_at = target_plan.rejected_keys.get(ref) if target_plan else None
            if rejected_at is not None:
                where = f"{target_plan.file.label} {target_plan.file.unit} {rejected_at}"
                reason = f"{ref!r} refers to a rejected row ({where})"
            else:
                reason = f"{ref!r} is not in {target} of this bundle or the registry"
            problems.append(row_problem(plan.file, record, ref_field, reason))
            reject(plan, record, key_field, values)
        plan.accepted = kept


def reject(
    plan: LayerPlan, record: Record, key_field: str, values: dict[str, Any] | None = None
) -> None:
    plan.rejected.append(record)
    key = (values or {}).get(key_field) or record.values.get(key_field)
    if key is not None:
        plan.rejected_keys.setdefault(str(key), record.number)


def row_problem(layer_file: LayerFile, record: Record, field_name: str, reason: str) -> Problem:
    return Problem(layer_file.label, record.number, field_name, reason, "error", layer_file.unit)


def describe_key(key_field: str, key: Any) -> str:
    if isinstance(key, tuple):
        id_number, moved_in = key
        return f"identity number {mask(id_number)} with moved_in {moved_in or '(empty)'}"
    return f"{key_field} {key!r}"


def rejected_rows(validation: Validation) -> Iterable[tuple[LayerFile, Record, list[Problem]]]:
    """Every refused record with the errors that refused it, for the rejects file."""
    by_place: dict[tuple[str, int | None], list[Problem]] = {}
    for problem in validation.errors:
        by_place.setdefault((problem.file, problem.row), []).append(problem)
    for plan in validation.plans.values():
        file_errors = by_place.get((plan.file.label, None), [])
        for record in plan.rejected:
            yield (
                plan.file,
                record,
                file_errors + by_place.get((plan.file.label, record.number), []),
            )
