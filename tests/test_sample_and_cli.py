"""The sample bundle, the synthetic city generator, and the commands users start with."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from registry.bundle.load import load_bundle
from registry.cli import SAMPLE_BUNDLE
from registry.rates import COUNTS, compute_rates

EXPECTED = json.loads((SAMPLE_BUNDLE / "expected_counts.json").read_text(encoding="utf-8"))
REGISTRY = str(Path(sys.executable).with_name("registry"))  # the installed console script


def test_sample_bundle_matches_its_independently_computed_counts(session, vault):
    """expected_counts.json is computed by data/fixtures/build_guanggu.py with shapely
    (areas in EPSG:4547 metres, distances on the ellipsoid), not by the database."""
    report = load_bundle(session, SAMPLE_BUNDLE, vault)
    assert report.errors == []
    assert [p.reason.split(":")[0] for p in report.warnings] == ["invalid polygon repaired"]
    rows = compute_rates(session, as_of=dt.date.fromisoformat(EXPECTED["as_of"]))
    expected = {c["code"]: c for c in EXPECTED["communities"]}
    assert {r["code"] for r in rows} == set(expected)
    for row in rows:
        for field in COUNTS:
            assert row[field] == expected[row["code"]][field], (row["code"], field)
    empty = next(r for r in rows if r["buildings"] == 0)
    assert empty["on_map_rate"] is None and empty["coverage_rate"] is None


def bundle_digest(path: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(path.iterdir()):
        digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()


def test_synth_is_deterministic_and_loads_cleanly(cli, tmp_path: Path):
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert cli("synth", first, "--communities", "2", "--seed", "7").exit_code == 0
    assert cli("synth", second, "--communities", "2", "--seed", "7").exit_code == 0
    assert cli("synth", other, "--communities", "2", "--seed", "8").exit_code == 0
    assert bundle_digest(first) == bundle_digest(second)
    assert bundle_digest(first) != bundle_digest(other)

    result = cli("load", first)
    assert result.exit_code == 0, result.output
    rows = json.loads(cli("rates", "--format", "json").stdout)
    assert len(rows) == 2
    for row in rows:
        assert row["buildings"] > 300
        assert 0.9 < row["on_map_rate"] < 1  # about 3 % have no geometry
        assert 0.8 < row["coverage_rate"] < 1
        assert 0.8 < row["population_on_map_rate"] < 1


def test_demo_loads_the_sample_and_prints_rates(cli):
    """With DATABASE_URL set (as in docker compose) the demo uses that database."""
    result = cli("demo", "--no-serve")
    assert result.exit_code == 0, result.output
    assert "using DATABASE_URL" in result.stdout
    assert "loaded" in result.stdout
    for community in EXPECTED["communities"]:
        assert community["code"] in result.stdout
    assert "rates by street" in result.stdout and "关山街道" in result.stdout
    assert "— (0/0)" in result.stdout  # the empty community
    # a second run is an idempotent reload
    again = cli("demo", "--no-serve")
    assert again.exit_code == 0
    assert "inserted" in again.stdout


def test_commands_without_a_database_say_what_to_do(tmp_path: Path, monkeypatch):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["REGISTRY_HOME"] = str(tmp_path / "empty-home")
    result = subprocess.run(
        [REGISTRY, "rates"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 1
    assert "Run `registry db up` first" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_unreachable_database_url_is_a_clear_error(tmp_path: Path):
    env = dict(os.environ, DATABASE_URL="postgresql://nobody:x@127.0.0.1:9/none")
    result = subprocess.run(
        [REGISTRY, "rates"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 1
    assert "cannot connect" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def embedded_home(tmp_path: Path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["REGISTRY_HOME"] = str(home)
    yield env
    subprocess.run([REGISTRY, "db", "down"], env=env, capture_output=True, check=False)
    from registry.embedded import EmbeddedCluster

    EmbeddedCluster(home).destroy()


def test_db_up_status_load_down_through_the_console_script(embedded_home, tmp_path: Path):
    """The installed `registry` command, end to end on its own embedded cluster."""

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [REGISTRY, *args], capture_output=True, text=True, env=embedded_home, check=False
        )

    up = run("db", "up")
    assert up.returncode == 0, up.stderr
    assert up.stdout.strip().startswith("postgresql+psycopg://registry:")
    assert "created key file" in up.stderr
    key_file = Path(embedded_home["REGISTRY_HOME"]) / "keys.json"
    assert key_file.stat().st_mode & 0o777 == 0o600

    status = run("db", "status")
    assert "embedded:   running" in status.stdout and "postgis" in status.stdout

    load = run("load", str(SAMPLE_BUNDLE))
    assert load.returncode == 0, load.stderr
    rates = json.loads(run("rates", "--level", "city", "--format", "json").stdout)
    assert rates[0]["buildings"] == sum(c["buildings"] for c in EXPECTED["communities"])

    assert run("db", "down").returncode == 0
    assert "embedded:   stopped" in run("db", "status").stdout
    stopped = run("rates")
    assert stopped.returncode == 1 and "registry db up" in stopped.stderr
