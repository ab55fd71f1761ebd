"""``registry load``: read, validate and write a bundle in one transaction.

By default a load is all-or-nothing: any error means nothing is written. With
``partial=True`` the valid rows are written and the refused ones are returned for the
rejects file. The caller owns the transaction and commits only what this returns as
written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from sqlalchemy import String, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from geo.chinacoords import SUPPORTED_CRS, OutsideChinaError, to_wgs84
from registry.bundle.layers import LAYERS
from registry.bundle.placement import import_source, queue_pending, resolve_addresses
from registry.bundle.problems import BundleError, Problem
from registry.bundle.read import LayerFile, find_layer_file, read_layer
from registry.bundle.validate import LOAD_ORDER, Validation, validate
from registry.bundle.write import RESIDENT_COLUMNS, WriteCounts, write_residents, write_table
from registry.models import (
    SRID,
    Address,
    Building,
    Community,
    Footprint,
    ImportLog,
    Room,
)
from registry.vault import IdentityVault

# layer -> (table, geometry column or None)
TARGETS = {
    "communities": (Community.__table__, "boundary"),
    "footprints": (Footprint.__table__, "geom"),
    "buildings": (Building.__table__, "footprint"),
    "addresses": (Address.__table__, "door_plate"),
    "rooms": (Room.__table__, None),
}
KEY_COLUMNS = {
    "communities": Community.code,
    "footprints": Footprint.id,
    "buildings": Building.id,
    "addresses": Address.code,
    "rooms": Room.id,
}


@dataclass
class BundleInfo:
    path: Path
    name: str
    crs: str


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
    return BundleInfo(path, name, canonical[crs.replace("-", "").upper()])


def read_files(path: Path) -> dict[str, LayerFile]:
    files = {}
    for layer in LOAD_ORDER:
        found = find_layer_file(path, layer)
        if found is not None:
            files[layer] = read_layer(found, layer, LAYERS[layer].fields)
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
    session: Session, path: Path, vault: IdentityVault | None, *, partial: bool = False
) -> LoadReport:
    """Validate the bundle at ``path`` and, unless it has errors (or ``partial``), write it.

    Raises :class:`BundleError` for a bundle that cannot be read at all.
    """
    info = read_bundle_info(path)
    files = read_files(path)
    validation = validate(files, existing_keys(session))
    report = LoadReport(info, validation)
    geometries = convert_geometries(validation, info.crs)
    if validation.errors and not partial:
        return report
    if "residents" in validation.plans and vault is None:
        raise BundleError(Problem("residents.csv", None, None, "no identity keys to store it"))
    for layer, plan in validation.plans.items():
        if layer == "residents":
            assert vault is not None
            pending = resolve_addresses(session, plan, vault, validation.problems)
            rows = [values for _, values in plan.accepted]
            counts = write_residents(session, resident_rows(rows, vault))
            queue_pending(session, pending, vault, import_source(info.name))
        else:
            rows = [values for _, values in plan.accepted]
            counts = write_layer(session, layer, rows, geometries.get(layer, []))
        report.counts[layer] = {
            "read": len(plan.file.records),
            "rejected": len(plan.rejected),
            **counts.as_dict(),
        }
        log_file(session, report, plan.file)
    analyze(session, validation.plans)
    report.written = True
    return report


def write_layer(
    session: Session, layer: str, rows: list[dict[str, Any]], ewkb: list[str | None]
) -> WriteCounts:
    """Upsert one layer's rows, with geometries swapped for their converted EWKB."""
    if not rows:
        return WriteCounts()
    table, geometry_column = TARGETS[layer]
    if geometry_column:
        for values, geometry in zip(rows, ewkb, strict=True):
            values[geometry_column] = geometry
    key = [KEY_COLUMNS[layer].key]
    return write_table(session, table, key, list(rows[0]), [tuple(v.values()) for v in rows])


def analyze(session: Session, layers: Iterable[str]) -> None:
    """Refresh planner statistics of the tables a load filled, so the next rates query
    after a bulk load gets index plans rather than guesses from empty-table statistics."""
    tables = {TARGETS[layer][0].name for layer in layers if layer in TARGETS}
    if "residents" in layers:
        tables |= {"person", "residence"}
    for name in sorted(tables):
        session.execute(text(f'ANALYZE "{name}"'))  # names from the model, never from input


def convert_geometries(validation: Validation, crs: str) -> dict[str, list[str | None]]:
    """Accepted geometries of each layer in EPSG:4490 as hex EWKB, converted in one pass.

    GCJ-02 and BD-09 input goes through the iterative inverse (error far below 1 cm).
    """
    converted: dict[str, list[str | None]] = {}
    for layer, plan in validation.plans.items():
        _, geometry_column = TARGETS.get(layer, (None, None))
        if geometry_column is None:
            continue
        geoms = np.array([v[geometry_column] for _, v in plan.accepted] + [None], dtype=object)[:-1]
        present = shapely.is_geometry(geoms)
        try:
            geoms[present] = to_wgs84(geoms[present], crs)
        except OutsideChinaError as exc:
            # the extent was checked row by row, so this is a whole-file matter: refuse it
            validation.problems.append(
                Problem(plan.file.label, None, "geometry", f"cannot convert from {crs}: {exc}")
            )
            plan.rejected.extend(record for record, _ in plan.accepted)
            plan.accepted = []
            converted[layer] = []
            continue
        geoms[present] = shapely.set_srid(geoms[present], SRID)
        converted[layer] = list(shapely.to_wkb(geoms, hex=True, include_srid=True))
    return converted


def resident_rows(rows: list[dict[str, Any]], vault: IdentityVault) -> list[tuple]:
    """Resident rows for COPY, with the identity number replaced by HMAC, ciphertext, tail."""
    out = []
    for values in rows:
        id_number = values["id_number"]
        lookup = vault.lookup_key(id_number)
        out.append(
            (
                lookup,
                vault.encrypt(id_number, lookup),
                id_number[-4:],
                *(values[name] for name in RESIDENT_COLUMNS[3:]),
            )
        )
    return out


def log_file(session: Session, report: LoadReport, layer_file: LayerFile) -> None:
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
