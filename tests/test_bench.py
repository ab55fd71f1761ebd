"""The benchmark suite runs end to end (small scale, this API and the floor only).

Speed is not asserted here (docs/performance.md has the figures); what is asserted is
that every stage ran and agreed with itself: the load wrote what the bundle holds, the
COPY floor put back the same rows, the counters equal the recount, every verification
showed in the rates, every tile and page answered, and the tables were written. Our API
connected as the API role (row-level security applies to it) and the policies-on/off
A/B produced figures for every case, with the same answers either way; no token or
password reached the results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_small_benchmark_runs_and_agrees_with_itself(tmp_path: Path):
    out = tmp_path / "small.json"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--scale",
            "small",
            "--skip-peers",
            "--duration",
            "0.5",
            "--repeat",
            "1",
            "--ab-rounds",
            "2",
            "--workdir",
            str(tmp_path / "work"),
            "--out",
            str(out),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["load"]["rows"] == results["copy_floor"]["rows"]
    assert results["load"]["rows"]["building"] == 4000  # 10 communities of 400
    rates = results["rates"]
    assert rates["recount_equals_counters"] is True
    assert rates["verification"]["every_one_shown"] is True
    ours = results["servers"]["registry"]
    for z, tiles in ours["tiles"].items():
        assert set(tiles["statuses"]) <= {200, 204}, z
        assert tiles["load"]["1"]["errors"] == 0
    assert ours["tiles"]["16"]["features"] > 0
    assert ours["items"]["statuses"] == [200] and ours["items"]["features"] > 0
    assert results["floor"]["16"]["load"]["1"]["rps"] > 0
    assert "Vector tiles" in out.with_suffix(".md").read_text()

    # security: the API role, the A/B of the policies, the plans, no secrets written
    assert results["database"]["geometry_overlaps_leakproof"] is True
    assert ours["connected_as"] == ["registry_api"]
    assert results["servers"]["registry-uncached"]["connected_as"] == ["registry_api"]
    ab = results["rls"]
    assert ab["connected_as"] == ["registry_api"]
    assert ab["order"] == ["on", "off", "on", "off"]
    assert "building" in ab["tables_switched"]
    cases = {f"tiles z{z} {kind}" for z in (12, 14, 16) for kind in ("cached", "uncached")}
    assert set(ab["cases"]) == cases | {"items"}
    for case, by_concurrency in ab["cases"].items():
        assert set(by_concurrency) == {"1", "8", "32"}, case
        for entry in by_concurrency.values():
            for state in ("on", "off"):
                assert entry[state]["rps"] > 0 and entry[state]["runs"] == 2, case
                assert entry[state]["errors"] == 0, case
            assert entry["ratio"] > 0
        assert ab["features"]["on"][case] == ab["features"]["off"][case], case
        assert ab["features"]["on"][case] == ab["features"]["admin"][case], case
    for plan in ab["plans"].values():
        assert plan["on"]["as"] == "registry_api"
        assert plan["on"]["gist_indexes"] and not plan["on"]["seq_scan_on_building"]
    written = out.read_text() + out.with_suffix(".md").read_text()
    assert "rgt_" not in written  # bearer tokens
    assert ours["config"]["env"]["REGISTRY_API_PASSWORD"] == "***"
    assert ours["config"]["headers"] == {"Authorization": "Bearer ***"}


def test_field_verification_benchmark_runs_and_agrees_with_itself(tmp_path: Path):
    """``python -m bench.fieldwork`` at small scale with few requests: every read and write
    answered as expected, each contention round had exactly one winner, the history and
    versions match the writes made, and the server connected as the API role."""
    out = tmp_path / "fieldwork.json"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    small = ["--reads", "5", "--duration", "0.5", "--writes", "5", "--client-writes", "2"]
    small += ["--photo-writes", "2", "--client-photo-writes", "1", "--geometry-writes", "3"]
    small += ["--creates", "2", "--rounds", "3", "--explain-repeat", "1"]
    small += ["--workdir", str(tmp_path / "work"), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.fieldwork", "--scale", "small", *small],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    for read in results["reads"].values():
        assert read["sequential"]["n"] == 5
        for run in ("sequential", "concurrent", "sequential_new_connection"):
            assert set(read[run]["statuses"]) == {"200"}, (read["label"], run)
            assert not read[run]["errors"], (read["label"], run)
    contention = results["contention"]
    assert contention["rounds_exactly_one_200"] == contention["rounds"] == 3
    assert contention["other"] == 0
    consistency = results["consistency"]
    assert consistency["all_ok"] is True, consistency["checks"]
    assert consistency["writes_ok"] > 0
    assert results["connected_as"] == "registry_api"
    assert "Field verification benchmark" in out.with_suffix(".md").read_text()


def test_history_benchmark_runs_and_agrees_with_itself(tmp_path: Path):
    """``python -m bench.history`` at small scale with the fewest runs: every stage produced
    figures, the load wrote one version and one feed row per row, the edits' feed pages
    hold exactly the edits, and the rates read from the history as of now equal the
    counters row for row (the benchmark itself fails otherwise)."""
    out = tmp_path / "history.json"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    edits = 5
    small = ["--repeat", "1", "--edits", str(edits), "--runs", "1", "--feed-runs", "1"]
    small += ["--max-pages", "2", "--no-explain"]
    small += ["--workdir", str(tmp_path / "work"), "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "bench.history", "--scale", "small", *small],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())

    load = results["load"]
    assert load["order"] == ["on", "off"]
    assert all(len(load["seconds"][s]) == 1 and load["seconds"][s][0] > 0 for s in ("on", "off"))
    assert load["ratio_on_off"] > 0
    sizes = load["sizes"]["tables"]
    # 10 communities of 400 buildings; the load is their first version each
    assert sizes["building"]["rows"] == sizes["building"]["history_rows"] == 4000
    for table, size in sizes.items():
        assert size["history_rows"] == size["rows"], table
    # every loaded row is one insert in the feed, all in the load's one transaction
    loaded = sum(size["rows"] for size in sizes.values())
    assert load["sizes"]["registry_change"]["rows"] == loaded
    block = results["feed"]["bulk_block"]
    assert block["seq_last"] - block["seq_first"] == loaded

    for table in ("building", "residence"):
        for state in ("on", "off"):
            # the first transaction of each (compiling the triggers) is reported apart
            assert results["edits"][table][state]["n"] == edits - 1, (table, state)
            assert results["edits"][table][state]["p50_ms"] > 0, (table, state)

    rates = results["rates"]
    assert rates["history_now_equals_counters"] is True, rates["mismatches"]
    assert set(rates["scopes"]) == {"city", "district", "street", "community"}
    for scope, entry in rates["scopes"].items():
        assert entry["history_now_equals_counters"] is True, scope
        assert entry["recount_equals_counters"] is True, scope
        for method in ("counters", "recount", "history_now", "history_past"):
            assert entry[method]["p50_ms"] > 0 and entry[method]["rows"] >= 1, (scope, method)
    assert rates["scopes"]["city"]["counters"]["rows"] == 10  # one row per community

    feed = results["feed"]
    for position, pages in feed["load_pages"].items():
        for data, page in pages.items():
            assert page["returned"] == 1000 and page["p50_ms"] > 0, (position, data)
    # each edit is one transaction changing one row: building and residence edits
    assert feed["edit_pages"]["transactions"] == 2 * edits
    assert feed["edit_pages"]["with_data"]["returned"] == 2 * edits
    assert feed["whole_without_data"]["changes"] == 2 * 10_000  # --max-pages 2
    assert feed["whole_with_data_pages_of_1000"]["changes"] == 2 * 1000

    features = results["features"]
    for name in ("now", "history_now", "history_past"):
        assert features[name]["returned"] == 1000 and features[name]["p50_ms"] > 0, name
    # the past moment lies after the load's valid-from: the same buildings match
    assert features["history_past"]["matched"] == features["now"]["matched"]
    assert "History and change feed benchmark" in out.with_suffix(".md").read_text()
