"""Reading a bundle's files into plain records, whatever their format and encoding.

Geometric layers are GeoJSON (parsed here, so every feature keeps its number and a
broken geometry is reported, not fatal), GeoPackage or Shapefile (read with pyogrio).
CSV files may be UTF-8, with or without BOM, or GB18030/GBK as Excel writes them on
Chinese systems.
"""

from __future__ import annotations

import codecs
import csv
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

from registry.bundle.problems import BundleError, Problem

GEO_LAYERS = ("communities", "footprints", "buildings", "addresses")
TABLE_LAYERS = ("rooms", "residents", "organizations", "employees")
GEO_SUFFIXES = (".geojson", ".gpkg", ".shp")
DBF_NAME_LENGTH = 10
EXTRA_VALUES = "__extra__"  # values beyond the header's columns
CHUNK_BYTES = 1 << 20


@dataclass
class Record:
    """One feature or CSV row: its number, its attribute values and its geometry."""

    number: int
    values: dict[str, Any]
    geometry: BaseGeometry | None = None
    geometry_error: str | None = None
    geometry_ready: bool = False  # checked in bulk: already as stored, nothing to report


class CsvRow(NamedTuple):
    """One CSV row as read: its spreadsheet row number and its raw cells."""

    number: int
    cells: list[str]


@dataclass
class LayerFile:
    """A bundle file: geometric layers hold their ``records``; CSV layers are streamed
    from ``path`` (see :func:`csv_rows`) and leave ``records`` empty."""

    layer: str
    path: Path
    records: list[Record]
    unit: str = "row"
    header: tuple[str, ...] | None = None  # the columns a CSV file declares
    warnings: list[Problem] = field(default_factory=list)
    encoding: str = "utf-8"

    @property
    def streamed(self) -> bool:
        return self.path.suffix == ".csv"

    @property
    def label(self) -> str:
        return self.path.name


def find_layer_file(bundle_dir: Path, layer: str) -> Path | None:
    """The file that holds ``layer``, or None if the bundle leaves it out."""
    suffixes = GEO_SUFFIXES if layer in GEO_LAYERS else (".csv",)
    found = [bundle_dir / f"{layer}{s}" for s in suffixes if (bundle_dir / f"{layer}{s}").is_file()]
    if len(found) > 1:
        names = ", ".join(p.name for p in found)
        raise BundleError(Problem(found[0].name, None, None, f"two files for one layer: {names}"))
    return found[0] if found else None


def read_layer(path: Path, layer: str, fields: tuple[str, ...]) -> LayerFile:
    """Read any supported file of ``layer``, whose known ``fields`` let Shapefile's
    10-character names be mapped back; unreadable files raise :class:`BundleError`."""
    if path.suffix == ".csv":
        return read_csv(path, layer)
    if path.suffix == ".geojson":
        return read_geojson(path, layer)
    return read_with_ogr(path, layer, fields)


def decode_text(path: Path) -> tuple[str, str]:
    """Text of ``path`` and the encoding it was in: UTF-8 (BOM or not), else GB18030."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError as exc:
        raise BundleError(
            Problem(path.name, None, None, f"is neither UTF-8 nor GB18030/GBK text ({exc})")
        ) from None


def read_csv(path: Path, layer: str) -> LayerFile:
    """Open a CSV layer for one streamed pass: the header and encoding are read now,
    the rows (see :func:`csv_rows`) only as the load consumes them."""
    encoding = detect_encoding(path)
    with open_text(path, encoding) as src:
        header = next(csv.reader(src), None)
    if not header:
        raise BundleError(Problem(path.name, None, None, "has no header row"))
    result = LayerFile(layer, path, [], header=tuple(name.strip() for name in header))
    result.encoding = encoding
    if encoding != "utf-8":
        result.warnings.append(
            Problem(path.name, None, None, f"read as {encoding.upper()}", "warning")
        )
    return result


def detect_encoding(path: Path) -> str:
    """UTF-8 (BOM or not) if the whole file decodes as such, else GB18030 if that does.

    Checked chunk by chunk, so a large file is never held as text."""
    for encoding in ("utf-8", "gb18030"):
        decoder = codecs.getincrementaldecoder(encoding)()
        try:
            with path.open("rb") as src:
                while chunk := src.read(CHUNK_BYTES):
                    decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            error = exc
            continue
        return encoding
    raise BundleError(
        Problem(path.name, None, None, f"is neither UTF-8 nor GB18030/GBK text ({error})")
    )


def open_text(path: Path, encoding: str) -> TextIO:
    return path.open(encoding="utf-8-sig" if encoding == "utf-8" else encoding, newline="")


def csv_rows(layer_file: LayerFile) -> Iterator[CsvRow]:
    """The data rows of a CSV layer, numbered as a spreadsheet shows them (header = 1).

    Lines with no cells at all are skipped without a number, as ``csv.DictReader`` does;
    rows of empty cells keep theirs and are dropped later (see :func:`csv_record`).
    """
    with open_text(layer_file.path, layer_file.encoding) as src:
        reader = csv.reader(src)
        next(reader, None)
        number = 1
        for cells in reader:
            if cells:
                number += 1
                yield CsvRow(number, cells)


def csv_record(header: tuple[str, ...], row: CsvRow) -> Record | None:
    """``row`` as a :class:`Record` of cleaned values keyed by the header, cells beyond it
    under ``EXTRA_VALUES``; None for a row whose cells are all empty."""
    cells = row.cells
    values = {
        name: clean_value(cells[i]) if i < len(cells) else None for i, name in enumerate(header)
    }
    extra = cells[len(header) :]
    if not extra and all(v is None for v in values.values()):
        return None  # blank lines that spreadsheets leave at the end
    if extra:
        values[EXTRA_VALUES] = extra
    return Record(row.number, values)


def read_geojson(path: Path, layer: str) -> LayerFile:
    text, encoding = decode_text(path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(Problem(path.name, None, None, f"is not valid JSON: {exc}")) from None
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise BundleError(Problem(path.name, None, None, "is not a GeoJSON FeatureCollection"))
    features = document.get("features")
    if not isinstance(features, list):
        raise BundleError(Problem(path.name, None, None, "has no 'features' list"))
    records = [geojson_record(number, feature) for number, feature in enumerate(features, 1)]
    result = LayerFile(layer, path, records, unit="feature")
    if encoding != "utf-8":
        result.warnings.append(
            Problem(path.name, None, None, f"read as {encoding.upper()}", "warning")
        )
    return result


def geojson_record(number: int, feature: Any) -> Record:
    if not isinstance(feature, dict) or feature.get("type") != "Feature":
        return Record(number, {}, geometry_error="is not a GeoJSON Feature")
    properties = feature.get("properties") or {}
    if not isinstance(properties, dict):
        return Record(number, {}, geometry_error="has properties that are not an object")
    values = {k: clean_value(v) for k, v in properties.items()}
    raw = feature.get("geometry")
    if raw is None:
        return Record(number, values)
    try:
        return Record(number, values, shapely.from_geojson(json.dumps(raw)))
    except (shapely.errors.GEOSException, ValueError, TypeError) as exc:
        return Record(number, values, geometry_error=f"unreadable geometry ({exc})")


def read_with_ogr(path: Path, layer: str, fields: tuple[str, ...]) -> LayerFile:
    """GeoPackage or Shapefile via pyogrio; projected data is brought to EPSG:4490."""
    import pyogrio  # imported here: it pulls in pandas, which other commands do not need

    try:
        meta, _, wkb, columns = pyogrio.raw.read(path)
    except Exception as exc:  # pyogrio raises many GDAL error types
        raise BundleError(Problem(path.name, None, None, f"cannot be read: {exc}")) from None
    names = list(meta["fields"])
    geometries = shapely.from_wkb(wkb, on_invalid="ignore") if wkb is not None else None
    if geometries is not None and meta.get("crs"):
        geometries = to_geographic(geometries, meta["crs"], path)
    names = [dbf_alias(name, fields) for name in names]
    records = []
    for index in range(len(columns[0]) if columns else len(geometries or [])):
        values = {
            name: clean_value(column[index]) for name, column in zip(names, columns, strict=True)
        }
        geometry = geometries[index] if geometries is not None else None
        records.append(Record(index + 1, values, geometry))
    return LayerFile(layer, path, records, unit="feature", header=tuple(names))


def to_geographic(geometries: np.ndarray, crs_text: str, path: Path) -> np.ndarray:
    """Reproject a projected layer (e.g. EPSG:4547 Gauss-Kruger) to EPSG:4490."""
    crs = CRS.from_user_input(crs_text)
    if crs.is_geographic:
        return geometries
    transformer = Transformer.from_crs(crs, "EPSG:4490", always_xy=True)

    def project(coords: np.ndarray) -> np.ndarray:
        x, y = transformer.transform(coords[:, 0], coords[:, 1])
        return np.column_stack([x, y])

    try:
        return shapely.transform(geometries, project)
    except Exception as exc:
        raise BundleError(
            Problem(path.name, None, None, f"cannot be reprojected from {crs.name}: {exc}")
        ) from None


def dbf_alias(name: str, expected: tuple[str, ...]) -> str:
    """Map a Shapefile's 10-character field name back to the full bundle field name."""
    if name in expected or len(name) != DBF_NAME_LENGTH:
        return name
    matches = [full for full in expected if full[:DBF_NAME_LENGTH] == name]
    return matches[0] if len(matches) == 1 else name


def clean_value(value: Any) -> Any:
    """Plain Python values: trimmed strings, None for empty text and NaN, ints for numpy."""
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
