"""The benchmark suite runs end to end (small scale, this API and the floor only).

Speed is not asserted here (docs/performance.md has the figures); what is asserted is
that every stage ran and agreed with itself: the load wrote what the bundle holds, the
COPY floor put back the same rows, the counters equal the recount, every verification
showed in the rates, every tile and page answered, and the tables were written.
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
