"""Vector tiles over HTTP: XYZ (MVT and clipped GeoJSON), TileJSON 3.0 and OGC API – Tiles.

Caching: a tile's ETag hashes its layers' data versions around the tile (see
:mod:`registry.tiles`), so an edit changes the ETag of the tiles near it and no others.
``Cache-Control: private, no-cache`` makes clients keep tiles but revalidate
each use: an editor sees a change on the next view, and a revalidation costs one index
range scan and a bodiless 304. Built tiles are kept in an in-process LRU keyed by
ETag. An MVT tile with no features is ``204 No Content`` (OGC API – Tiles' advice);
a GeoJSON one is an empty FeatureCollection (200), which JSON clients can parse.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from api.auth import principal_of
from api.features import base_url, link
from api.problems import PROBLEM_JSON, Problem
from registry import tiles
from registry.auth import Principal
from registry.collections import Collection, UnknownCollectionError

router = APIRouter(tags=["Tiles"])

CACHE_CONTROL = "private, no-cache"  # a tile shows what its caller may see
CAPPED_HEADER = "Tile-Capped"  # layers that hit their feature cap: "buildings;cap=15000"
GZIP_SUFFIX = "-gzip"  # a gzip-encoded representation has its own strong ETag
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
MERCATOR_CRS = f"http://www.opengis.net/def/crs/EPSG/0/{tiles.MERCATOR_SRID}"
REL_TILING_SCHEME = "http://www.opengis.net/def/rel/ogc/1.0/tiling-scheme"
REL_GEODATA = "http://www.opengis.net/def/rel/ogc/1.0/geodata"
WORLD_BOUNDS = (-180.0, -85.0511287798066, 180.0, 85.0511287798066)
TILEJSON_TYPES = {"integer": "Number", "number": "Number"}  # everything else is a String

Zoom = Annotated[int, Path(ge=0, le=tiles.MAX_ZOOM, description="zoom level (tile matrix)")]
Index = Annotated[int, Path(ge=0, description="0 .. 2^zoom - 1")]
COLLECTION_ID = "[a-z][a-z0-9-]*"
Collections = Annotated[
    str,
    Path(
        pattern=f"^{COLLECTION_ID}(,{COLLECTION_ID})*$",
        description="a collection id, or several separated by commas (one layer each)",
    ),
]
CollectionId = Annotated[str, Path(pattern=f"^{COLLECTION_ID}$", description="collection id")]
TileMatrixSetId = Annotated[
    str, Path(pattern="^[A-Za-z0-9_.-]+$", description=f"tile matrix set ({tiles.TMS_ID})")
]
JsonOnly = Annotated[Literal["json"], Query(description="response format: json only")]

PROBLEMS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid parameter", "content": {PROBLEM_JSON: {}}},
    404: {"description": "Unknown collection or tile matrix set", "content": {PROBLEM_JSON: {}}},
}


CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tileset",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/tilesets-list",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/geodata-tilesets",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/mvt",
    "http://www.opengis.net/spec/ogcapi-tiles-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/tms/2.0/conf/tilematrixset",
    "http://www.opengis.net/spec/tms/2.0/conf/json-tilematrixset",
]


def landing_links(root: str) -> list[dict]:
    """Links the landing page carries to the tiling schemes."""
    return [
        link(
            f"{root}/tileMatrixSets",
            "http://www.opengis.net/def/rel/ogc/1.0/tiling-schemes",
            "application/json",
            "tiling schemes",
        ),
    ]


def collection_links(root: str, collection: Collection) -> list[dict]:
    """Links each collection carries to its vector tilesets and TileJSON."""
    return [
        link(
            f"{root}/collections/{collection.id}/tiles",
            "http://www.opengis.net/def/rel/ogc/1.0/tilesets-vector",
            "application/json",
            "vector tilesets",
        ),
        link(f"{root}/tiles/{collection.id}.json", "alternate", "application/json", "TileJSON"),
    ]


def tile_responses(fmt: tiles.Format) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI responses of a tile operation in ``fmt``."""
    empty = "no content" if fmt == "mvt" else "an empty FeatureCollection (200)"
    return {
        200: {"description": "The tile", "content": {tiles.MEDIA_TYPES[fmt]: {}}},
        204: {"description": f"A tile without features: {empty}"},
        304: {"description": "Not modified: If-None-Match named the tile's current ETag"},
        **PROBLEMS,
    }


class TileCache:
    """Built tiles by ETag value, least recently used evicted beyond ``size`` entries or
    ``max_bytes`` of bodies (their gzipped copies, smaller, are not counted): a z12 tile
    can be a megabyte or two, so a count alone does not bound a worker's memory."""

    def __init__(self, size: int, max_bytes: int = 128 * 2**20) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        self.entries: OrderedDict[str, tiles.Tile] = OrderedDict()

    def get(self, key: str) -> tiles.Tile | None:
        tile = self.entries.get(key)
        if tile is not None:
            self.entries.move_to_end(key)
        return tile

    def put(self, key: str, tile: tiles.Tile) -> None:
        if self.size <= 0 or len(tile.body) > self.max_bytes:
            return
        old = self.entries.pop(key, None)
        if old is not None:
            self.bytes -= len(old.body)
        self.entries[key] = tile
        self.bytes += len(tile.body)
        while len(self.entries) > self.size or self.bytes > self.max_bytes:
            _, evicted = self.entries.popitem(last=False)
            self.bytes -= len(evicted.body)


def tile_cache(request: Request) -> TileCache:
    """The application's tile cache, made on first use (``settings.tile_cache_size``
    entries, ``settings.tile_cache_mb`` megabytes, per worker process)."""
    state = request.app.state
    cache = getattr(state, "tile_cache", None)
    if cache is None:
        settings = state.settings
        cache = state.tile_cache = TileCache(
            settings.tile_cache_size, settings.tile_cache_mb * 2**20
        )
    return cache


def path_problem(status: int, parameter: str, reason: str) -> Problem:
    """A problem naming the path parameter, shaped like the validation errors'."""
    return Problem(
        status,
        f"path parameter {parameter!r}: {reason}",
        errors=[{"parameter": parameter, "in": "path", "reason": reason}],
    )


def layers_of(spec: str, parameter: str = "collections") -> list[Collection]:
    try:
        return tiles.resolve_layers(spec)
    except UnknownCollectionError as error:
        raise path_problem(404, parameter, str(error)) from None
    except ValueError as error:
        raise path_problem(400, parameter, str(error)) from None


def checked_tile(z: int, x: int, y: int, names: tuple[str, str, str]) -> tiles.TileAddress:
    try:
        return tiles.TileAddress.checked(z, x, y, names)
    except tiles.InvalidTileError as error:
        raise path_problem(400, error.parameter, str(error)) from None


def accepts_gzip(request: Request) -> bool:
    """Whether Accept-Encoding allows gzip (listed, or ``*``, with a non-zero q)."""
    allowed = False
    for item in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = item.strip().partition(";")
        coding = coding.strip().lower()
        if coding not in ("gzip", "*"):
            continue
        q = params.strip().removeprefix("q=").strip() if "q=" in params else "1"
        try:
            accepted = float(q) > 0
        except ValueError:
            accepted = False
        if coding == "gzip":
            return accepted
        allowed = accepted
    return allowed


def not_modified(request: Request, version: str) -> bool:
    """If-None-Match names this tile's ETag (either encoding, weak or strong) or is ``*``."""
    header = request.headers.get("if-none-match")
    if not header:
        return False
    for tag in header.split(","):
        value = tag.strip().removeprefix("W/").strip('"')
        if value in ("*", version, version + GZIP_SUFFIX):
            return True
    return False


async def serve_tile(
    request: Request,
    collections: list[Collection],
    tile: tiles.TileAddress,
    fmt: tiles.Format,
) -> Response:
    """The tile in ``fmt``: 304 if the client's copy is current, else from cache or built."""
    gz = accepts_gzip(request)
    if any(tiles.in_zoom(c, tile.z) for c in collections):
        database = request.app.state.database
        cache = tile_cache(request)
        principal = principal_of(request)
        async with database.unscoped() as conn:  # one statement: the cells' versions
            version = await current_version(conn, tile, collections, fmt, principal)
        if not_modified(request, version):
            return Response(status_code=304, headers=validators(version, gz))
        built = cache.get(version)
        if built is None:
            async with database.snapshot(principal_of(request)) as conn:
                # the version again, in the snapshot the tile is built from, so that the
                # ETag describes exactly this body even if an edit landed in between
                version = await current_version(conn, tile, collections, fmt, principal)
                built = cache.get(version)
                if built is None:
                    built = await conn.run_sync(tiles.render_tile, tile, collections, fmt)
                    cache.put(version, built)
    else:  # every layer is outside its zoom range: empty, no query
        version = for_viewer(tiles.version_key(tile, collections, fmt, {}), principal_of(request))
        if not_modified(request, version):
            return Response(status_code=304, headers=validators(version, gz))
        built = tiles.render_tile(None, tile, collections, fmt)
    headers = validators(version, gz)
    if built.capped:
        caps = {c.id: c.tile_feature_cap for c in collections}
        headers[CAPPED_HEADER] = ", ".join(f"{c};cap={caps[c]}" for c in built.capped)
    if built.empty and fmt == "mvt":
        return Response(status_code=204, headers=headers)
    body = built.body
    if gz:
        headers["Content-Encoding"] = "gzip"
        body = built.gzipped()
    return Response(body, headers=headers, media_type=built.media_type)


async def current_version(
    conn: Any,
    tile: tiles.TileAddress,
    collections: list[Collection],
    fmt: tiles.Format,
    principal: Principal,
) -> str:
    """The tile's ETag value: its layers' cell versions (one index range scan), hashed
    with what shapes the tile (:func:`registry.tiles.version_key`) and, since row-level
    security shows each jurisdiction its own rows, with whose view it is."""
    params = tiles.version_params(tile, collections)
    versions = {}
    if params is not None:
        versions = {row[0]: int(row[1]) for row in await conn.execute(tiles.VERSIONS, params)}
    return for_viewer(tiles.version_key(tile, collections, fmt, versions), principal)


def for_viewer(version: str, principal: Principal) -> str:
    """The version of one viewer's tile: the same for all who see the same rows."""
    if principal.sees_all:
        return version
    view = f"{version}|{principal.scope_key}".encode()
    return hashlib.blake2b(view, digest_size=16).hexdigest()


def validators(version: str, gz: bool) -> dict[str, str]:
    """ETag (per encoding), Cache-Control and Vary: what every tile response carries."""
    return {
        "ETag": f'"{version}{GZIP_SUFFIX if gz else ""}"',
        "Cache-Control": CACHE_CONTROL,
        "Vary": "Accept-Encoding",
    }


# ---------------------------------------------------------------- XYZ


@router.get(
    "/tiles/{collections}/{z}/{x}/{y}.mvt",
    response_class=Response,
    responses=tile_responses("mvt"),
    summary="A Mapbox Vector Tile with one layer per collection",
)
async def xyz_mvt(
    request: Request, collections: Collections, z: Zoom, x: Index, y: Index
) -> Response:
    """``collections`` is one collection id or several separated by commas."""
    layers = layers_of(collections)
    return await serve_tile(request, layers, checked_tile(z, x, y, ("z", "x", "y")), "mvt")


@router.get(
    "/tiles/{collections}/{z}/{x}/{y}.geojson",
    response_class=Response,
    responses=tile_responses("geojson"),
    summary="The tile as GeoJSON (CRS84), geometries clipped to the tile",
)
async def xyz_geojson(request: Request, collections: str, z: Zoom, x: Index, y: Index) -> Response:
    """Each feature has a ``layer`` member naming its collection."""
    layers = layers_of(collections)
    return await serve_tile(request, layers, checked_tile(z, x, y, ("z", "x", "y")), "geojson")


async def bounds_of(request: Request, collections: list[Collection]) -> tuple[float, ...]:
    async with request.app.state.database.scoped(principal_of(request)) as conn:
        bounds = await conn.run_sync(tiles.data_bounds, collections)
    return bounds or WORLD_BOUNDS


@router.get(
    "/tiles/{collections}.json", responses=PROBLEMS, summary="TileJSON 3.0 of the XYZ tiles"
)
async def tilejson(
    request: Request, collections: Collections, f: JsonOnly = "json"
) -> JSONResponse:
    layers = layers_of(collections)
    spec = ",".join(c.id for c in layers)
    bounds = await bounds_of(request, layers)
    document = {
        "tilejson": "3.0.0",
        "name": ", ".join(c.title for c in layers),
        "description": " ".join(c.description for c in layers),
        "scheme": "xyz",
        "tiles": [f"{base_url(request)}/tiles/{spec}/{{z}}/{{x}}/{{y}}.mvt"],
        "minzoom": min(c.min_zoom for c in layers),
        "maxzoom": max(c.max_zoom for c in layers),
        "bounds": list(bounds),
        "vector_layers": [
            {
                "id": c.id,
                "description": c.title,
                "minzoom": c.min_zoom,
                "maxzoom": c.max_zoom,
                "fields": {
                    "id": "String",
                    **{p.name: TILEJSON_TYPES.get(p.type, "String") for p in c.properties},
                },
            }
            for c in layers
        ],
    }
    return JSONResponse(document, headers={"Cache-Control": CACHE_CONTROL})


# ---------------------------------------------------------------- OGC API – Tiles


def tile_matrix_set_of(tile_matrix_set_id: str) -> None:
    if tile_matrix_set_id != tiles.TMS_ID:
        reason = f"no tile matrix set {tile_matrix_set_id!r}; offered: {tiles.TMS_ID}"
        raise path_problem(404, "tileMatrixSetId", reason)


def collection_of(collection_id: str) -> Collection:
    (collection,) = layers_of(collection_id, "collectionId")  # the pattern allows one id
    return collection


def tileset_links(request: Request, collection: Collection) -> list[dict]:
    base = base_url(request)
    tileset = f"{base}/collections/{collection.id}/tiles/{tiles.TMS_ID}"
    return [
        link(tileset, "self", "application/json", "Tileset metadata"),
        link(f"{base}/tileMatrixSets/{tiles.TMS_ID}", REL_TILING_SCHEME, "application/json"),
        link(
            tileset + "/{tileMatrix}/{tileRow}/{tileCol}",
            "item",
            tiles.MEDIA_TYPES["mvt"],
            "Mapbox vector tiles",
            templated=True,
        ),
        link(f"{base}/collections/{collection.id}", REL_GEODATA, "application/json"),
        link(f"{base}/tiles/{collection.id}.json", "alternate", "application/json", "TileJSON"),
    ]


def tileset_summary(request: Request, collection: Collection) -> dict[str, Any]:
    return {
        "title": collection.title,
        "dataType": "vector",
        "crs": MERCATOR_CRS,
        "tileMatrixSetURI": tiles.TMS_URI,
        "links": tileset_links(request, collection),
    }


@router.get("/collections/{collectionId}/tiles", responses=PROBLEMS, summary="Tilesets")
async def collection_tilesets(
    request: Request, collectionId: CollectionId, f: JsonOnly = "json"
) -> JSONResponse:
    collection = collection_of(collectionId)
    url = f"{base_url(request)}/collections/{collection.id}/tiles"
    return JSONResponse(
        {
            "links": [link(url, "self", "application/json", "Tilesets")],
            "tilesets": [tileset_summary(request, collection)],
        }
    )


def properties_schema(collection: Collection) -> dict[str, Any]:
    """JSON Schema of a feature's attributes in the tiles."""
    properties: dict[str, Any] = {"id": {"type": "string", "description": "feature id"}}
    for p in collection.properties:
        properties[p.name] = {"description": p.description, **p.json_schema()}
    return {"type": "object", "required": ["id"], "properties": properties}


@router.get(
    "/collections/{collectionId}/tiles/{tileMatrixSetId}",
    responses=PROBLEMS,
    summary="Tileset metadata",
)
async def collection_tileset(
    request: Request,
    collectionId: CollectionId,
    tileMatrixSetId: TileMatrixSetId,
    f: JsonOnly = "json",
) -> JSONResponse:
    collection = collection_of(collectionId)
    tile_matrix_set_of(tileMatrixSetId)
    zooms = range(collection.min_zoom, collection.max_zoom + 1)
    bounds = await bounds_of(request, [collection])
    limits = []
    for z in zooms:
        min_col, min_row, max_col, max_row = tiles.tile_limits(bounds, z)
        limits.append(
            {
                "tileMatrix": str(z),
                "minTileRow": min_row,
                "maxTileRow": max_row,
                "minTileCol": min_col,
                "maxTileCol": max_col,
            }
        )
    document = {
        **tileset_summary(request, collection),
        "description": collection.description,
        "tileMatrixSetLimits": limits,
        "boundingBox": {
            "lowerLeft": list(bounds[:2]),
            "upperRight": list(bounds[2:]),
            "crs": CRS84,
        },
        "layers": [
            {
                "id": collection.id,
                "title": collection.title,
                "description": collection.description,
                "dataType": "vector",
                "geometryDimension": 0 if collection.geometry_type == "Point" else 2,
                "minTileMatrix": str(collection.min_zoom),
                "maxTileMatrix": str(collection.max_zoom),
                "propertiesSchema": properties_schema(collection),
            }
        ],
    }
    return JSONResponse(document, headers={"Cache-Control": CACHE_CONTROL})


@router.get(
    "/collections/{collectionId}/tiles/{tileMatrixSetId}/{tileMatrix}/{tileRow}/{tileCol}",
    response_class=Response,
    responses=tile_responses("mvt"),
    summary="A Mapbox Vector Tile of the collection (row = y, col = x)",
)
async def collection_tile(
    request: Request,
    collectionId: CollectionId,
    tileMatrixSetId: TileMatrixSetId,
    tileMatrix: Zoom,
    tileRow: Index,
    tileCol: Index,
) -> Response:
    collection = collection_of(collectionId)
    tile_matrix_set_of(tileMatrixSetId)
    tile = checked_tile(tileMatrix, tileCol, tileRow, ("tileMatrix", "tileCol", "tileRow"))
    return await serve_tile(request, [collection], tile, "mvt")


@router.get("/tileMatrixSets", responses=PROBLEMS, summary="Tile matrix sets")
async def tile_matrix_sets(request: Request, f: JsonOnly = "json") -> JSONResponse:
    base = base_url(request)
    definition = tiles.tile_matrix_set()
    return JSONResponse(
        {
            "links": [link(f"{base}/tileMatrixSets", "self", "application/json")],
            "tileMatrixSets": [
                {
                    "id": definition["id"],
                    "title": definition["title"],
                    "uri": definition["uri"],
                    "crs": definition["crs"],
                    "links": [
                        link(
                            f"{base}/tileMatrixSets/{tiles.TMS_ID}",
                            REL_TILING_SCHEME,
                            "application/json",
                            definition["title"],
                        )
                    ],
                }
            ],
        }
    )


@router.get(
    "/tileMatrixSets/{tileMatrixSetId}",
    responses=PROBLEMS,
    summary="A tile matrix set definition (OGC 2D TMS 2.0 JSON)",
)
async def tile_matrix_set(tileMatrixSetId: TileMatrixSetId, f: JsonOnly = "json") -> JSONResponse:
    tile_matrix_set_of(tileMatrixSetId)
    return JSONResponse(tiles.tile_matrix_set())
