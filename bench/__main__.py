"""``python -m bench --scale district``: the registry side by side with tipg and pygeoapi.

One run, one machine, one database: synthesize the bundle, load it (and time a bare COPY
of the same rows), read the rates, then serve the same ``building`` table with each
server in turn (same workers, same pool per worker) under the same HTTP load, and the
same tiles through bare SQL. Our API signs in as an analyst and connects as the API role,
so row-level security filters every row it reads; an A/B of it with the policies on and
off, interleaved, shows what they cost (:mod:`bench.rls`). Prints a table and writes JSON
and Markdown to ``bench/results/``. Method and figures: docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import peers, report, rls, workload
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
from registry.tiles import tile_of

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
    parser.add_argument(
        "--ab-rounds",
        type=int,
        default=4,
        help="rounds of the row-level security A/B (policies on, off, on, off, ...); 0 skips it",
    )
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


def load_runs(
    urls: list[str], args: argparse.Namespace, headers: dict[str, str]
) -> dict[int, dict[str, Any]]:
    """Each concurrency ``args.repeat`` times; the median run and the spread."""
    results = {}
    for concurrency in CONCURRENCY:
        runs = [
            run_load(urls, concurrency, args.duration, headers=headers).as_dict()
            for _ in range(args.repeat)
        ]
        results[concurrency] = workload.summarise(runs)
    return results


def serve_and_measure(
    server: peers.Server,
    tile_urls: dict[int, list[str]] | None,
    item_urls: list[str] | None,
    args: argparse.Namespace,
    roles_from: str | None = None,
) -> dict[str, Any]:
    """Start the server, check what it answers, load it, and record its peak memory (and,
    given the owner's ``roles_from`` URL, which role our API connected as)."""
    log(f"{server.name}: starting")
    result: dict[str, Any] = {}
    headers = server.headers
    with server, track(server.pid) as memory:
        if tile_urls:
            result["tiles"] = {}
            for z, urls in tile_urls.items():
                probes = warm(urls, headers)
                log(f"{server.name}: z{z} tiles {[p.status for p in probes]}")
                result["tiles"][z] = {
                    "features": sum(p.features or 0 for p in probes),
                    "bytes": sum(p.bytes for p in probes),
                    "statuses": sorted({p.status for p in probes}),
                    "load": load_runs(urls, args, headers),
                }
        if item_urls:
            probes = warm(item_urls, headers)
            log(f"{server.name}: items {[p.status for p in probes]}")
            result["items"] = {
                "features": sum(p.features or 0 for p in probes),
                "statuses": sorted({p.status for p in probes}),
                "load": load_runs(item_urls, args, headers),
            }
        if roles_from:
            result["connected_as"] = rls.connected_roles(roles_from)
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


def features(urls: list[str], headers: dict[str, str]) -> tuple[int, list[int]]:
    """Features in the answers to ``urls`` and the statuses seen."""
    probes = warm(urls, headers)
    return sum(p.features or 0 for p in probes), sorted({p.status for p in probes})


def rls_ab(
    args: argparse.Namespace,
    database_url: str,
    access: rls.Access,
    tables: list[str],
    ours: Callable[..., peers.Server],
    tile_urls: Callable[..., dict[int, list[str]]],
    item_urls: Callable[[str], list[str]],
) -> dict[str, Any]:
    """Our API with the policies on and off, interleaved run by run.

    Two servers run throughout, as the analyst: tile cache on (cached tiles, items pages)
    and off (uncached tiles). For each case and concurrency the load runs alternate on,
    off, on, off, ... (``args.ab_rounds`` of each), so that whatever else loads the
    machine falls on both alike. Off is ``ALTER TABLE … DISABLE ROW LEVEL SECURITY`` on
    ``tables`` as the owner before the run, enabled again right after it, whatever
    happens; the servers' connections are idle in between, and PostgreSQL replans their
    prepared statements when the setting changes. Cached tiles never read a table with
    policies (a hit reads only the tile versions), so their ratio shows the noise floor.
    """
    runs: dict[str, dict[str, dict[int, list[dict[str, Any]]]]] = {"on": {}, "off": {}}
    answers: dict[str, dict[str, Any]] = {"on": {}, "off": {}, "admin": {}}
    admin = rls.bearer(access.admin_token)

    def policies(state: str) -> contextlib.AbstractContextManager[None]:
        if state == "off":
            return rls.policies_off(database_url, tables)
        return contextlib.nullcontext()

    cached = ours(18310, "registry-rls-cached")
    uncached = ours(18311, "registry-rls-uncached", cached=False)
    log("row-level security A/B: starting two servers")
    with cached, uncached:
        cases: dict[str, tuple[peers.Server, list[str]]] = {}
        for server, kind in ((cached, "cached"), (uncached, "uncached")):
            for z, urls in tile_urls(peers.registry_tile_url, server.base_url).items():
                cases[f"tiles z{z} {kind}"] = (server, urls)
        cases["items"] = (cached, item_urls(cached.base_url))
        for case, (server, urls) in cases.items():
            for state in ("on", "off"):
                with policies(state):
                    answers[state][case] = features(urls, server.headers)
            answers["admin"][case] = features(urls, admin)
            log(f"row-level security A/B: {case}, answers {answers['on'][case]}")
            for c in CONCURRENCY:
                for _ in range(args.ab_rounds):
                    for state in ("on", "off"):
                        with policies(state):
                            run = run_load(urls, c, args.duration, headers=server.headers)
                        runs[state].setdefault(case, {}).setdefault(c, []).append(run.as_dict())
        roles = rls.connected_roles(database_url)
        configs = {server.name: server.describe() for server in (cached, uncached)}
    after = rls.policy_tables(database_url)
    if after != tables:
        raise RuntimeError(f"row-level security not restored: {tables} before, {after} after")
    return {
        "budget_ratio": rls.BUDGET,
        "rounds": args.ab_rounds,
        "order": ["on", "off"] * args.ab_rounds,
        "tables_switched": tables,
        "connected_as": roles,
        "features": answers,
        "cases": rls.ab_summary(runs, workload.summarise),
        "config": configs,
    }


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
    access = rls.prepare_access(database_url)
    results["access"] = access.describe()
    results["security"] = rls.security_facts(database_url)

    area = workload.densest_area(database_url)
    tiles = workload.tile_lists(area)
    boxes = workload.item_boxes(area)
    results["area"] = {"lon": area.lon, "lat": area.lat, "buildings_z14": area.buildings}

    def tile_urls(make: Callable[[str, int, int, int], str], base: str) -> dict[int, list[str]]:
        return {z: [make(base, *t) for t in addresses] for z, addresses in tiles.items()}

    servers: dict[str, Any] = {}
    port = 18300

    def ours(port: int, name: str, cached: bool = True) -> peers.Server:
        """Our API as the analyst, through the API role; ``cached=False``: no tile cache."""
        return peers.registry_server(
            database_url,
            port,
            args.workers,
            args.pool_size,
            None if cached else {"REGISTRY_TILE_CACHE_SIZE": "0"},
            workdir=workdir,
            api_password=access.api_password,
            token=access.analyst_token,
            name=name,
        )

    def item_urls(base: str) -> list[str]:
        return [peers.registry_items_url(base, b, 1000) for b in boxes]

    registry = ours(port, "registry")
    servers["registry"] = serve_and_measure(
        registry,
        tile_urls(peers.registry_tile_url, registry.base_url),
        item_urls(registry.base_url),
        args,
        roles_from=database_url,
    )
    uncached = ours(port + 1, "registry-uncached", cached=False)
    servers["registry-uncached"] = serve_and_measure(
        uncached,
        tile_urls(peers.registry_tile_url, uncached.base_url),
        None,
        args,
        roles_from=database_url,
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
    if args.ab_rounds > 0:
        centre = tile_of(area.lon, area.lat, 16)
        queries = rls.plan_queries((16, *centre), boxes[0])
        log("plans as the API role, policies on and off")
        tables = rls.policy_tables(database_url)
        plans = rls.plans_on_and_off(database_url, access, tables, queries)
        results["rls"] = rls_ab(args, database_url, access, tables, ours, tile_urls, item_urls)
        results["rls"]["plans"] = plans
        results["rls"]["narrow_scope"] = rls.narrow_scope_plans(database_url, access)
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
