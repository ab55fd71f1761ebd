"""Rates at scale: cold and warm reads of the counters, the recount they replace, and the
time from a building verification to the rates showing it.

"Cold" is the first read on a new connection in a new process (``registry rates``, start
to exit) and on a new connection in this one; "warm" the median of repeated reads on one
connection. A verification is what an officer's correction does: one UPDATE giving an
unmapped building an outline and marking it verified, committed; the latency is until a
rates read on another connection shows the building on the map. The first verification
on a new connection also pays for compiling the trigger functions; it is reported apart.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from bench.loadbench import registry_command
from registry.db import make_engine
from registry.rates import compute_rates


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def timed(fn: Any) -> tuple[float, Any]:
    began = time.perf_counter()
    result = fn()
    return time.perf_counter() - began, result


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max in milliseconds."""
    return {
        "median_ms": _ms(statistics.median(values)),
        "min_ms": _ms(min(values)),
        "max_ms": _ms(max(values)),
        "n": len(values),
    }


def cli_rates_seconds(database_url: str, level: str) -> float:
    """Wall time of ``registry rates --level LEVEL --format json`` in a new process."""
    env = {**os.environ, "DATABASE_URL": database_url}
    began = time.perf_counter()
    subprocess.run(
        [
            registry_command(),
            "rates",
            "--level",
            level,
            "--format",
            "json",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - began


def measure_rates(database_url: str, repeat: int = 10) -> dict[str, Any]:
    engine = make_engine(database_url)
    try:
        result: dict[str, Any] = {
            "cli_district_cold_ms": _ms(cli_rates_seconds(database_url, "district")),
            "cli_community_cold_ms": _ms(cli_rates_seconds(database_url, "community")),
        }
        with Session(engine) as session:
            seconds, rows = timed(lambda: compute_rates(session, "district"))
            result["district_first_on_new_connection_ms"] = _ms(seconds)
            result["districts"] = len(rows)
            for level in ("community", "district", "city"):
                times = [
                    timed(lambda lv=level: compute_rates(session, lv))[0] for _ in range(repeat)
                ]
                result[f"{level}_warm"] = spread(times)
            seconds, recounted = timed(lambda: compute_rates(session, "district", recount=True))
            result["district_recount_from_definitions_ms"] = _ms(seconds)
            result["recount_equals_counters"] = recounted == compute_rates(session, "district")
        result["verification"] = measure_verification(engine, repeat)
    finally:
        engine.dispose()
    return result


def measure_verification(engine: Any, repeat: int) -> dict[str, Any]:
    """Give ``repeat`` unmapped buildings an outline (a neighbour's, shifted), one commit
    each, and time until a reader sees each community's on-map count move; then undo."""
    with Session(engine) as writer, Session(engine) as reader:
        targets = writer.execute(
            text(
                "SELECT b.id, b.community_code, "
                "(SELECT ST_Translate(n.footprint, 0.00005, 0.00005) FROM building n "
                " WHERE n.community_code = b.community_code AND n.footprint IS NOT NULL "
                " ORDER BY n.id LIMIT 1) AS outline "
                "FROM building b WHERE b.footprint IS NULL AND b.status <> 'demolished' "
                "ORDER BY b.id LIMIT :n"
            ),
            {"n": repeat + 1},
        ).all()
        writer.commit()
        compute_rates(reader, "community", targets[0].community_code)  # warm the reader
        reader.commit()
        update = text(
            "UPDATE building SET footprint = :outline, verification = 'verified', "
            "verified_at = now() WHERE id = :id"
        )
        write_times, visible_times, checks = [], [], []
        for target in targets:
            (before,) = compute_rates(reader, "community", target.community_code)
            reader.commit()
            began = time.perf_counter()
            writer.execute(update, {"outline": target.outline, "id": target.id})
            writer.commit()
            written = time.perf_counter()
            (after,) = compute_rates(reader, "community", target.community_code)
            reader.commit()
            seen = time.perf_counter()
            write_times.append(written - began)
            visible_times.append(seen - began)
            checks.append(after["buildings_on_map"] == before["buildings_on_map"] + 1)
        for target in targets:  # leave the data as loaded for the benchmarks after this
            writer.execute(
                text(
                    "UPDATE building SET footprint = NULL, verification = 'unverified', "
                    "verified_at = NULL WHERE id = :id"
                ),
                {"id": target.id},
            )
        writer.commit()
    return {
        "first_on_new_connection_ms": _ms(visible_times[0]),
        "update_and_commit": spread(write_times[1:]),
        "until_rates_show_it": spread(visible_times[1:]),
        "every_one_shown": all(checks),
    }
