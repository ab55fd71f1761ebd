"""``python -m bench --scale district``: the registry side by side with tipg and pygeoapi.

One run, one machine, one database: synthesize the bundle, load it (and time a bare COPY
of the same rows), read the rates, then serve the same ``building`` table with each
server in turn (same workers, same pool per worker) under the same HTTP load, and the
same tiles through bare SQL. Prints a table and writes JSON and Markdown to
``bench/results/``. Method and figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import peers, report, workload
from bench.database import (
    cluster,
    fresh_database,
    server_facts,
    synthesize,
    vacuum_analyze,
)
from bench.httpload import run_load, warm, wrk_available
from bench.loadbench import measure_copy_floor, measure_load
from bench.procmem import track
from bench.rates import measure_rates

SCALES = {"small": 10, "district": 150, "city": 1500}
CONCURRENCY = (1, 8, 32)
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--scale", choices=SCALES, default="district")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=peers.DEFAULT_WORKDIR)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per load run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per configuration")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--pool-size", type=int, default=10, help="connections per worker")
    parser.add_argument("--skip-peers", action="store_true", help="only this API and the floor")
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    with open("/proc/meminfo") as fh:
        total_kib = int(fh.readline().split()[1])
    cpu = "unknown"
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(total_kib / 2**20, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_tool": "wrk" if wrk_available() else "httpx",
    }


def load_runs(urls: list[str], args: argparse.Namespace) -> dict[int, dict[str, Any]]:
    """Each concurrency ``args.repeat`` times; the median run and the spread."""
    results = {}
    for concurrency in CONCURRENCY:
        runs = [run_load(urls, concurrency, args.duration).as_dict() for _ in range(args.repeat)]
        results[concurrency] = workload.summarise(runs)
    return results


def serve_and_measure(
    server: peers.Server,
    tile_urls: dict[int, list[str]] | None,
    item_urls: list[str] | None,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Start the server, check what it answers, load it, and record its peak memory."""
    log(f"{server.name}: starting")
    result: dict[str, Any] = {}
    with server, track(server.pid) as memory:
        if tile_urls:
            result["tiles"] = {}
            for z, urls in tile_urls.items():
                probes = warm(urls)
                log(f"{server.name}: z{z} tiles {[p.status for p in probes]}")
                result["tiles"][z] = {
                    "features": sum(p.features or 0 for p in probes),
                    "bytes": sum(p.bytes for p in probes),
                    "statuses": sorted({p.status for p in probes}),
                    "load": load_runs(urls, args),
                }
        if item_urls:
            probes = warm(item_urls)
            log(f"{server.name}: items {[p.status for p in probes]}")
            result["items"] = {
                "features": sum(p.features or 0 for p in probes),
                "statuses": sorted({p.status for p in probes}),
                "load": load_runs(item_urls, args),
            }
        result["config"] = server.describe()
    result["memory"] = memory.as_dict()
    return result


def floor_runs(database_url: str, tiles: dict[int, list], args: argparse.Namespace) -> dict:
    out = {}
    for z, addresses in tiles.items():
        out[z] = {
            "load": {
                c: workload.summarise(
                    [
                        workload.floor_load(database_url, addresses, c, args.duration)
                        for _ in range(args.repeat)
                    ]
                )
                for c in CONCURRENCY
            }
        }
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = peers.prepare_workdir(args.workdir)
    communities = SCALES[args.scale]
    results: dict[str, Any] = {
        "scale": args.scale,
        "communities": communities,
        "seed": args.seed,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "settings": {
            "workers": args.workers,
            "pool_size_per_worker": args.pool_size,
            "duration_s": args.duration,
            "repeat": args.repeat,
            "concurrency": list(CONCURRENCY),
        },
    }

    log("preparing the peers' virtual environments")
    venvs = {}
    if not args.skip_peers:
        venvs["tipg"] = peers.venv_versions(peers.ensure_tipg_venv(workdir))
        venvs["pygeoapi"] = peers.venv_versions(peers.ensure_pygeoapi_venv(workdir))
    results["peer_versions"] = venvs

    log(f"synthesizing {communities} communities")
    bundle = workdir / "bundles" / f"{args.scale}-seed{args.seed}"
    results["synth"] = synthesize(bundle, communities, args.seed)
    log(f"synthesized in {results['synth']['seconds']} s")

    postgres = cluster(workdir)
    try:
        return run(args, results, bundle, workdir, postgres.up())
    finally:
        postgres.down()


def run(
    args: argparse.Namespace,
    results: dict[str, Any],
    bundle: Path,
    workdir: Path,
    admin_url: str,
) -> int:
    """Everything after the bundle, on the running cluster at ``admin_url``."""
    database_url = fresh_database(admin_url, f"bench_{args.scale}")
    results["database"] = server_facts(database_url)

    log("registry load")
    results["load"] = measure_load(database_url, bundle)
    log("bare COPY of the same rows")
    results["copy_floor"] = measure_copy_floor(database_url)
    log("VACUUM (ANALYZE), untimed")
    results["vacuum_analyze_s"] = vacuum_analyze(database_url)

    log("rates")
    results["rates"] = measure_rates(database_url)

    area = workload.densest_area(database_url)
    tiles = workload.tile_lists(area)
    boxes = workload.item_boxes(area)
    results["area"] = {"lon": area.lon, "lat": area.lat, "buildings_z14": area.buildings}

    def tile_urls(make: Callable[[str, int, int, int], str], base: str) -> dict[int, list[str]]:
        return {z: [make(base, *t) for t in addresses] for z, addresses in tiles.items()}

    servers: dict[str, Any] = {}
    port = 18300
    ours = peers.registry_server(database_url, port, args.workers, args.pool_size, workdir=workdir)
    servers["registry"] = serve_and_measure(
        ours,
        tile_urls(peers.registry_tile_url, ours.base_url),
        [peers.registry_items_url(ours.base_url, b, 1000) for b in boxes],
        args,
    )
    uncached = peers.registry_server(
        database_url,
        port + 1,
        args.workers,
        args.pool_size,
        {"REGISTRY_TILE_CACHE_SIZE": "0"},
        workdir=workdir,
    )
    uncached.name = "registry-uncached"
    servers["registry-uncached"] = serve_and_measure(
        uncached, tile_urls(peers.registry_tile_url, uncached.base_url), None, args
    )
    if not args.skip_peers:
        tipg = peers.tipg_server(workdir, database_url, port + 2, args.workers, args.pool_size)
        servers["tipg"] = serve_and_measure(
            tipg,
            tile_urls(peers.tipg_tile_url, tipg.base_url),
            [peers.tipg_items_url(tipg.base_url, b, 1000) for b in boxes],
            args,
        )
        pygeoapi = peers.pygeoapi_server(
            workdir, database_url, port + 3, args.workers, args.pool_size, tiles=False
        )
        servers["pygeoapi"] = serve_and_measure(
            pygeoapi,
            None,
            [peers.pygeoapi_items_url(pygeoapi.base_url, b, 1000) for b in boxes],
            args,
        )
    results["servers"] = servers
    log("bare SQL floor")
    results["floor"] = floor_runs(database_url, tiles, args)
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    out = args.out or RESULTS / f"{args.scale}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n")
    markdown = report.markdown(results)
    out.with_suffix(".md").write_text(markdown)
    report.print_tables(results)
    log(f"results: {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
