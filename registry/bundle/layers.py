"""What each bundle layer holds, and the checks of a single row against that.

Each ``check_*`` function turns one :class:`Record` into the values to store, or
reports why it cannot; checks that need other rows (duplicates, references) live in
``registry.bundle.validate``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from geo.extent import check_extent, in_china
from geo.polygons import prepare_footprint, prepare_point
from registry.bundle.problems import Problem
from registry.bundle.read import EXTRA_VALUES, LayerFile, Record
from registry.idnumber import IdNumberError, parse_id_number, plain_checker
from registry.models import BUILDING_STATUSES, RESIDENT_CATEGORIES
from registry.uscc import UsccError, parse_uscc

IDENTIFIER = re.compile(r"^[^\s\x00-\x1f]{1,64}$")
CATEGORY_ALIASES = {"户籍": "household", "流动": "floating", "境外": "overseas", "其他": "other"}
FLOOR_RANGE = (-10, 300)


@dataclass(frozen=True)
class LayerSpec:
    name: str
    fields: tuple[str, ...]
    required: tuple[str, ...]
    key: str
    geometry: Literal["polygon", "point"] | None = None
    geometry_required: bool = False


LAYERS: dict[str, LayerSpec] = {
    spec.name: spec
    for spec in (
        LayerSpec(
            "communities",
            ("code", "name", "street_code", "street_name", "district_code", "district_name"),
            ("code", "name"),
            "code",
            "polygon",
        ),
        LayerSpec("footprints", ("id", "source"), ("id",), "id", "polygon", True),
        LayerSpec(
            "buildings",
            ("id", "community_code", "name", "floors", "use", "status"),
            ("id", "community_code"),
            "id",
            "polygon",
        ),
        LayerSpec(
            "addresses",
            (
                "code",
                "community_code",
                "building_id",
                "road",
                "house_number",
                "compound",
                "building_no",
            ),
            ("code", "community_code"),
            "code",
            "point",
        ),
        LayerSpec(
            "rooms",
            ("id", "building_id", "unit", "floor", "number", "use"),
            ("id", "building_id", "number"),
            "id",
        ),
        LayerSpec(
            "residents",
            (
                "id_number",
                "name",
                "community_code",
                "room_id",
                "address",
                "category",
                "moved_in",
                "moved_out",
            ),
            ("id_number", "name", "community_code", "category"),
            "id_number",
        ),
        LayerSpec(
            "organizations",
            (
                "uscc",
                "name",
                "community_code",
                "room_id",
                "building_id",
                "category",
                "opened",
                "closed",
            ),
            ("uscc", "name", "community_code"),
            "uscc",
        ),
        LayerSpec(
            "employees",
            ("id_number", "name", "uscc", "position", "started", "ended"),
            ("id_number", "name", "uscc"),
            "id_number",
        ),
    )
}


class RowCheck:
    """Reads typed values out of one record, reporting each problem against its field."""

    def __init__(self, layer_file: LayerFile, record: Record, problems: list[Problem]) -> None:
        self.file = layer_file
        self.record = record
        self.problems = problems
        self.ok = True

    def error(self, field: str | None, reason: str) -> None:
        self.ok = False
        self.problems.append(
            Problem(self.file.label, self.record.number, field, reason, "error", self.file.unit)
        )

    def warn(self, field: str | None, reason: str) -> None:
        self.problems.append(
            Problem(self.file.label, self.record.number, field, reason, "warning", self.file.unit)
        )

    def raw(self, field: str) -> Any:
        return self.record.values.get(field)

    def text(self, field: str, *, required: bool = False) -> str | None:
        value = self.raw(field)
        if value is None:
            if required:
                self.error(field, "is required")
            return None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return str(value)

    def identifier(self, field: str, *, required: bool = True) -> str | None:
        value = self.text(field, required=required)
        if value is not None and not IDENTIFIER.match(value):
            self.error(field, f"{value!r} is not an id: 1 to 64 characters, no spaces")
            return None
        return value

    def code(self, field: str, digits: int, *, required: bool = True) -> str | None:
        value = self.text(field, required=required)
        if value is not None and not (len(value) == digits and value.isascii() and value.isdigit()):
            self.error(field, f"{value!r} is not a {digits}-digit code")
            return None
        return value

    def integer(self, field: str, low: int, high: int) -> int | None:
        value = self.raw(field)
        if value is None:
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if not number.is_integer() or not low <= number <= high:
            self.error(field, f"must be a whole number from {low} to {high}, got {value!r}")
            return None
        return int(number)

    def choice(
        self, field: str, choices: tuple[str, ...], default: str | None = None
    ) -> str | None:
        value = self.text(field, required=default is None)
        if value is None:
            return default
        value = CATEGORY_ALIASES.get(value, value)
        if value not in choices:
            self.error(field, f"{value!r} is not one of {', '.join(choices)}")
            return None
        return value

    def date(self, field: str) -> dt.date | None:
        value = self.text(field)
        if value is None:
            return None
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            self.error(field, f"{value!r} is not an ISO date (YYYY-MM-DD)")
            return None

    def geometry(self, spec: LayerSpec) -> BaseGeometry | None:
        """The record's geometry, checked for type and extent; invalid polygons repaired."""
        record = self.record
        if record.geometry_ready:
            return record.geometry
        if record.geometry_error:
            self.error("geometry", record.geometry_error)
            return None
        if record.geometry is None or (spec.geometry == "point" and record.geometry.is_empty):
            if spec.geometry_required:
                self.error("geometry", f"is required ({spec.geometry})")
            return None
        prepared = (
            prepare_footprint(record.geometry)
            if spec.geometry == "polygon"
            else prepare_point(record.geometry)
        )
        if prepared.error:
            self.error("geometry", prepared.error)
            return None
        outside = check_extent(prepared.geometry)
        if outside:
            self.error("geometry", outside)
            return None
        if getattr(prepared, "warning", None):
            self.warn("geometry", prepared.warning)
        return prepared.geometry


def prepare_geometries(records: list[Record], spec: LayerSpec) -> None:
    """Check a layer's geometries in bulk, as :meth:`RowCheck.geometry` would one by one,
    and mark those it would return as they are now stored, with nothing to report: valid
    2D (Multi)Polygons or finite 2D Points inside China's extent. Any other geometry is
    left for the row-by-row check, which says what is wrong with it."""
    geoms = np.array([*(r.geometry for r in records), None], dtype=object)[:-1]
    types = shapely.get_type_id(geoms)
    if spec.geometry == "polygon":
        wanted = [shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON]
    else:
        wanted = [shapely.GeometryType.POINT]
    at = np.flatnonzero(np.isin(types, wanted) & ~shapely.is_empty(geoms))
    flat = shapely.force_2d(geoms[at])
    if spec.geometry == "polygon":
        single = types[at] == shapely.GeometryType.POLYGON
        flat[single] = shapely.multipolygons(flat[single][:, np.newaxis])
        low_x, low_y, high_x, high_y = shapely.bounds(flat).T
        ok = shapely.is_valid(flat) & in_china(low_x, low_y) & in_china(high_x, high_y)
    else:
        x, y = shapely.get_coordinates(flat).T
        ok = np.isfinite(x) & np.isfinite(y) & in_china(x, y)
    for index, geometry in zip(at[ok], flat[ok], strict=True):
        record = records[index]
        if record.geometry_error is None:
            record.geometry, record.geometry_ready = geometry, True


def check_community(row: RowCheck) -> dict[str, Any]:
    code = row.code("code", 12)
    street_code = row.code("street_code", 9, required=False)
    district_code = row.code("district_code", 6, required=False)
    if code and street_code and street_code != code[:9]:
        row.error("street_code", f"{street_code} is not the street of community {code}")
    if code and district_code and district_code != code[:6]:
        row.error("district_code", f"{district_code} is not the district of community {code}")
    return {
        "code": code,
        "name": row.text("name", required=True),
        "street_code": code[:9] if code else None,
        "street_name": row.text("street_name"),
        "district_code": code[:6] if code else None,
        "district_name": row.text("district_name"),
        "boundary": row.geometry(LAYERS["communities"]),
    }


def check_footprint(row: RowCheck) -> dict[str, Any]:
    return {
        "id": row.identifier("id"),
        "source": row.text("source"),
        "geom": row.geometry(LAYERS["footprints"]),
    }


def check_building(row: RowCheck) -> dict[str, Any]:
    return {
        "id": row.identifier("id"),
        "community_code": row.code("community_code", 12),
        "name": row.text("name"),
        "footprint": row.geometry(LAYERS["buildings"]),
        "floors": row.integer("floors", 1, FLOOR_RANGE[1]),
        "use": row.text("use"),
        "status": row.choice("status", BUILDING_STATUSES, default="in_use"),
    }


def check_address(row: RowCheck) -> dict[str, Any]:
    return {
        "code": row.identifier("code"),
        "community_code": row.code("community_code", 12),
        "building_id": row.identifier("building_id", required=False),
        "road": row.text("road"),
        "house_number": row.text("house_number"),
        "compound": row.text("compound"),
        "building_no": row.text("building_no"),
        "door_plate": row.geometry(LAYERS["addresses"]),
    }


def check_room(row: RowCheck) -> dict[str, Any]:
    floor = row.integer("floor", *FLOOR_RANGE)
    if floor == 0:
        row.error("floor", "floor 0 does not exist (basements are -1, -2, ...)")
    return {
        "id": row.identifier("id"),
        "building_id": row.identifier("building_id"),
        "unit": row.text("unit"),
        "floor": floor,
        "number": row.text("number", required=True),
        "use": row.text("use"),
    }


def identity_number(row: RowCheck) -> str | None:
    """The row's ``id_number``, validated (GB 11643) and normalised."""
    raw = row.text("id_number", required=True)
    if raw is None:
        return None
    try:
        parsed = parse_id_number(raw)
    except IdNumberError as exc:
        row.error("id_number", f"invalid identity number: {exc}")
        return None
    if parsed.warning:
        row.warn("id_number", parsed.warning)
    return parsed.value


def credit_code(row: RowCheck, field: str) -> str | None:
    """A unified social credit code (GB 32100), validated and normalised."""
    raw = row.text(field, required=True)
    if raw is None:
        return None
    try:
        parsed = parse_uscc(raw)
    except UsccError as exc:
        row.error(field, f"invalid unified social credit code {raw!r}: {exc}")
        return None
    if parsed.warning:
        row.warn(field, parsed.warning)
    return parsed.value


def check_resident(row: RowCheck) -> dict[str, Any]:
    id_number = identity_number(row)
    moved_in, moved_out = row.date("moved_in"), row.date("moved_out")
    room_id, address = row.identifier("room_id", required=False), row.text("address")
    if room_id is not None and address is not None:
        row.warn("address", "ignored: the row names its room by room_id")
        address = None
    if moved_in and moved_out and moved_out < moved_in:
        row.error("moved_out", f"{moved_out} is before moved_in {moved_in}")
    return {
        "id_number": id_number,
        "name": row.text("name", required=True),
        "community_code": row.code("community_code", 12),
        "room_id": room_id,
        "address": address,
        "category": row.choice("category", RESIDENT_CATEGORIES),
        "moved_in": moved_in,
        "moved_out": moved_out,
    }


def check_organization(row: RowCheck) -> dict[str, Any]:
    room_id = row.identifier("room_id", required=False)
    building_id = row.identifier("building_id", required=False)
    if room_id is not None and building_id is not None:
        row.error("building_id", "give room_id or building_id, not both")
    opened, closed = row.date("opened"), row.date("closed")
    if opened and closed and closed < opened:
        row.error("closed", f"{closed} is before opened {opened}")
    return {
        "uscc": credit_code(row, "uscc"),
        "name": row.text("name", required=True),
        "community_code": row.code("community_code", 12),
        "building_id": building_id,
        "room_id": room_id,
        "category": row.text("category"),
        "opened": opened,
        "closed": closed,
    }


def check_employee(row: RowCheck) -> dict[str, Any]:
    started, ended = row.date("started"), row.date("ended")
    if started and ended and ended < started:
        row.error("ended", f"{ended} is before started {started}")
    return {
        "id_number": identity_number(row),
        "name": row.text("name", required=True),
        "uscc": credit_code(row, "uscc"),
        "position": row.text("position"),
        "started": started,
        "ended": ended,
    }


ROW_CHECKS: dict[str, Callable[[RowCheck], dict[str, Any]]] = {
    "communities": check_community,
    "footprints": check_footprint,
    "buildings": check_building,
    "addresses": check_address,
    "rooms": check_room,
    "residents": check_resident,
    "organizations": check_organization,
    "employees": check_employee,
}


def check_columns(layer_file: LayerFile) -> list[Problem]:
    """File-level problems: missing required columns (errors), unknown ones (warnings).

    CSV files, GeoPackages and Shapefiles declare their columns; GeoJSON features
    each carry their own properties, so there the union of all features counts.
    """
    spec = LAYERS[layer_file.layer]
    present = set(layer_file.header or ())
    if layer_file.header is None:
        for record in layer_file.records:
            present.update(record.values)
        if not layer_file.records:
            return []
    problems = []
    missing = [f for f in spec.required if f not in present]
    if missing:
        problems.append(
            Problem(layer_file.label, None, ", ".join(missing), "required column is missing")
        )
    for name in sorted(present - set(spec.fields) - {EXTRA_VALUES}):
        problems.append(Problem(layer_file.label, None, name, "unknown column, ignored", "warning"))
    return problems


# the values each check returns, in order: a checked row travels as a tuple of them
VALUES: dict[str, tuple[str, ...]] = {
    "communities": (
        "code",
        "name",
        "street_code",
        "street_name",
        "district_code",
        "district_name",
        "boundary",
    ),
    "footprints": ("id", "source", "geom"),
    "buildings": ("id", "community_code", "name", "footprint", "floors", "use", "status"),
    "addresses": (
        "code",
        "community_code",
        "building_id",
        "road",
        "house_number",
        "compound",
        "building_no",
        "door_plate",
    ),
    "rooms": ("id", "building_id", "unit", "floor", "number", "use"),
    "residents": (
        "id_number",
        "name",
        "community_code",
        "room_id",
        "address",
        "category",
        "moved_in",
        "moved_out",
    ),
    "organizations": (
        "uscc",
        "name",
        "community_code",
        "building_id",
        "room_id",
        "category",
        "opened",
        "closed",
    ),
    "employees": ("id_number", "name", "uscc", "position", "started", "ended"),
}


def check_row(layer_file: LayerFile, record: Record, problems: list[Problem]) -> tuple | None:
    """The values to store for ``record`` (in :data:`VALUES` order), or None when it has
    errors (all reported)."""
    row = RowCheck(layer_file, record, problems)
    if EXTRA_VALUES in record.values:
        row.error(None, f"has {len(record.values[EXTRA_VALUES])} more values than the header")
    values = ROW_CHECKS[layer_file.layer](row)
    return tuple(values[name] for name in VALUES[layer_file.layer]) if row.ok else None


# ---------------------------------------------------------------- fast checks of CSV rows
#
# A fast check takes a row's raw cells and returns its values only when the full check
# above would accept the row as it is, with no problem or warning, and return the same
# values; otherwise None, and the row goes through the full check, which says why. So a
# fast check may be stricter than the full one, never looser.

FastCheck = Callable[[list[str]], tuple | None]


def fast_check(layer: str, header: tuple[str, ...]) -> FastCheck | None:
    """The fast check of a CSV layer with this header, if it has one."""
    make = FAST_CHECKS.get(layer)
    if make is None or len(set(header)) != len(header):
        return None
    if not set(LAYERS[layer].required) <= set(header):
        return None
    return make({name: i for i, name in enumerate(header)}, len(header))


def optional_cell(cells: list[str], index: int | None) -> str | None:
    return (cells[index].strip() or None) if index is not None else None


def fast_room(columns: dict[str, int], width: int) -> FastCheck:
    i_id, i_building, i_number = columns["id"], columns["building_id"], columns["number"]
    i_unit, i_floor, i_use = columns.get("unit"), columns.get("floor"), columns.get("use")
    is_id = IDENTIFIER.match
    low, high = FLOOR_RANGE

    def check(cells: list[str]) -> tuple | None:
        if len(cells) != width:
            return None
        room_id, building_id = cells[i_id].strip(), cells[i_building].strip()
        number = cells[i_number].strip()
        if not (number and room_id and building_id and is_id(room_id) and is_id(building_id)):
            return None
        floor_text = optional_cell(cells, i_floor)
        floor = None
        if floor_text is not None:
            try:
                floor = int(floor_text)
            except ValueError:
                return None
            if floor == 0 or not low <= floor <= high:
                return None
        unit, use = optional_cell(cells, i_unit), optional_cell(cells, i_use)
        return (room_id, building_id, unit, floor, number, use)

    return check


def fast_resident(columns: dict[str, int], width: int) -> FastCheck:
    i_id, i_name = columns["id_number"], columns["name"]
    i_community, i_category = columns["community_code"], columns["category"]
    i_room, i_address = columns.get("room_id"), columns.get("address")
    i_in, i_out = columns.get("moved_in"), columns.get("moved_out")
    plain_id = plain_checker()
    is_id = IDENTIFIER.match
    dates: dict[str, dt.date] = {}  # a district repeats its dates: parse each once

    def date(cells: list[str], index: int | None) -> dt.date | bool | None:
        value = optional_cell(cells, index)
        if value is None:
            return None
        found = dates.get(value)
        if found is None:
            try:
                found = dates[value] = dt.date.fromisoformat(value)
            except ValueError:
                return False
        return found

    def check(cells: list[str]) -> tuple | None:
        if len(cells) != width:
            return None
        id_number, name = cells[i_id].strip(), cells[i_name].strip()
        community = cells[i_community].strip()
        if not (name and plain_id(id_number)):
            return None
        if not (len(community) == 12 and community.isascii() and community.isdigit()):
            return None
        room_id, address = optional_cell(cells, i_room), optional_cell(cells, i_address)
        if room_id is not None and (address is not None or not is_id(room_id)):
            return None  # both given: the full check warns
        category = cells[i_category].strip()
        category = CATEGORY_ALIASES.get(category, category)
        if category not in RESIDENT_CATEGORIES:
            return None
        moved_in, moved_out = date(cells, i_in), date(cells, i_out)
        if moved_in is False or moved_out is False:
            return None
        if moved_in and moved_out and moved_out < moved_in:  # type: ignore[operator]
            return None
        return (id_number, name, community, room_id, address, category, moved_in, moved_out)

    return check


FAST_CHECKS: dict[str, Callable[[dict[str, int], int], FastCheck]] = {
    "rooms": fast_room,
    "residents": fast_resident,
}
