"""Vector tiles of the public collections on the WebMercatorQuad grid, built in PostGIS.

A tile is one layer per requested collection: Mapbox Vector Tile (``ST_AsMVT`` per layer,
the layers concatenated) or GeoJSON clipped to the tile (``json_build_object`` per feature).
Every statement is SQLAlchemy Core over the collection's ``source()`` with z/x/y, SRIDs and
sizes as bound parameters.

The tile's *version* is what its ETag hashes: for each layer, the sum of the version
counters of the zoom-16 cells around the tile, which triggers bump for every change the
layer can show, including in the tables a derived property reads (a building's address
label, a footprint's community, a community's rates; migration 0005). An edit changes the
version of the tiles near it, and of no others; reading a version is one index range scan.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    Float,
    Integer,
    Select,
    Table,
    Text,
    and_,
    bindparam,
    cast,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import BIT, DOUBLE_PRECISION, aggregate_order_by
from sqlalchemy.sql.elements import ColumnElement

from registry import models
from registry.collections import COLLECTIONS, Collection, Property, UnknownCollectionError

Format = Literal["mvt", "geojson"]
MEDIA_TYPES: dict[Format, str] = {
    "mvt": "application/vnd.mapbox-vector-tile",
    "geojson": "application/geo+json",
}

TMS_ID = "WebMercatorQuad"
TMS_URI = "http://www.opengis.net/def/tilematrixset/OGC/1.0/WebMercatorQuad"
MERCATOR_SRID = 3857
LONLAT_SRID = 4326  # GeoJSON's CRS84
STORAGE_SRID = models.SRID
MAX_ZOOM = 24
HALF_WORLD = math.pi * 6378137.0  # metres from the origin to the edge of the square world
EXTENT = 4096  # MVT coordinate units per tile side
BUFFER = 64  # MVT units kept beyond each tile edge, so strokes and labels join across tiles
DISPLAY_PIXELS = 512  # MapLibre draws a vector tile 512 px wide: "a pixel" is 1/512 of a tile
GEOJSON_DIGITS = 7  # decimal degrees: ~1 cm, under a pixel up to z24
ENCODING = "tiles-2"  # bump when the encoding changes, so that older ETags stop matching
EMPTY_FEATURE_COLLECTION = b'{"type":"FeatureCollection","features":[]}'


class InvalidTileError(ValueError):
    """A tile address outside the grid; ``parameter`` names the offending path parameter."""

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(detail)
        self.parameter = parameter


@dataclass(frozen=True)
class TileAddress:
    """A WebMercatorQuad tile: zoom ``z``, column ``x`` (west to east), row ``y`` (north down)."""

    z: int
    x: int
    y: int

    @classmethod
    def checked(
        cls, z: int, x: int, y: int, names: tuple[str, str, str] = ("z", "x", "y")
    ) -> TileAddress:
        """The tile, or :class:`InvalidTileError` naming the parameter (``names``) out of range."""
        if not 0 <= z <= MAX_ZOOM:
            raise InvalidTileError(names[0], f"{names[0]}={z} is outside 0..{MAX_ZOOM}")
        last = 2**z - 1
        for name, value in zip(names[1:], (x, y), strict=True):
            if not 0 <= value <= last:
                raise InvalidTileError(name, f"{name}={value} is outside 0..{last} at zoom {z}")
        return cls(z, x, y)

    @property
    def width_m(self) -> float:
        """The tile's side in Web Mercator metres."""
        return 2 * HALF_WORLD / 2**self.z


def tile_of(lon: float, lat: float, z: int) -> tuple[int, int]:
    """(x, y) of the tile at zoom ``z`` holding the point, clamped to the grid."""
    n = 2**z
    lat = max(min(lat, 85.0511287798), -85.0511287798)
    x = int((lon + 180) / 360 * n)
    y = int((1 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def resolve_layers(spec: str) -> list[Collection]:
    """The collections named in ``spec`` (``buildings,footprints``), in order, once each.

    Raises :class:`UnknownCollectionError` for an unknown id and ``ValueError`` for none.
    """
    ids = list(dict.fromkeys(part.strip() for part in spec.split(",") if part.strip()))
    if not ids:
        raise ValueError("no collection named; give one id or several separated by commas")
    missing = [i for i in ids if i not in COLLECTIONS]
    if missing:
        raise UnknownCollectionError(missing[0])
    return [COLLECTIONS[i] for i in ids]


def in_zoom(collection: Collection, z: int) -> bool:
    """Whether the layer is drawn at zoom ``z``; outside its range it is left out of the tile."""
    return collection.min_zoom <= z <= collection.max_zoom


# ---------------------------------------------------------------- feature ids


FEATURE_ID_MASK = 2**63 - 1


def feature_id(text_id: str) -> int:
    """The MVT feature id of a text id: the first 64 bits of its MD5, as a 63-bit integer.

    MVT ids are integers and ours are text; the hash is stable across databases and loads.
    """
    return int(hashlib.md5(text_id.encode()).hexdigest()[:16], 16) & FEATURE_ID_MASK


def feature_id_sql(text_id: ColumnElement) -> ColumnElement:
    """:func:`feature_id` in SQL."""
    first64 = cast(literal("x") + func.substr(func.md5(cast(text_id, Text)), 1, 16), BIT(64))
    return cast(first64, BigInteger).bool_op("&")(bindparam("tile_id_mask", FEATURE_ID_MASK))


# ---------------------------------------------------------------- the tile's envelope


def tile_envelope() -> ColumnElement:
    """ST_TileEnvelope(z, x, y): the tile in Web Mercator."""
    return func.ST_TileEnvelope(
        bindparam("tile_z", type_=Integer),
        bindparam("tile_x", type_=Integer),
        bindparam("tile_y", type_=Integer),
    )


def tile_box() -> ColumnElement:
    """The tile widened by ``tile_margin`` metres, clipped to the world, in EPSG:4490.

    Clipping matters at the antimeridian: PROJ wraps a longitude past 180°, which would turn
    the box inside out. Its edges are meridians and parallels in both CRSs, so transforming
    the corners is exact, and ``geom && box`` reaches the spatial index on the 4490 column.
    """
    world = func.ST_TileEnvelope(0, 0, 0)
    widened = func.ST_Expand(tile_envelope(), bindparam("tile_margin", type_=Float))
    return func.ST_Transform(
        func.ST_ClipByBox2D(widened, world), bindparam("storage_srid", STORAGE_SRID)
    )


def overlaps_tile(geom: ColumnElement) -> ColumnElement:
    return geom.bool_op("&&")(tile_box())


def overlaps_mercator_tile(geom_3857: ColumnElement) -> ColumnElement:
    """The stored Web Mercator copy meets the tile widened by ``tile_margin`` metres."""
    widened = func.ST_Expand(tile_envelope(), bindparam("tile_margin", type_=Float))
    return geom_3857.bool_op("&&")(widened)


def tile_params(tile: TileAddress, fmt: Format) -> dict[str, Any]:
    """Bound parameters of the tile's statements.

    MVT reads features within the clipping buffer (so it matches what ST_AsMVTGeom keeps);
    GeoJSON is clipped to the tile itself. Simplification uses half a display pixel and
    features smaller than a pixel either way are dropped; both in degrees of longitude
    (exact east–west, conservative north–south where Mercator stretches latitude), or in
    Web Mercator metres for layers tiled from their stored 3857 copy.
    """
    pixel_deg = 360 / 2**tile.z / DISPLAY_PIXELS
    pixel_m = tile.width_m / DISPLAY_PIXELS
    return {
        "tile_z": tile.z,
        "tile_x": tile.x,
        "tile_y": tile.y,
        "tile_margin": tile.width_m * BUFFER / EXTENT if fmt == "mvt" else 0.0,
        "tile_pixel": pixel_deg,
        "tile_tolerance": pixel_deg / 2,
        "tile_pixel_m": pixel_m,
        "tile_tolerance_m": pixel_m / 2,
    }


# ---------------------------------------------------------------- layers


def property_value(column: ColumnElement, prop: Property) -> ColumnElement:
    """A property as tiles carry it: numbers as numbers, instants as ISO 8601 UTC strings."""
    if prop.type == "integer":
        return cast(column, BigInteger)
    if prop.type == "number":
        return cast(column, DOUBLE_PRECISION)
    if prop.type == "date-time":
        return func.to_char(func.timezone("UTC", column), 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
    return cast(column, Text)


def layer_statement(collection: Collection, fmt: Format) -> Select:
    """One row: the layer's encoded features (``data``, null when none) and ``capped``.

    Candidates are the features whose box meets the tile box and, for polygons, are at
    least a pixel wide or high; at most ``tile_feature_cap`` of them are kept, largest area
    first (then by id, so a capped tile is deterministic). ``capped`` says more existed.
    A vector tile of a collection with a stored Web Mercator copy works in that copy
    throughout: index test, size, simplification and encoding, with no transform.
    """
    src = collection.source()
    polygonal = collection.geometry_type != "Point"
    mercator = fmt == "mvt" and collection.mercator
    geom = src.c.geom_3857 if mercator else src.c.geom
    size = func.ST_Area(geom)
    conditions = [overlaps_mercator_tile(geom) if mercator else overlaps_tile(geom)]
    if polygonal:
        span = func.greatest(
            func.ST_XMax(geom) - func.ST_XMin(geom), func.ST_YMax(geom) - func.ST_YMin(geom)
        )
        pixel = "tile_pixel_m" if mercator else "tile_pixel"
        conditions.append(span >= bindparam(pixel, type_=Float))
    cap = bindparam("tile_cap", type_=Integer)
    names = collection.property_names
    candidates = (
        select(src.c.id, *(src.c[n] for n in names), geom.label("geom"), size.label("size"))
        .where(*conditions)
        .order_by(size.desc(), src.c.id)
        .limit(cap + 1)
        .cte("candidates")
    )
    capped = select(func.count() > cap).select_from(candidates).scalar_subquery()
    shape = candidates.c.geom
    if polygonal:
        tolerance = "tile_tolerance_m" if mercator else "tile_tolerance"
        shape = func.ST_SimplifyPreserveTopology(shape, bindparam(tolerance, type_=Float))
    if fmt == "mvt" and not mercator:
        shape = func.ST_Transform(shape, bindparam("mercator_srid", MERCATOR_SRID))
    props = [property_value(candidates.c[p.name], p).label(p.name) for p in collection.properties]

    def kept(*columns: ColumnElement) -> Select:
        """The first ``cap`` candidates: shapes computed below the LIMIT, once per feature."""
        return select(*columns).order_by(candidates.c.size.desc(), candidates.c.id).limit(cap)

    name = bindparam("tile_layer", collection.id, type_=Text)
    if fmt == "mvt":
        data = _mvt(kept, candidates, props, shape, name)
    else:
        data = _geojson(kept, candidates, props, shape, polygonal, names, name)
    return select(data.label("data"), capped.label("capped"))


@functools.lru_cache(maxsize=64)
def built_layer_statement(collection: Collection, fmt: Format) -> Select:
    """:func:`layer_statement`, built once per layer and format: everything a tile varies
    is a bound parameter, and building and keying the statement cost as much as a third
    of a z16 tile's time."""
    return layer_statement(collection, fmt)


def _mvt(
    kept: Callable[..., Select], candidates: Any, props: list, shape: ColumnElement, name: Any
) -> Any:
    """ST_AsMVT of the kept features (rows whose geometry clips away are null and skipped)."""
    mvt_geom = func.ST_AsMVTGeom(
        shape,
        tile_envelope(),
        bindparam("tile_extent", EXTENT),
        bindparam("tile_buffer", BUFFER),
        True,
    )
    rows = kept(
        feature_id_sql(candidates.c.id).label("fid"),
        cast(candidates.c.id, Text).label("id"),
        *props,
        mvt_geom.label("geom"),
    ).subquery("f")
    extent = bindparam("tile_extent", EXTENT)
    return select(func.ST_AsMVT(rows.table_valued(), name, extent, "geom", "fid")).scalar_subquery()


def _geojson(
    kept: Callable[..., Select],
    candidates: Any,
    props: list,
    shape: ColumnElement,
    polygonal: bool,
    names: tuple[str, ...],
    name: Any,
) -> Any:
    """json_agg of GeoJSON features clipped to the tile, in lon/lat, largest first."""
    clipped = func.ST_ClipByBox2D(shape, tile_box())
    if polygonal:
        clipped = func.ST_Multi(func.ST_CollectionExtract(clipped, 3))
    rows = kept(
        candidates.c.id, candidates.c.size.label("size"), *props, clipped.label("geom")
    ).subquery("f")
    lonlat = func.ST_Transform(rows.c.geom, bindparam("lonlat_srid", LONLAT_SRID))
    feature = func.json_build_object(
        "type",
        "Feature",
        "id",
        rows.c.id,
        "layer",
        name,
        "geometry",
        cast(func.ST_AsGeoJSON(lonlat, GEOJSON_DIGITS), JSON),
        "properties",
        func.json_build_object(*(x for n in names for x in (n, rows.c[n]))),
    )
    ordered = aggregate_order_by(feature, rows.c.size.desc(), rows.c.id)
    return (
        select(cast(func.json_agg(ordered), Text))
        .where(func.ST_IsEmpty(rows.c.geom).is_(False))
        .scalar_subquery()
    )


# ---------------------------------------------------------------- building a tile


@dataclass
class Tile:
    """A built tile: its body (empty MVT: no bytes), media type and the layers that were capped."""

    body: bytes
    fmt: Format
    empty: bool
    capped: tuple[str, ...] = ()
    _gzipped: bytes | None = field(default=None, repr=False)

    @property
    def media_type(self) -> str:
        return MEDIA_TYPES[self.fmt]

    def gzipped(self) -> bytes:
        """The body gzip-compressed (computed once; ``mtime=0`` keeps it reproducible)."""
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=6, mtime=0)
        return self._gzipped


def layer_params(collection: Collection, tile: TileAddress, fmt: Format) -> dict[str, Any]:
    return {
        **tile_params(tile, fmt),
        **collection.params(),
        "tile_cap": collection.tile_feature_cap,
    }


def render_tile(
    conn: Connection | None, tile: TileAddress, collections: Sequence[Collection], fmt: Format
) -> Tile:
    """Build the tile: one layer per collection drawn at ``tile.z``, in the order given.

    ``conn`` may be None when no layer is drawn at ``tile.z`` (the tile is empty).
    """
    parts: list[Any] = []
    capped: list[str] = []
    for collection in collections:
        if not in_zoom(collection, tile.z):
            continue
        assert conn is not None, "a layer in range needs a connection"
        row = conn.execute(
            built_layer_statement(collection, fmt), layer_params(collection, tile, fmt)
        ).one()
        if row.data:
            parts.append(row.data)
        if row.capped:
            capped.append(collection.id)
    if fmt == "mvt":
        body = b"".join(bytes(p) for p in parts)
        return Tile(body, fmt, empty=not body, capped=tuple(capped))
    if not parts:
        return Tile(EMPTY_FEATURE_COLLECTION, fmt, empty=True, capped=tuple(capped))
    # each part is a JSON array from json_agg: splice their members into one array
    features = ",".join(p[1:-1] for p in parts)
    body = ('{"type":"FeatureCollection","features":[' + features + "]}").encode()
    return Tile(body, fmt, empty=False, capped=tuple(capped))


# ---------------------------------------------------------------- versions and ETags


def _table(name: str) -> Table:
    return models.Base.metadata.tables[name]


CELL_ZOOM = 16  # the grid of tile_cell (migration 0005)
WORLD_CELL = -1  # the cell a change too large to list by cells bumps instead


def cell_range(tile: TileAddress) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the zoom-16 cells meeting the tile widened by its MVT buffer.

    A change whose box meets the widened tile bumps one of these cells, since cells tile
    the plane; a millimetre more on each side absorbs rounding at cell edges.
    """
    size = 2 * HALF_WORLD / 2**CELL_ZOOM
    margin = tile.width_m * BUFFER / EXTENT + 1e-3
    west = -HALF_WORLD + tile.x * tile.width_m - margin
    north = HALF_WORLD - tile.y * tile.width_m + margin
    east, south = west + tile.width_m + 2 * margin, north - tile.width_m - 2 * margin
    last = 2**CELL_ZOOM - 1
    return (
        max(0, math.floor((west + HALF_WORLD) / size)),
        max(0, math.floor((HALF_WORLD - north) / size)),
        min(last, math.floor((east + HALF_WORLD) / size)),
        min(last, math.floor((HALF_WORLD - south) / size)),
    )


def version_statement() -> Select:
    """Per layer (``tile_layers``), the sum of its cell versions in the tile's range and of
    its world cell: versions only grow, so the sum changes exactly when a change nearby
    (or a very large one) was committed."""
    cell = _table("tile_cell")
    in_range = and_(
        cell.c.x.between(bindparam("cell_x0"), bindparam("cell_x1")),
        cell.c.y.between(bindparam("cell_y0"), bindparam("cell_y1")),
    )
    world = and_(cell.c.x == WORLD_CELL, cell.c.y == WORLD_CELL)
    return (
        select(cell.c.layer, func.sum(cell.c.version))
        .where(cell.c.layer == func.any(bindparam("tile_layers")), or_(in_range, world))
        .group_by(cell.c.layer)
    )


VERSIONS = version_statement()


def version_params(tile: TileAddress, collections: Sequence[Collection]) -> dict | None:
    """Parameters of :data:`VERSIONS` for the layers drawn at ``tile.z``; None if none is."""
    drawn = [c.id for c in collections if in_zoom(c, tile.z)]
    if not drawn:
        return None
    x0, y0, x1, y1 = cell_range(tile)
    return {"tile_layers": drawn, "cell_x0": x0, "cell_y0": y0, "cell_x1": x1, "cell_y1": y1}


def version_key(
    tile: TileAddress, collections: Sequence[Collection], fmt: Format, versions: dict[str, int]
) -> str:
    """The ETag value: a hash of the layers' versions (``versions``, by layer id) and of
    everything else that shapes the tile (encoding, format, address, zoom range, cap)."""
    layers = [
        [
            c.id,
            c.min_zoom,
            c.max_zoom,
            c.tile_feature_cap,
            c.params(),
            versions.get(c.id, 0) if in_zoom(c, tile.z) else None,
        ]
        for c in collections
    ]
    key = json.dumps([ENCODING, fmt, tile.z, tile.x, tile.y, layers], default=str)
    return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()


# ---------------------------------------------------------------- metadata


def data_bounds(
    conn: Connection, collections: Sequence[Collection]
) -> tuple[float, float, float, float] | None:
    """(west, south, east, north) of the collections' geometries, or None when all are empty.

    Exact (ST_Extent over each table), since clients do not ask for tiles beyond bounds.
    """
    boxes = []
    for collection in collections:
        table = _table(collection.table)
        extent = select(func.ST_Extent(table.c[collection.geometry_column]).label("e")).subquery()
        e = extent.c.e
        row = conn.execute(
            select(func.ST_XMin(e), func.ST_YMin(e), func.ST_XMax(e), func.ST_YMax(e))
        ).one()
        if row[0] is not None:
            boxes.append(row)
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def tile_limits(bounds: tuple[float, float, float, float], z: int) -> tuple[int, int, int, int]:
    """(min col, min row, max col, max row) of the tiles at ``z`` covering ``bounds``."""
    west, south, east, north = bounds
    min_col, min_row = tile_of(west, north, z)
    max_col, max_row = tile_of(east, south, z)
    return min_col, min_row, max_col, max_row


def tile_matrix_set() -> dict[str, Any]:
    """The OGC 2D Tile Matrix Set (2.0) JSON definition of WebMercatorQuad, zooms 0..24."""
    corner = [-HALF_WORLD, HALF_WORLD]
    matrices = []
    for z in range(MAX_ZOOM + 1):
        cell = 2 * HALF_WORLD / 256 / 2**z
        matrices.append(
            {
                "id": str(z),
                "scaleDenominator": cell / 0.00028,
                "cellSize": cell,
                "cornerOfOrigin": "topLeft",
                "pointOfOrigin": corner,
                "tileWidth": 256,
                "tileHeight": 256,
                "matrixWidth": 2**z,
                "matrixHeight": 2**z,
            }
        )
    return {
        "id": TMS_ID,
        "title": "Google Maps Compatible for the World",
        "uri": TMS_URI,
        "crs": f"http://www.opengis.net/def/crs/EPSG/0/{MERCATOR_SRID}",
        "orderedAxes": ["X", "Y"],
        "wellKnownScaleSet": "http://www.opengis.net/def/wkss/OGC/1.0/GoogleMapsCompatible",
        "boundingBox": {
            "lowerLeft": [-HALF_WORLD, -HALF_WORLD],
            "upperRight": [HALF_WORLD, HALF_WORLD],
            "crs": f"http://www.opengis.net/def/crs/EPSG/0/{MERCATOR_SRID}",
        },
        "tileMatrices": matrices,
    }
