"""Reading a bundle's files into plain records, whatever their format and encoding.

Geometric layers are GeoJSON (parsed here, so every feature keeps its number and a
broken geometry is reported, not fatal), GeoPackage or Shapefile (read with pyogrio).
CSV files may be UTF-8, with or without BOM, or GB18030/GBK as Excel writes them on
Chinese systems.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry.base import BaseGeometry

from registry.bundle.problems import BundleError, Problem

GEO_LAYERS = ("communities", "footprints", "buildings", "addresses")
TABLE_LAYERS = ("rooms", "residents")
GEO_SUFFIXES = (".geojson", ".gpkg", ".shp")
DBF_NAME_LENGTH = 10
EXTRA_VALUES = "__extra__"  # values beyond the header's columns


@dataclass
class Record:
    """One feature or CSV row: its number, its attribute values and its geometry."""

    number: int
    values: dict[str, Any]
    geometry: BaseGeometry | None = None
    geometry_error: str | None = None


@dataclass
class LayerFile:
    layer: str
    path: Path
    records: list[Record]
    unit: str = "row"
    header: tuple[str, ...] | None = None  # the columns a CSV file declares
    warnings: list[Problem] = field(default_factory=list)

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
    text, encoding = decode_text(path)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise BundleError(Problem(path.name, None, None, "has no header row"))
    reader.fieldnames = [name.strip() for name in reader.fieldnames]
    records = []
    for line, row in enumerate(reader, start=2):
        extra = row.pop(None, None)  # type: ignore[call-overload]
        values = {k: clean_value(v) for k, v in row.items()}
        if not extra and all(v is None for v in values.values()):
            continue  # blank lines that spreadsheets leave at the end
        if extra:
            values[EXTRA_VALUES] = extra
        records.append(Record(line, values))
    result = LayerFile(layer, path, records, header=tuple(reader.fieldnames))
    if encoding != "utf-8":
        result.warnings.append(
            Problem(path.name, None, None, f"read as {encoding.upper()}", "warning")
        )
    return result


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
