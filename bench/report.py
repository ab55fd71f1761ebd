"""The benchmark's results as terminal tables and as Markdown for docs/performance.md."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

TILE_SERVERS = ("registry", "registry-uncached", "tipg")
ITEM_SERVERS = ("registry", "tipg", "pygeoapi")


def _ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "—"
    return f"{a / b:.2f}×"


def _cell(load: dict[str, Any] | None) -> str:
    if not load:
        return "—"
    return (
        f"{load['rps']:.1f} ({load['rps_min']:.0f}–{load['rps_max']:.0f}) "
        f"p50 {load['p50_ms']:.0f} p99 {load['p99_ms']:.0f}"
        + (f" ⚠{load['errors']} err" if load.get("errors") else "")
    )


def _load(results: dict[str, Any], server: str, kind: str, z: Any, c: Any) -> dict | None:
    entry = results.get("servers", {}).get(server)
    if not entry or kind not in entry:
        return None
    section = entry[kind][z] if kind == "tiles" else entry[kind]
    loads = section["load"]
    return loads.get(c) or loads.get(str(c))


def _floor(results: dict[str, Any], z: Any, c: Any) -> dict | None:
    floor = results.get("floor", {}).get(z) or results.get("floor", {}).get(str(z))
    if not floor:
        return None
    return floor["load"].get(c) or floor["load"].get(str(c))


def rows(results: dict[str, Any]) -> dict[str, list[list[str]]]:
    """The tables as rows of strings: summary, tiles, items, memory."""
    load = results["load"]
    copy = results["copy_floor"]
    rates = results["rates"]
    verification = rates["verification"]
    summary = [
        ["synthesize bundle", f"{results['synth']['seconds']} s", results["synth"]["summary"]],
        [
            "registry load",
            f"{load['seconds']} s, {load['rows_per_s']:,.0f} rows/s",
            f"peak RSS {load.get('peak_rss_mib', '?')} MiB",
        ],
        [
            "bare COPY, same rows",
            f"{copy['seconds']} s, {copy['rows_per_s']:,.0f} rows/s",
            f"load at {load['rows_per_s'] / copy['rows_per_s']:.0%} of COPY (target ≥ 30%)",
        ],
        [
            "rates, whole district, cold",
            f"{rates['district_first_on_new_connection_ms']} ms on a new connection",
            f"`registry rates` process {rates['cli_district_cold_ms']} ms (target < 2 s)",
        ],
        [
            "rates, warm (median)",
            f"district {rates['district_warm']['median_ms']} ms, "
            f"community {rates['community_warm']['median_ms']} ms",
            f"recount from definitions: {rates['district_recount_from_definitions_ms']} ms",
        ],
        [
            "verification → rates",
            f"{verification['until_rates_show_it']['median_ms']} ms median "
            f"(max {verification['until_rates_show_it']['max_ms']})",
            f"first on a new connection {verification['first_on_new_connection_ms']} ms "
            "(target < 100 ms)",
        ],
    ]
    tiles = []
    for z in (12, 14, 16):
        for c in (1, 8, 32):
            ours = _load(results, "registry", "tiles", z, c)
            uncached = _load(results, "registry-uncached", "tiles", z, c)
            tipg = _load(results, "tipg", "tiles", z, c)
            floor = _floor(results, z, c)
            tiles.append(
                [
                    f"z{z} c{c}",
                    _cell(ours),
                    _cell(uncached),
                    _cell(tipg),
                    _cell(floor),
                    _ratio(ours and ours["rps"], tipg and tipg["rps"]),
                    _ratio(uncached and uncached["p50_ms"], floor and floor["p50_ms"]),
                ]
            )
    items = []
    for c in (1, 8, 32):
        loads = [_load(results, s, "items", None, c) for s in ITEM_SERVERS]
        ours = loads[0]
        items.append(
            [
                f"c{c}",
                *(_cell(x) for x in loads),
                _ratio(ours and ours["rps"], loads[1] and loads[1]["rps"]),
                _ratio(ours and ours["rps"], loads[2] and loads[2]["rps"]),
            ]
        )
    memory = [
        [
            name,
            f"{entry['memory']['peak_total_mib']} MiB",
            f"{entry['memory']['peak_single_mib']} MiB",
        ]
        for name, entry in results.get("servers", {}).items()
    ]
    out = {"summary": summary, "tiles": tiles, "items": items, "memory": memory}
    if "rls" in results:
        out["rls"] = rls_rows(results["rls"])
    return out


def _rounds(ratios: list[float | None]) -> str:
    known = [r for r in ratios if r is not None]
    return f"{min(known):.2f}–{max(known):.2f}" if known else "—"


def rls_rows(ab: dict[str, Any]) -> list[list[str]]:
    """Per case and concurrency: policies on, off, on ÷ off and the per-round ratios."""
    body = []
    for case, by_concurrency in ab["cases"].items():
        for c, entry in by_concurrency.items():
            ratio = entry["ratio"]
            body.append(
                [
                    f"{case} c{c}",
                    _cell(entry["on"]),
                    _cell(entry["off"]),
                    f"{ratio:.2f}" if ratio is not None else "—",
                    _rounds(entry["round_ratios"]),
                    "yes" if entry["within_budget"] else "**no**",
                ]
            )
    return body


def plan_lines(results: dict[str, Any]) -> list[str]:
    """The row-level security facts and the plans as Markdown."""
    ab = results["rls"]
    security = results.get("security", {})
    role = security.get("api_role", {})
    leakproof = results.get("database", {}).get("geometry_overlaps_leakproof")
    indexes = security.get("community_code_indexes", {})
    answers = ab.get("features", {})
    same = all(
        answers["on"][case] == answers["off"][case] == answers["admin"][case]
        for case in answers.get("on", {})
    )
    lines = [
        f"Our API connected as {', '.join(ab['connected_as']) or '?'} "
        f"(superuser {role.get('superuser')}, BYPASSRLS {role.get('bypassrls')}); "
        f"`geometry_overlaps` LEAKPROOF: {leakproof}; policies switched off and on again "
        f"on {', '.join(ab['tables_switched'])} around each run off; each case and "
        f"concurrency ran {', '.join(ab['order'])}; the analyst's answers (features, "
        f"statuses) equal with the policies on, off and as admin: {same}; "
        f"indexes on community_code: "
        f"{', '.join(f'{t} ({i})' for t, i in indexes.items())}.",
        "",
    ]
    for name, entry in ab.get("plans", {}).items():
        on = entry["on"]
        lines += [
            f"**EXPLAIN (ANALYZE, BUFFERS) as {on['as']}, analyst context: {name}** — "
            f"median execution {entry['on_median_ms']} ms with the policies, "
            f"{entry['off_median_ms']} ms without, run alternately "
            f"({len(on['execution_ms_runs'])} each; on ÷ off {entry['on_over_off']}, median of "
            f"the paired ratios {entry.get('paired_ratio_median')}); GiST index: "
            f"{', '.join(on['gist_indexes']) or 'none'}; sequential scan of building: "
            f"{on['seq_scan_on_building']}",
            "",
            "```",
            *on["plan"],
            "```",
            "",
        ]
    narrow = ab.get("narrow_scope")
    if narrow:
        one, wide = narrow["community"], narrow["district"]
        lines += [
            f"**Items with no bbox, first page with its count, as an analyst of one community "
            f"({one['jurisdiction'][0]})**: {one['execution_ms']} ms, "
            f"{one['rows_removed_by_filter']:,} rows read and removed by the policy; as the "
            f"district-wide analyst {wide['execution_ms']} ms, "
            f"{wide['rows_removed_by_filter']:,} removed",
            "",
            "```",
            *one["plan"],
            "```",
            "",
        ]
    return lines


HEADERS = {
    "summary": ["measure", "figure", "note"],
    "tiles": [
        "zoom, clients",
        "registry req/s (min–max) ms",
        "registry, no cache",
        "tipg 1.6",
        "bare SQL floor",
        "registry ÷ tipg",
        "uncached p50 ÷ floor p50",
    ],
    "items": ["clients", "registry", "tipg 1.6", "pygeoapi 0.24", "÷ tipg", "÷ pygeoapi"],
    "memory": ["server", "peak RSS, all processes", "largest process"],
    "rls": [
        "case, clients",
        "policies on req/s (min–max) ms",
        "policies off",
        "on ÷ off",
        "per round",
        "within 20%",
    ],
}
TITLES = {
    "summary": "Data, load and rates",
    "tiles": "Vector tiles, buildings (.mvt): requests/s, latency p50/p99 in ms",
    "items": "OGC API Features items (limit 1000, bbox): requests/s, latency p50/p99 in ms",
    "memory": "Memory under load",
    "rls": "Row-level security: our API as an analyst, policies on and off (interleaved)",
}


def print_tables(results: dict[str, Any]) -> None:
    console = Console()
    for name, body in rows(results).items():
        table = Table(title=TITLES[name], title_justify="left")
        for header in HEADERS[name]:
            table.add_column(header)
        for row in body:
            table.add_row(*row)
        console.print(table)


def markdown(results: dict[str, Any]) -> str:
    settings = results["settings"]
    lines = [
        f"Run of {results['started']} – {results.get('finished', '?')}, scale "
        f"`{results['scale']}` ({results['communities']} communities, seed {results['seed']}); "
        f"{results['machine']['cpus']} CPUs ({results['machine']['cpu']}), "
        f"{results['machine']['memory_gib']} GiB; load tool {results['machine']['load_tool']}; "
        f"{settings['workers']} workers and {settings['pool_size_per_worker']} "
        f"connections per worker for every server; each figure is the median of "
        f"{settings['repeat']} runs of {settings['duration_s']} s "
        "(req/s min–max in brackets).",
        "",
    ]
    for name, body in rows(results).items():
        lines += [f"**{TITLES[name]}**", ""]
        lines.append("| " + " | ".join(HEADERS[name]) + " |")
        lines.append("|" + "---|" * len(HEADERS[name]))
        lines += [
            "| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in body
        ]
        lines.append("")
    if "rls" in results:
        lines += plan_lines(results)
    return "\n".join(lines)
