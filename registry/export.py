"""Export a public collection to a GeoPackage, FlatGeobuf, GeoJSON or CSV file.

Every format carries ``id``, the collection's properties and the geometry, transformed in
the database. Coordinates in files are always x = east (longitude), y = north (latitude),
the traditional GIS order that GDAL readers expect; the file declares its CRS.

- ``gpkg`` and ``fgb`` default to CGCS2000 (EPSG:4490), the storage CRS and what district
  GIS in China works in; any CRS of :mod:`geo.crs` may be asked for (EPSG:4547 for the
  3-degree Gauss–Krüger zone of Wuhan).
- ``geojson`` follows RFC 7946: always CRS84 longitude/latitude, polygons counterclockwise.
  Asking for another CRS is an error rather than a non-standard file.
- ``csv`` is UTF-8 with a BOM (so Excel reads the Chinese names), the geometry as WKT in a
  ``wkt`` column, in EPSG:4490 unless another CRS is asked for.

Features without geometry (buildings not yet on the map) keep a null geometry in gpkg,
geojson and csv. FlatGeobuf leaves them out: its spatial index cannot hold a null
geometry, and the index is why one picks FlatGeobuf.

Rows stream from a server-side cursor in batches of :data:`BATCH_SIZE`, appended to the
file, so a city's buildings never sit in memory at once. FlatGeobuf cannot be appended to
cheaply, so its batches go to a scratch GeoPackage that GDAL then copies over as one
Arrow stream.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pyogrio.raw
from sqlalchemy import LargeBinary, Select, Text, func, select
from sqlalchemy.orm import Session

from geo.crs import CRS84, STORAGE_CRS, Crs, UnknownCrsError, parse_crs
from registry.collections import Collection, UnknownCollectionError, get_collection
from registry.rates import is_code_prefix
from registry.settings import RegistryError

BATCH_SIZE = 10_000
GDAL_UTC = 100  # GDAL's time zone flag for UTC (RFC 56)
GEOJSON_DIGITS = 9  # decimal places of GeoJSON coordinates: well under a millimetre


@dataclass(frozen=True)
class Format:
    name: str
    media_type: str
    driver: str | None = None  # GDAL driver, for the formats written through pyogrio


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("gpkg", "application/geopackage+sqlite3", "GPKG"),
        Format("fgb", "application/flatgeobuf", "FlatGeobuf"),
        Format("geojson", "application/geo+json"),
        Format("csv", "text/csv; charset=utf-8"),
    )
}
FORMAT_NAMES = ", ".join(FORMATS)


class ExportError(RegistryError):
    """A bad export parameter; ``parameter`` names it (collection, format, crs or code)."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter


@dataclass(frozen=True)
class ExportSpec:
    """A validated export: what to write, in which format and CRS, for which communities."""

    collection: Collection
    format: Format
    crs: Crs
    code: str | None = None

    @property
    def layer(self) -> str:
        return self.collection.id.replace("-", "_")

    @property
    def fields(self) -> list[str]:
        return ["id", *self.collection.property_names]

    @property
    def drops_missing_geometry(self) -> bool:
        return self.format.name == "fgb"

    @property
    def filename(self) -> str:
        code = f"-{self.code}" if self.code else ""
        return f"{self.collection.id}{code}.{self.format.name}"

    @property
    def gdal_crs(self) -> str:
        return "OGC:CRS84" if self.crs.uri == CRS84 else f"EPSG:{self.crs.srid}"


def export_spec(
    collection_id: str, fmt: str, crs: str | None = None, code: str | None = None
) -> ExportSpec:
    """Validate the parameters of an export before anything is read or written."""
    try:
        collection = get_collection(collection_id)
    except UnknownCollectionError as exc:
        raise ExportError("collection", str(exc)) from None
    format = FORMATS.get(fmt.lower().lstrip("."))
    if format is None:
        raise ExportError("format", f"unknown format {fmt!r}: use one of {FORMAT_NAMES}")
    if code is not None and not is_code_prefix(code):
        raise ExportError(
            "code", f"code {code!r} must be 1 to 12 digits (the start of a community code)"
        )
    return ExportSpec(collection, format, output_crs(format, crs), code)


def output_crs(format: Format, crs: str | None) -> Crs:
    try:
        parsed = parse_crs(crs) if crs is not None else None
    except UnknownCrsError as exc:
        raise ExportError("crs", str(exc)) from None
    if format.name == "geojson":
        if parsed is not None and parsed.uri != CRS84:
            raise ExportError(
                "crs",
                f"crs {crs!r}: GeoJSON (RFC 7946) is always CRS84 longitude/latitude; "
                "leave out the CRS, or export gpkg, fgb or csv for another one",
            )
        return parse_crs(CRS84)
    return parsed or STORAGE_CRS


def format_of(path: Path, fmt: str | None = None) -> str:
    """``fmt`` if given, else the format named by the file's suffix."""
    if fmt is not None:
        return fmt
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ExportError(
            "format",
            f"cannot tell the format of {path.name!r} from its suffix: name it "
            f".{', .'.join(FORMATS)}, or give the format ({FORMAT_NAMES})",
        )
    return suffix


# ---------------------------------------------------------------- query


def export_query(spec: ExportSpec) -> tuple[Select, dict[str, Any]]:
    """The rows to write, ordered by id: id, the properties, then the encoded geometry."""
    collection = spec.collection
    source = collection.source()
    geom = source.c.geom
    if collection.geometry_type.startswith("Multi"):
        geom = func.ST_Multi(geom)
    if spec.crs.srid != STORAGE_CRS.srid:
        geom = func.ST_Transform(geom, spec.crs.srid)
    if spec.format.name == "geojson":
        encoded = func.ST_AsGeoJSON(func.ST_ForcePolygonCCW(geom), GEOJSON_DIGITS, type_=Text)
    elif spec.format.name == "csv":
        encoded = func.ST_AsText(geom, type_=Text)
    else:
        encoded = func.ST_AsBinary(geom, type_=LargeBinary)
    query = select(
        source.c.id,
        *(source.c[name] for name in collection.property_names),
        encoded.label("geometry"),
    ).order_by(source.c.id)
    if spec.code:
        community = source.c.community_code if "community_code" in source.c else source.c.code
        query = query.where(community.startswith(spec.code, autoescape=True))
    if spec.drops_missing_geometry:
        query = query.where(source.c.geom.is_not(None))
    return query, collection.params()


def write_export(session: Session, spec: ExportSpec, path: Path) -> int:
    """Stream the export's rows into ``path``; the number of features written."""
    query, params = export_query(spec)
    result = session.execute(query, params, execution_options={"yield_per": BATCH_SIZE})
    return write_batches(spec, path, result.partitions())


def export_collection(
    session: Session,
    collection_id: str,
    path: Path,
    fmt: str,
    crs: str | None = None,
    code: str | None = None,
) -> int:
    """Write collection ``collection_id`` to ``path`` as ``fmt``; the number of features."""
    return write_export(session, export_spec(collection_id, fmt, crs, code), Path(path))


def write_batches(spec: ExportSpec, path: Path, batches: Iterable[Sequence[Sequence[Any]]]) -> int:
    writer = open_writer(spec, path)
    try:
        for rows in batches:
            writer.write(rows)
        writer.finish()
    except BaseException:
        writer.discard()
        raise
    return writer.count


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it on success and vanishes on failure."""
    path = Path(path)
    if not path.parent.is_dir():
        raise RegistryError(f"cannot write {path}: directory {path.parent} does not exist")
    if path.is_dir():
        raise RegistryError(f"cannot write {path}: it is a directory")
    try:
        scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as exc:
        raise RegistryError(f"cannot write {path}: {exc.strerror}") from None
    try:
        temporary = scratch / path.name
        yield temporary
        temporary.replace(path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# ---------------------------------------------------------------- writers


class FeatureWriter:
    """Writes batches of export rows (id, properties..., geometry) to one file."""

    def __init__(self, spec: ExportSpec, path: Path) -> None:
        self.spec = spec
        self.path = path
        self.count = 0

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Complete the file after the last batch."""

    def discard(self) -> None:
        """Release what the writer holds after a failure; the caller removes the file."""


def open_writer(spec: ExportSpec, path: Path) -> FeatureWriter:
    writers: dict[str, type[FeatureWriter]] = {
        "gpkg": OgrWriter,
        "fgb": FlatGeobufWriter,
        "geojson": GeoJsonWriter,
        "csv": CsvWriter,
    }
    return writers[spec.format.name](spec, path)


class TextWriter(FeatureWriter):
    encoding = "utf-8"

    def __init__(self, spec: ExportSpec, path: Path) -> None:
        super().__init__(spec, path)
        self.file: TextIO = path.open("w", encoding=self.encoding, newline="")

    def finish(self) -> None:
        self.file.close()

    def discard(self) -> None:
        self.file.close()


class CsvWriter(TextWriter):
    """UTF-8 with a BOM for Excel; null is an empty cell; the geometry as WKT."""

    encoding = "utf-8-sig"

    def __init__(self, spec: ExportSpec, path: Path) -> None:
        super().__init__(spec, path)
        self.csv = csv.writer(self.file)
        self.csv.writerow([*spec.fields, "wkt"])

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        self.csv.writerows([[csv_cell(value) for value in row] for row in rows])
        self.count += len(rows)


def csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


class GeoJsonWriter(TextWriter):
    """An RFC 7946 FeatureCollection, one feature per line; ``id`` is the feature id."""

    def __init__(self, spec: ExportSpec, path: Path) -> None:
        super().__init__(spec, path)
        name = json.dumps(spec.layer)
        self.file.write(f'{{"type":"FeatureCollection","name":{name},"features":[\n')

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        names = self.spec.collection.property_names
        for row in rows:
            properties = dict(zip(names, row[1:-1], strict=True))
            feature = (
                f'{{"type":"Feature","id":{json_text(row[0])},'
                f'"geometry":{row[-1] or "null"},"properties":{json_text(properties)}}}'
            )
            self.file.write(f"{',' if self.count else ''}{feature}\n")
            self.count += 1

    def finish(self) -> None:
        self.file.write("]}\n")
        super().finish()


def json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, default=json_value)


def json_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


class OgrWriter(FeatureWriter):
    """GeoPackage through pyogrio: typed fields, the CRS, each batch appended to the layer."""

    def write(self, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self.append(rows)
            self.count += len(rows)

    def finish(self) -> None:
        if not self.target.exists():
            self.append([])  # an empty layer: its fields and CRS are still declared

    def append(self, rows: Sequence[Sequence[Any]]) -> None:
        spec = self.spec
        types = ["string", *(p.type for p in spec.collection.properties)]
        data, masks, offsets = [], [], {}
        for index, (name, kind) in enumerate(zip(spec.fields, types, strict=True)):
            values, mask = field_array([row[index] for row in rows], kind)
            data.append(values)
            masks.append(mask)
            if kind == "date-time":
                offsets[name] = np.full(len(rows), GDAL_UTC, dtype=np.int64)
        geometry = np.empty(len(rows), dtype=object)
        geometry[:] = [None if row[-1] is None else bytes(row[-1]) for row in rows]
        pyogrio.raw.write(
            self.target,
            geometry,
            data,
            spec.fields,
            field_mask=masks,
            layer=spec.layer,
            driver="GPKG",
            geometry_type=spec.collection.geometry_type,
            crs=spec.gdal_crs,
            append=self.target.exists(),
            layer_options={"IDENTIFIER": spec.collection.title},
            gdal_tz_offsets=offsets,
        )

    @property
    def target(self) -> Path:
        return self.path


def field_array(values: list[Any], kind: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A numpy column of a JSON-schema type, and its null mask where the dtype has no null."""
    if kind == "integer":
        missing = np.array([v is None for v in values], dtype=bool)
        data = np.array([0 if v is None else v for v in values], dtype=np.int64)
        return data, missing if missing.any() else None
    if kind == "number":
        return np.array([np.nan if v is None else v for v in values], dtype=np.float64), None
    if kind == "date-time":
        utc = [None if v is None else utc_naive(v) for v in values]
        return np.array(utc, dtype="datetime64[ms]"), None  # None becomes NaT, written null
    strings = np.empty(len(values), dtype=object)
    strings[:] = values
    return strings, None


def utc_naive(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC)
    return value.replace(tzinfo=None)


class FlatGeobufWriter(OgrWriter):
    """Batches go to a scratch GeoPackage; ``finish`` has GDAL copy it as one Arrow stream.

    (Appending to a FlatGeobuf rewrites the whole file each time.)
    """

    def __init__(self, spec: ExportSpec, path: Path) -> None:
        super().__init__(spec, path)
        self.scratch = Path(tempfile.mkdtemp(prefix=".fgb-", dir=path.parent))

    @property
    def target(self) -> Path:
        return self.scratch / "features.gpkg"

    def finish(self) -> None:
        try:
            super().finish()
            with pyogrio.raw.open_arrow(self.target, use_pyarrow=False) as (meta, stream):
                pyogrio.raw.write_arrow(
                    stream,
                    self.path,
                    layer=self.spec.layer,
                    driver="FlatGeobuf",
                    geometry_name=meta["geometry_name"],
                    geometry_type=self.spec.collection.geometry_type,
                    crs=self.spec.gdal_crs,
                    layer_options={"TITLE": self.spec.collection.title},
                )
        finally:
            self.discard()

    def discard(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)
