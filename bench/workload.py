"""What the HTTP benchmarks request: tiles and bbox pages over the densest area, and the
bare-SQL floor for the same tiles.

The densest area is a zoom-14 tile with the most buildings on the map (within 10%),
the one nearest the middle of the data; around its centre the fixed lists are 2 x 2
tiles at zoom 12, 4 x 4 at zoom 14 and 6 x 6 at zoom 16, and the bounding boxes of the
2 x 2 zoom-15 tiles for ``items`` pages.

The floor is one SQL statement per tile through psycopg, no HTTP and no Python beyond
the driver: ``ST_AsMVT`` of ``ST_AsMVTGeom`` over the stored Web Mercator outlines with
the same columns as the API's buildings layer (its address label aside), the same
extent and buffer, and the same cap of the 15,000 largest features.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg

from bench.database import libpq
from bench.httpload import percentile
from registry.tiles import tile_of

ZOOMS = {12: 2, 14: 4, 16: 6}  # zoom -> side of the square block of tiles
FEATURE_CAP = 15_000

FLOOR_SQL = """
SELECT ST_AsMVT(t, 'buildings', 4096, 'geom')
FROM (
    SELECT id, name, community_code, floors, use, status, verification,
           verified_at::text AS verified_at,
           ST_AsMVTGeom(footprint_3857, ST_TileEnvelope(%(z)s, %(x)s, %(y)s), 4096, 64, true)
               AS geom
    FROM building
    WHERE footprint_3857 && ST_TileEnvelope(%(z)s, %(x)s, %(y)s, margin => 64.0 / 4096)
    ORDER BY ST_Area(footprint_3857) DESC
    LIMIT %(cap)s
) t
"""


@dataclass(frozen=True)
class Area:
    lon: float
    lat: float
    buildings: int  # on the map in the zoom-14 tile around (lon, lat)


DENSEST_SQL = """
WITH cells AS (
    SELECT floor((ST_X(c) + 20037508.342789244) / (40075016.68557849 / 16384))::int AS x,
           floor((20037508.342789244 - ST_Y(c)) / (40075016.68557849 / 16384))::int AS y,
           count(*) AS n
    FROM (SELECT ST_Centroid(footprint_3857) AS c FROM building
          WHERE footprint_3857 IS NOT NULL) b
    GROUP BY 1, 2
), centre AS (
    SELECT avg(x) AS x, avg(y) AS y FROM cells
)
SELECT cells.x, cells.y, cells.n
FROM cells, centre
WHERE cells.n >= 0.9 * (SELECT max(n) FROM cells)
ORDER BY (cells.x - centre.x) ^ 2 + (cells.y - centre.y) ^ 2, cells.x, cells.y
LIMIT 1
"""


def densest_area(database_url: str) -> Area:
    """The centre of a zoom-14 tile among the densest (90% of the most buildings on the
    map in one tile or more), the one nearest the middle of the data."""
    with psycopg.connect(libpq(database_url)) as conn:
        row = conn.execute(DENSEST_SQL).fetchone()
    assert row is not None, "no building on the map: load the bundle first"
    x, y, n = row
    west, south, east, north = tile_bounds(14, x, y)
    return Area((west + east) / 2, (south + north) / 2, n)


def tile_block(area: Area, z: int, side: int) -> list[tuple[int, int, int]]:
    """``side`` x ``side`` tiles at zoom ``z`` around the area's centre."""
    cx, cy = tile_of(area.lon, area.lat, z)
    first = side // 2
    return [(z, cx - first + dx, cy - first + dy) for dy in range(side) for dx in range(side)]


def tile_lists(area: Area) -> dict[int, list[tuple[int, int, int]]]:
    return {z: tile_block(area, z, side) for z, side in ZOOMS.items()}


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees of a WebMercatorQuad tile."""
    n = 2**z

    def lat(row: int) -> float:
        return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * row / n))))

    return (x / n * 360 - 180, lat(y + 1), (x + 1) / n * 360 - 180, lat(y))


def item_boxes(area: Area) -> list[tuple[float, float, float, float]]:
    """The bounds of the 2 x 2 zoom-15 tiles around the centre: about 1.2 km square each,
    each holding more than a 1000-feature page at district density."""
    return [tile_bounds(*t) for t in tile_block(area, 15, 2)]


def floor_load(
    database_url: str, tiles: list[tuple[int, int, int]], concurrency: int, duration_s: float
) -> dict[str, Any]:
    """``concurrency`` threads, each with its own connection, running :data:`FLOOR_SQL`
    round-robin over ``tiles`` for ``duration_s``: requests/s and latency percentiles."""
    latencies: list[float] = []
    lock = threading.Lock()
    byte_count = [0]
    deadline = [0.0]
    ready = threading.Barrier(concurrency + 1)

    def client(offset: int) -> None:
        with psycopg.connect(libpq(database_url), autocommit=True) as conn:
            conn.execute("SELECT 1")
            ready.wait()
            i = offset
            mine, size = [], 0
            while True:
                z, x, y = tiles[i % len(tiles)]
                began = time.perf_counter()
                if began >= deadline[0]:
                    break
                row = conn.execute(
                    FLOOR_SQL, {"z": z, "x": x, "y": y, "cap": FEATURE_CAP}
                ).fetchone()
                mine.append(time.perf_counter() - began)
                size += len(row[0]) if row and row[0] else 0
                i += 1
            with lock:
                latencies.extend(mine)
                byte_count[0] += size

    threads = [threading.Thread(target=client, args=(k,)) for k in range(concurrency)]
    for t in threads:
        t.start()
    deadline[0] = time.perf_counter() + duration_s
    ready.wait()
    began = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "tool": "psycopg",
        "concurrency": concurrency,
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "bytes": byte_count[0],
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of repeated runs, with the spread of requests/s."""
    rps = [r["rps"] for r in runs]
    return {
        "rps": round(statistics.median(rps), 1),
        "rps_min": round(min(rps), 1),
        "rps_max": round(max(rps), 1),
        "p50_ms": round(statistics.median(r["p50_ms"] for r in runs), 1),
        "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 1),
        "errors": sum(r.get("errors", 0) + r.get("non_2xx", 0) for r in runs),
        "runs": len(runs),
    }
