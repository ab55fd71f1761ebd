"""Checks across rows: duplicate keys in a file and references that must resolve.

A reference resolves when the row it names is accepted in this bundle or already held by
the registry, so a field bundle of buildings and residents can be loaded on top of an
earlier bundle of communities and reference footprints. A row that refers to a rejected
row is rejected too, which keeps ``--partial`` loads consistent.

Rows are checked one at a time as they stream past (:class:`LayerCheck`), so a layer of
a million rows is never held: each row is decided as soon as it is read, against the
rows before it and the layers before it. Only a row whose reference is not in the
bundle waits, for one batched look-up in the registry. Problems come out in the order a
whole-file check would give: each row's own, in row order, then the references.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from registry.bundle.layers import LAYERS, VALUES, check_row, fast_check
from registry.bundle.problems import Problem
from registry.bundle.read import CsvRow, LayerFile, Record, csv_record
from registry.idnumber import mask

LOAD_ORDER = (
    "communities",
    "footprints",
    "buildings",
    "addresses",
    "rooms",
    "residents",
    "organizations",
    "employees",
)

# (layer, field, layer it refers to)
REFERENCES: tuple[tuple[str, str, str], ...] = (
    ("buildings", "community_code", "communities"),
    ("addresses", "community_code", "communities"),
    ("addresses", "building_id", "buildings"),
    ("rooms", "building_id", "buildings"),
    ("residents", "community_code", "communities"),
    ("residents", "room_id", "rooms"),
    ("organizations", "community_code", "communities"),
    ("organizations", "room_id", "rooms"),
    ("organizations", "building_id", "buildings"),
    ("employees", "uscc", "organizations"),
)
REFERRED = frozenset(target for _, _, target in REFERENCES)
LOOKUP_BATCH = 20_000  # rows held back for a registry look-up before one is made

ExistingKeys = Callable[[str, set[str]], set[str]]
"""Given a layer and keys, returns those the registry already holds."""

Source = Record | CsvRow


@dataclass
class LayerPlan:
    """The outcome of validating one file: how many rows were read and accepted, the
    keys accepted (for the layers that refer to them) and the rows refused."""

    file: LayerFile
    read: int = 0
    accepted: int = 0
    accepted_keys: set[str] = field(default_factory=set)
    rejected: list[Record] = field(default_factory=list)
    rejected_keys: dict[str, int] = field(default_factory=dict)
    persons: ResidentChecks | None = None  # residents': who has which name, for employees


@dataclass
class Validation:
    plans: dict[str, LayerPlan]
    problems: list[Problem]
    _checked: int = 0  # problems before this index hold no error
    _failed: bool = False

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def failed(self) -> bool:
        """Whether any error has been found yet; cheap to ask after every row."""
        if not self._failed and self._checked < len(self.problems):
            new = self.problems[self._checked :]
            self._failed = any(p.severity == "error" for p in new)
            self._checked = len(self.problems)
        return self._failed


class LayerCheck:
    """Checks one layer's rows one at a time, against the layers checked before it.

    :meth:`check` gives the values of a row accepted there and then (a tuple in
    :data:`registry.bundle.layers.VALUES` order; residents' end with the person's
    index, see :class:`ResidentChecks`). :meth:`resolve` looks up the references the
    bundle could not answer and gives the rows it accepts; :meth:`finish` does that for
    the last ones and reports the references that failed.
    """

    def __init__(
        self,
        plan: LayerPlan,
        plans: dict[str, LayerPlan],
        problems: list[Problem],
        existing: ExistingKeys,
    ) -> None:
        layer_file = plan.file
        layer = layer_file.layer
        names = VALUES[layer]
        self.plan, self.problems, self.existing = plan, problems, existing
        self.key_field = LAYERS[layer].key
        self.key_index = names.index(self.key_field)
        self.keeps_keys = layer in REFERRED
        self.refs = [
            (names.index(ref_field), ref_field, target, plans.get(target))
            for ref_layer, ref_field, target in REFERENCES
            if ref_layer == layer
        ]
        self.in_bundle = [p.accepted_keys if p else set() for _, _, _, p in self.refs]
        self.first_seen: dict[Any, int] = {}
        self.residents = ResidentChecks(layer_file, problems) if layer == "residents" else None
        plan.persons = self.residents
        residents_plan = plans.get("residents")
        self.employees = (
            EmployeeChecks(layer_file, problems, residents_plan.persons if residents_plan else None)
            if layer == "employees"
            else None
        )
        self.fast = fast_check(layer, layer_file.header or ()) if layer_file.streamed else None
        self.held: list[tuple[Source, tuple]] = []
        self.failed_refs: list[tuple[int, int, Source, tuple, str]] = []

    def record(self, source: Source) -> Record | None:
        if isinstance(source, Record):
            return source
        return csv_record(self.plan.file.header or (), source)

    def check(self, source: Source) -> tuple | None:
        """The row's values if it is accepted now; None if it is refused, blank, or held
        back until its references are looked up in the registry."""
        values = self.fast(source.cells) if self.fast and isinstance(source, CsvRow) else None
        if values is None:
            record = self.record(source)
            if record is None:
                return None  # a blank row: not even read
            source = record
            values = check_row(self.plan.file, record, self.problems)
        self.plan.read += 1
        if values is None:
            self.reject(source)
            return None
        values = self.unique(source, values)
        if values is None:
            self.reject(source)
            return None
        for (index, *_), known in zip(self.refs, self.in_bundle, strict=True):
            ref = values[index]
            if ref is not None and ref not in known:
                self.held.append((source, values))
                return None
        return self.accept(values)

    def unique(self, source: Source, values: tuple) -> tuple | None:
        """Duplicate keys (the first occurrence wins) and, for residents, one name and
        one open residence per person; the values, with the person's index for residents."""
        number = source.number
        key = values[self.key_index]
        if self.employees is not None:
            return values if self.employees.accept(number, values) else None
        if self.residents is None:
            first = self.first_seen.setdefault(key, number)
            if first == number:
                return values
            self.duplicate(number, key, first)
            return None
        residents = self.residents
        moved_in = values[6]
        first = residents.seen_at(key, moved_in)
        if first is not None:
            self.duplicate(number, (key, moved_in), first)
            return None
        index = residents.accept(number, values)
        if index is None:
            return None
        residents.remember(index, moved_in, number)
        return (*values, index)

    def duplicate(self, number: int, key: Any, first: int) -> None:
        self.problems.append(
            row_problem(
                self.plan.file,
                number,
                self.key_field,
                f"duplicate {describe_key(self.key_field, key)} "
                f"(first at {self.plan.file.unit} {first})",
            )
        )

    def accept(self, values: tuple) -> tuple:
        self.plan.accepted += 1
        if self.keeps_keys:
            self.plan.accepted_keys.add(values[self.key_index])
        return values

    @property
    def lookup_due(self) -> bool:
        return len(self.held) >= LOOKUP_BATCH

    def resolve(self) -> list[tuple[Source, tuple]]:
        """Look up the held rows' references in the registry: the rows now accepted.
        Those refused are reported by :meth:`finish`, after every row's own problems."""
        rows, self.held = self.held, []
        for ref, ((index, _, target, _), in_bundle) in enumerate(
            zip(self.refs, self.in_bundle, strict=True)
        ):
            wanted = {v[index] for _, v in rows if v[index] is not None} - in_bundle
            known = in_bundle | (self.existing(target, wanted) if wanted else set())
            kept = []
            for source, values in rows:
                if values[index] is None or values[index] in known:
                    kept.append((source, values))
                else:
                    self.failed_refs.append((ref, source.number, source, values, target))
            rows = kept
        return [(source, self.accept(values)) for source, values in rows]

    def finish(self) -> list[tuple[Source, tuple]]:
        """The last held rows accepted; then every failed reference, reported as a
        whole-file check would: by reference, in row order."""
        accepted = self.resolve()
        for ref, number, source, values, target in sorted(self.failed_refs, key=lambda f: f[:2]):
            index, ref_field, _, target_plan = self.refs[ref]
            value = values[index]
            rejected_at = target_plan.rejected_keys.get(value) if target_plan else None
            if target_plan is not None and rejected_at is not None:
                where = f"{target_plan.file.label} {target_plan.file.unit} {rejected_at}"
                reason = f"{value!r} refers to a rejected row ({where})"
            else:
                reason = f"{value!r} is not in {target} of this bundle or the registry"
            self.problems.append(row_problem(self.plan.file, number, ref_field, reason))
            self.reject(source, values)
        self.failed_refs = []
        return accepted

    def reject(self, source: Source, values: tuple | None = None) -> None:
        record = self.record(source)
        assert record is not None  # only rows with content are checked
        self.plan.rejected.append(record)
        key = (values[self.key_index] if values else None) or record.values.get(self.key_field)
        if key is not None:
            self.plan.rejected_keys.setdefault(str(key), record.number)

    def reject_all(self, sources: Iterable[Source]) -> None:
        """Refuse rows accepted earlier (a whole-file problem found after the checks)."""
        for source in sources:
            record = self.record(source)
            assert record is not None
            self.plan.rejected.append(record)
            self.plan.accepted -= 1
        self.plan.accepted_keys.clear()


UNSEEN = object()


class ResidentChecks:
    """One identity number is one person: one name, and at most one open residence.

    Each identity number gets a person index when first seen; per-person facts are kept
    in flat arrays by that index, as a district has a million people. Numbers are keyed
    by their first 17 digits as an integer: the check character follows from them.
    """

    def __init__(self, layer_file: LayerFile, problems: list[Problem]) -> None:
        self.file = layer_file
        self.problems = problems
        self.index: dict[int, int] = {}
        self.names: list[str] = []
        self.name_rows = array("q")
        self.open_rows = array("q")  # 0: no open residence yet
        self.first_moved_in: list[Any] = []  # of the person's first accepted residence
        self.first_rows = array("q")
        self.more_moved_in: dict[tuple[int, Any], int] = {}  # any further residences

    def seen_at(self, id_number: str, moved_in: Any) -> int | None:
        """The row of an accepted residence of this person with this moved_in, if any."""
        index = self.index.get(int(id_number[:17]))
        if index is None:
            return None
        first = self.first_moved_in[index]
        if first is not UNSEEN and first == moved_in:
            return self.first_rows[index]
        return self.more_moved_in.get((index, moved_in))

    def accept(self, number: int, values: tuple) -> int | None:
        """The person's index if the row agrees with the person's other rows, else None."""
        key, name, moved_out = int(values[0][:17]), values[1], values[7]
        index = self.index.get(key)
        if index is None:
            index = self.index[key] = len(self.names)
            self.names.append(name)
            self.name_rows.append(number)
            self.open_rows.append(0)
            self.first_moved_in.append(UNSEEN)
            self.first_rows.append(0)
        elif self.names[index] != name:
            self.problems.append(
                row_problem(
                    self.file,
                    number,
                    "name",
                    f"the same identity number has name {self.names[index]!r} "
                    f"at row {self.name_rows[index]}",
                )
            )
            return None
        if moved_out is None:
            if self.open_rows[index]:
                self.problems.append(
                    row_problem(
                        self.file,
                        number,
                        "moved_out",
                        "the same identity number already has a residence with no moved_out "
                        f"at row {self.open_rows[index]}",
                    )
                )
                return None
            self.open_rows[index] = number
        return index

    def remember(self, index: int, moved_in: Any, number: int) -> None:
        if self.first_moved_in[index] is UNSEEN:
            self.first_moved_in[index] = moved_in
            self.first_rows[index] = number
        else:
            self.more_moved_in[(index, moved_in)] = number


class EmployeeChecks:
    """One identity number is one person with one name, here and in the bundle's
    residents.csv; one row per person, organization and ``started`` date."""

    def __init__(
        self, layer_file: LayerFile, problems: list[Problem], residents: ResidentChecks | None
    ) -> None:
        self.file, self.problems, self.residents = layer_file, problems, residents
        self.names: dict[int, tuple[str, str]] = {}
        self.rows: dict[tuple[int, str, Any], int] = {}

    def accept(self, number: int, values: tuple) -> bool:
        id_number, name, uscc, _, started, _ = values
        person = int(id_number[:17])
        first = self.rows.get((person, uscc, started))
        if first is not None:
            self.problems.append(
                row_problem(
                    self.file,
                    number,
                    "started",
                    f"duplicate employment of identity number {mask(id_number)} at {uscc} "
                    f"with started {started or '(empty)'} (first at row {first})",
                )
            )
            return False
        known = self.known_name(person)
        if known is not None and known[0] != name:
            self.problems.append(
                row_problem(
                    self.file,
                    number,
                    "name",
                    f"the same identity number has name {known[0]!r} at {known[1]}",
                )
            )
            return False
        self.names.setdefault(person, (name, f"row {number}"))
        self.rows[(person, uscc, started)] = number
        return True

    def known_name(self, person: int) -> tuple[str, str] | None:
        if self.residents is not None:
            index = self.residents.index.get(person)
            if index is not None:
                where = f"{self.residents.file.label} row {self.residents.name_rows[index]}"
                return self.residents.names[index], where
        return self.names.get(person)


def row_problem(layer_file: LayerFile, number: int, field_name: str, reason: str) -> Problem:
    return Problem(layer_file.label, number, field_name, reason, "error", layer_file.unit)


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
