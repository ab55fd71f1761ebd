"""``registry load``: read, validate and write a bundle in one transaction.

By default a load is all-or-nothing: any error means nothing is written. With
``partial=True`` the valid rows are written and the refused ones are returned for the
rejects file. The caller owns the transaction and commits only what this returns as
written.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from sqlalchemy import String, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from geo.chinacoords import SUPPORTED_CRS, OutsideChinaError, to_wgs84
from registry.bundle.layers import LAYERS, VALUES, check_columns, prepare_geometries
from registry.bundle.placement import (
    ADDRESS,
    ROOM,
    Pending,
    import_source,
    place_addresses,
    queue_pending,
)
from registry.bundle.problems import BundleError, Problem
from registry.bundle.read import LayerFile, csv_rows, find_layer_file, read_layer
from registry.bundle.validate import (
    LOAD_ORDER,
    LayerCheck,
    LayerPlan,
    Source,
    Validation,
    row_problem,
)
from registry.bundle.write import (
    CopyPipe,
    FreshResidents,
    FreshTable,
    StagedEmployees,
    StagedResidents,
    StagedTable,
    Target,
    WriteCounts,
    reserve_person_ids,
)
from registry.counts import defer_counts, recount, resume_counts
from registry.history import HistoryError, parse_valid_from, set_valid_from
from registry.lineage import retired_ids
from registry.models import (
    SRID,
    Address,
    Building,
    Community,
    Employment,
    Footprint,
    ImportLog,
    Organization,
    Person,
    Residence,
    Room,
)
from registry.organizations import sync_employment_scope
from registry.vault import IdentityVault

TARGETS = {
    "communities": Community.__table__,
    "footprints": Footprint.__table__,
    "buildings": Building.__table__,
    "addresses": Address.__table__,
    "rooms": Room.__table__,
    "organizations": Organization.__table__,
}
GEOMETRY_COLUMN = {
    "communities": "boundary",
    "footprints": "geom",
    "buildings": "footprint",
    "addresses": "door_plate",
}
# the tables each layer writes
TABLES: dict[str, tuple[str, ...]] = {
    **{layer: (table.name,) for layer, table in TARGETS.items()},
    "residents": (Person.__tablename__, Residence.__tablename__),
    "employees": (Person.__tablename__, Employment.__tablename__),
}
PERSON_LAYERS = ("residents", "employees")  # need the identity keys
STAGED_ONLY = ("employees",)  # always upserted: its persons may be the residents' own
BULK_BYTES = 8 << 20  # from this size on, the counters are recounted once at the end
KEY_COLUMNS = {
    "communities": Community.code,
    "footprints": Footprint.id,
    "buildings": Building.id,
    "addresses": Address.code,
    "rooms": Room.id,
    "organizations": Organization.uscc,
}


@dataclass
class BundleInfo:
    path: Path
    name: str
    crs: str
    # when the bundle's content became true (bundle.json ``valid_from``, a survey date):
    # the valid time of what the load changes (registry/history.py); None: the load's time
    valid_from: dt.date | dt.datetime | None = None


@dataclass
class LoadReport:
    bundle: BundleInfo
    validation: Validation
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    written: bool = False

    @property
    def errors(self) -> list[Problem]:
        return self.validation.errors

    @property
    def warnings(self) -> list[Problem]:
        return self.validation.warnings


def read_bundle_info(path: Path) -> BundleInfo:
    """``bundle.json`` if present; the name defaults to the directory, the CRS to 4490."""
    if not path.is_dir():
        raise BundleError(Problem(str(path), None, None, "is not a directory"))
    meta: dict[str, Any] = {}
    meta_path = path / "bundle.json"
    if meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(
                Problem("bundle.json", None, None, f"is not valid JSON: {exc}")
            ) from None
        if not isinstance(meta, dict):
            raise BundleError(Problem("bundle.json", None, None, "must be a JSON object"))
    crs = str(meta.get("crs") or "EPSG:4490")
    canonical = {c.replace("-", "").upper(): c for c in SUPPORTED_CRS}
    if crs.replace("-", "").upper() not in canonical:
        raise BundleError(
            Problem("bundle.json", None, "crs", f"{crs!r} is not one of {', '.join(SUPPORTED_CRS)}")
        )
    name = str(meta.get("name") or path.resolve().name)
    valid_from = None
    if meta.get("valid_from") is not None:
        try:
            valid_from = parse_valid_from(str(meta["valid_from"]))
        except HistoryError as exc:
            raise BundleError(Problem("bundle.json", None, "valid_from", str(exc))) from None
    return BundleInfo(path, name, canonical[crs.replace("-", "").upper()], valid_from)


def find_files(path: Path) -> dict[str, Path]:
    """The file of each layer the bundle has; each is read when its layer's turn comes,
    so parsing one overlaps with writing the one before, and only one is held."""
    files = {}
    for layer in LOAD_ORDER:
        found = find_layer_file(path, layer)
        if found is not None:
            files[layer] = found
    if not files:
        names = ", ".join(f"{layer}.*" for layer in LOAD_ORDER)
        raise BundleError(
            Problem(str(path), None, None, f"holds none of the bundle files ({names})")
        )
    return files


def existing_keys(session: Session):
    """A look-up of which referenced keys the registry already holds."""

    def lookup(layer: str, keys: set[str]) -> set[str]:
        if not keys:
            return set()
        column = KEY_COLUMNS[layer]
        wanted = bindparam("keys", sorted(keys), type_=ARRAY(String))
        return set(session.scalars(select(column).where(column == wanted.any_())))

    return lookup


def load_bundle(
    session: Session,
    path: Path,
    vault: IdentityVault | None,
    *,
    partial: bool = False,
    valid_from: dt.date | dt.datetime | None = None,
) -> LoadReport:
    """Validate the bundle at ``path`` and, unless it has errors (or ``partial``), write it.

    Rows are written while they are checked, inside a savepoint that is rolled back
    if the bundle turns out to have errors (and not ``partial``), so what the caller's
    session sees is all or nothing. Raises :class:`BundleError` for a bundle that
    cannot be read at all. ``valid_from`` (else bundle.json's) is when what the bundle
    changes became true, for the history; by default, the time of the load.
    """
    info = read_bundle_info(path)
    files = find_files(path)
    if valid_from is not None:
        info.valid_from = valid_from
    if info.valid_from is not None:
        try:
            set_valid_from(session, info.valid_from)
        except HistoryError as exc:
            raise BundleError(Problem("bundle.json", None, "valid_from", str(exc))) from None
    report = LoadReport(info, Validation({}, []))
    Loader(session, report, vault, partial).run(files)
    return report


class Loader:
    """One load: each layer streamed through its checks into COPY, in load order."""

    def __init__(
        self, session: Session, report: LoadReport, vault: IdentityVault | None, partial: bool
    ) -> None:
        self.session, self.report, self.vault, self.partial = session, report, vault, partial
        self.validation = report.validation
        self.lookup = existing_keys(session)
        self.fresh: dict[str, bool] = {}
        self.first_person_id = 0
        self.release_person_ids: Callable[[int], None] | None = None
        self.fresh_residents: FreshResidents | None = None
        self.deferred_counts = False
        self.pending: list[Pending] = []
        self.pipe: CopyPipe

    def run(self, files: dict[str, Path]) -> None:
        savepoint = self.session.begin_nested()
        self.pipe = CopyPipe(self.session)
        try:
            self.prepare(files)
            for layer in LOAD_ORDER:
                if layer in files:
                    counts = self.load_layer(read_layer(files[layer], layer, LAYERS[layer].fields))
                    plan = self.validation.plans[layer]
                    self.report.counts[layer] = {
                        "read": plan.read,
                        "rejected": len(plan.rejected),
                        **counts.as_dict(),
                    }
            self.pipe.drain()
        except BaseException:
            self.pipe.close(check=False)
            savepoint.rollback()
            raise
        self.pipe.close()
        if self.validation.failed() and not self.partial:
            self.report.counts = {}
            savepoint.rollback()
            return
        for layer in PERSON_LAYERS:
            if layer in files and self.vault is None:
                savepoint.rollback()
                raise BundleError(
                    Problem(files[layer].name, None, None, "no identity keys to store it")
                )
        self.complete()
        savepoint.commit()
        self.report.written = True

    def prepare(self, files: dict[str, Path]) -> None:
        """Which tables are empty (and so taken with a plain COPY, under a lock); whether
        the counters wait for one recount at the end."""
        for layer in LOAD_ORDER:
            if layer in files and layer not in STAGED_ONLY:
                self.fresh[layer] = all([take_if_empty(self.session, t) for t in TABLES[layer]])
        if self.fresh.get("residents") and self.vault is not None:
            self.first_person_id, self.release_person_ids = reserve_person_ids(self.session)
        if sum(f.stat().st_size for f in files.values()) >= BULK_BYTES:
            defer_counts(self.session)
            self.deferred_counts = True

    def writing(self) -> bool:
        return self.partial or not self.validation.failed()

    def existing(self, layer: str, keys: set[str]) -> set[str]:
        self.pipe.drain()
        return self.lookup(layer, keys)

    def load_layer(self, layer_file: LayerFile) -> WriteCounts:
        layer = layer_file.layer
        problems = self.validation.problems
        plan = self.validation.plans[layer] = LayerPlan(layer_file)
        problems.extend(layer_file.warnings)
        column_problems = check_columns(layer_file)
        problems.extend(column_problems)
        check = LayerCheck(plan, self.validation.plans, problems, self.existing)
        if any(p.severity == "error" for p in column_problems):
            for source in sources(layer_file):
                record = check.record(source)
                if record is not None:
                    plan.read += 1
                    plan.rejected.append(record)
            return WriteCounts()
        if layer in GEOMETRY_COLUMN:
            return self.load_geometric(check)
        target = self.target(layer) if self.writing() else None
        placing: list[tuple[int, tuple]] = []  # residents given by address, placed at the end

        def take(source: Source, values: tuple) -> None:
            if layer == "residents" and values[ADDRESS] is not None and values[ROOM] is None:
                placing.append((source.number, values))
            elif target is not None and self.writing():
                target.add(values)

        for source in csv_rows(layer_file):
            values = check.check(source)
            if values is not None:
                take(source, values)
            elif check.lookup_due:
                for held in check.resolve():
                    take(*held)
        for held in check.finish():
            take(*held)
        if placing and self.writing():
            self.place(layer_file, sorted(placing), target)
        return target.finish() if target is not None else WriteCounts()

    def load_geometric(self, check: LayerCheck) -> WriteCounts:
        """A geometric layer: checked whole, its geometries converted to EPSG:4490 in
        one pass, then written."""
        layer_file = check.plan.file
        prepare_geometries(layer_file.records, LAYERS[layer_file.layer])
        accepted = []
        for record in layer_file.records:
            values = check.check(record)
            if values is not None:
                accepted.append((record, values))
            elif check.lookup_due:
                accepted.extend(check.resolve())
        accepted.extend(check.finish())
        accepted.sort(key=lambda row: row[0].number)
        if layer_file.layer == "buildings":
            self.pipe.drain()
            accepted = refuse_retired(self.session, check, accepted)
        layer_file.records = []  # what is still needed is in ``accepted`` and the plan
        index = VALUES[layer_file.layer].index(GEOMETRY_COLUMN[layer_file.layer])
        crs = self.report.bundle.crs
        try:
            ewkb = convert_geometries([values[index] for _, values in accepted], crs)
        except OutsideChinaError as exc:
            # the extent was checked row by row, so this is a whole-file matter: refuse it
            self.validation.problems.append(
                Problem(layer_file.label, None, "geometry", f"cannot convert from {crs}: {exc}")
            )
            check.reject_all(source for source, _ in accepted)
            return WriteCounts()
        target = self.target(layer_file.layer) if self.writing() else None
        if target is None:
            return WriteCounts()
        for (_, values), geometry in zip(accepted, ewkb, strict=True):
            target.add((*values[:index], geometry, *values[index + 1 :]))
        return target.finish()

    def release_ids(self) -> None:
        """Move ``person``'s sequence past the ids a fresh residents load took, before
        anything else inserts persons (employees) or the load ends; once. The COPY pipe
        must be drained (or closed): this uses the connection."""
        if self.release_person_ids is not None and self.fresh_residents is not None:
            self.release_person_ids(self.fresh_residents.last_id)
            self.release_person_ids = None

    def target(self, layer: str) -> Target | None:
        if layer == "employees":
            if self.vault is None:
                return None
            self.pipe.drain()
            self.release_ids()
            return StagedEmployees(self.session, self.pipe, self.vault)
        if layer == "residents":
            if self.vault is None:
                return None
            if self.fresh[layer]:
                self.fresh_residents = FreshResidents(self.pipe, self.vault, self.first_person_id)
                return self.fresh_residents
            return StagedResidents(self.session, self.pipe, self.vault)
        table = TARGETS[layer]
        if self.fresh[layer]:
            return FreshTable(self.pipe, table, VALUES[layer])
        return StagedTable(self.session, self.pipe, table, [KEY_COLUMNS[layer].key], VALUES[layer])

    def place(
        self, layer_file: LayerFile, rows: list[tuple[int, tuple]], target: Target | None
    ) -> None:
        """Residents given by address: matched against the registry as now written, then
        written themselves (placed or not)."""
        if self.vault is None or target is None:
            return
        self.pipe.drain()
        placed, self.pending = place_addresses(
            self.session, rows, self.vault, layer_file, self.validation.problems
        )
        for values in placed:
            target.add(values)

    def complete(self) -> None:
        """After the rows: review queue, person ids, statistics, counters, import log.

        Statistics come before the recount, whose plans would otherwise be guessed from
        the empty tables this load may have started with."""
        if self.pending and self.vault is not None:
            queue_pending(
                self.session, self.pending, self.vault, import_source(self.report.bundle.name)
            )
        self.release_ids()
        if "organizations" in self.validation.plans:
            sync_employment_scope(self.session)
        analyze(self.session, self.validation.plans)
        if self.deferred_counts:
            recount(self.session)
            resume_counts(self.session)
        for plan in self.validation.plans.values():
            log_file(self.session, self.report, plan)


def refuse_retired(
    session: Session, check: LayerCheck, accepted: list[tuple[Source, tuple]]
) -> list[tuple[Source, tuple]]:
    """Refuse buildings whose id a split or merge retired: ids are never reused."""
    retired = retired_ids(session, [values[check.key_index] for _, values in accepted])
    if not retired:
        return accepted
    kept = []
    for source, values in accepted:
        key = values[check.key_index]
        if key not in retired:
            kept.append((source, values))
            continue
        check.problems.append(
            row_problem(check.plan.file, source.number, check.key_field, retired[key])
        )
        check.reject(source, values)
        check.plan.accepted -= 1
        check.plan.accepted_keys.discard(key)
    return kept


def take_if_empty(session: Session, table: str) -> bool:
    """Whether ``table`` is empty; if so it is locked against other writers until the
    end of the transaction, so it stays empty but for this load's COPY."""
    empty = text(f'SELECT NOT EXISTS (SELECT FROM "{table}")')  # names from the model
    if not session.scalar(empty):
        return False
    session.execute(text(f'LOCK TABLE "{table}" IN SHARE ROW EXCLUSIVE MODE'))
    return bool(session.scalar(empty))


def sources(layer_file: LayerFile) -> Iterable[Source]:
    return csv_rows(layer_file) if layer_file.streamed else layer_file.records


def analyze(session: Session, layers: Iterable[str]) -> None:
    """Refresh planner statistics of the tables a load filled, so the next rates query
    after a bulk load gets index plans rather than guesses from empty-table statistics."""
    tables = {name for layer in layers for name in TABLES[layer]}
    for name in sorted(tables):
        session.execute(text(f'ANALYZE "{name}"'))  # names from the model, never from input


def convert_geometries(geometries: list, crs: str) -> list[str | None]:
    """Geometries in EPSG:4490 as hex EWKB, converted in one pass.

    GCJ-02 and BD-09 input goes through the iterative inverse (error far below 1 cm).
    Raises :class:`OutsideChinaError` for a vertex the conversion cannot take.
    """
    geoms = np.array([*geometries, None], dtype=object)[:-1]
    present = shapely.is_geometry(geoms)
    geoms[present] = to_wgs84(geoms[present], crs)
    geoms[present] = shapely.set_srid(geoms[present], SRID)
    return list(shapely.to_wkb(geoms, hex=True, include_srid=True))


def log_file(session: Session, report: LoadReport, plan: LayerPlan) -> None:
    layer_file = plan.file
    warnings = [p.as_dict() for p in report.warnings if p.file == layer_file.label]
    session.add(
        ImportLog(
            bundle=report.bundle.name,
            path=str(report.bundle.path.resolve()),
            file=layer_file.label,
            counts=report.counts[layer_file.layer],
            warnings=warnings,
        )
    )
