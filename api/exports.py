"""``GET /exports/{collection}.{ext}``: a whole collection as GeoPackage, FlatGeobuf,
GeoJSON or CSV (see :mod:`registry.export` for the formats and their CRS).

Rows stream from a read-only connection's server-side cursor; each batch is written to a
temporary file in a worker thread, so GDAL never blocks the event loop. The file is
complete before the response starts (a failure is a problem, not a truncated 200), then
it streams in chunks and is deleted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from api.auth import client_ip, principal_of
from api.problems import bad_request, not_found
from registry.export import (
    BATCH_SIZE,
    FORMAT_NAMES,
    ExportError,
    ExportSpec,
    export_query,
    export_spec,
    open_writer,
)

router = APIRouter(tags=["exports"])

CHUNK_SIZE = 256 * 1024
WHERE = {"format": ("path", "ext"), "crs": ("query", "crs"), "code": ("query", "code")}


@router.get(
    "/exports/{collection}.{ext}",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The collection as a file to download.",
            "content": {
                "application/geopackage+sqlite3": {},
                "application/flatgeobuf": {},
                "application/geo+json": {},
                "text/csv": {},
            },
        },
        400: {"description": "Bad ext, crs or code (problem+json)."},
        404: {"description": "No such collection (problem+json)."},
    },
)
async def export(
    request: Request,
    collection: str,
    ext: str,
    crs: Annotated[
        str | None,
        Query(
            description="Output CRS, e.g. EPSG:4547 (default EPSG:4490; GeoJSON is always "
            "CRS84). Coordinates in files are x = east, y = north."
        ),
    ] = None,
    code: Annotated[
        str | None,
        Query(description="Only communities whose code starts with these digits (1 to 12)."),
    ] = None,
) -> StreamingResponse:
    """A collection as a file (ext: gpkg, fgb, geojson or csv). FlatGeobuf leaves out
    features without geometry; persons and rooms are never exported. Each export is
    audited; row-level security limits it to the caller's jurisdiction."""
    spec = validated(collection, ext, crs, code)
    principal = principal_of(request)
    scratch = Path(tempfile.mkdtemp(prefix="registry-export-"))
    try:
        path = scratch / spec.filename
        count = await write_file(request, spec, path)
        # audited before a byte leaves: an export whose audit row fails is not sent
        await request.app.state.database.audit(
            principal,
            "export",
            client_ip=client_ip(request),
            detail={"collection": collection, "format": ext, "code": code, "features": count},
        )
        file = path.open("rb")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)  # POSIX: the open file stays readable
    return StreamingResponse(
        chunks(file, scratch),
        media_type=spec.format.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{spec.filename}"',
            "Content-Length": str(os.fstat(file.fileno()).st_size),
        },
    )


@router.get("/exports/{collection}", include_in_schema=False)
async def export_without_ext(collection: str) -> None:
    raise bad_request(
        f"path parameter 'ext': add the format to the path, e.g. /exports/{collection}.gpkg "
        f"({FORMAT_NAMES})",
        errors=[{"parameter": "ext", "in": "path", "reason": f"one of {FORMAT_NAMES}"}],
    )


def validated(collection: str, ext: str, crs: str | None, code: str | None) -> ExportSpec:
    try:
        return export_spec(collection, ext, crs, code)
    except ExportError as exc:
        if exc.parameter == "collection":
            raise not_found(str(exc)) from None
        where, name = WHERE[exc.parameter]
        error: dict[str, Any] = {"parameter": name, "in": where, "reason": str(exc)}
        raise bad_request(f"{where} parameter {name!r}: {exc}", errors=[error]) from None


async def write_file(request: Request, spec: ExportSpec, path: Path) -> int:
    """Stream the export's rows into ``path``, writing each batch in a worker thread."""
    query, params = export_query(spec)
    writer = open_writer(spec, path)
    try:
        async with request.app.state.database.snapshot(principal_of(request)) as conn:
            result = await conn.stream(query, params)
            async for rows in result.partitions(BATCH_SIZE):
                await anyio.to_thread.run_sync(writer.write, rows)
        await anyio.to_thread.run_sync(writer.finish)
    except BaseException:
        writer.discard()
        raise
    return writer.count


async def chunks(file: BinaryIO, scratch: Path) -> AsyncIterator[bytes]:
    try:
        while chunk := await anyio.to_thread.run_sync(file.read, CHUNK_SIZE):
            yield chunk
    finally:
        file.close()
        shutil.rmtree(scratch, ignore_errors=True)
