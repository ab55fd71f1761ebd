"""Benchmark the address matcher: quality on the labelled set, then CLI throughput.

``.venv/bin/python bench/address_match.py [--rows 100000] [--seed 1]``

Uses a throw-away database on the server of ``DATABASE_URL`` if set (it must allow
``CREATE DATABASE``), else on a temporary embedded cluster; either is removed at the end.
The database is migrated and the 光谷 sample bundle loaded. Prints figures, not verdicts:
precision, recall, review and unmatched shares over ``data/fixtures/address_match``
(overall and per kind, scored as its README says), then the time ``registry match`` takes
on an N-row CSV sampled from the labelled texts.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import importlib.util
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import psycopg
from sqlalchemy import make_url
from sqlalchemy.orm import sessionmaker

from registry import migrate
from registry.bundle.load import load_bundle
from registry.db import make_engine, transaction
from registry.embedded import EmbeddedCluster
from registry.settings import sqlalchemy_url
from registry.vault import create_key_file, load_vault

ROOT = Path(__file__).resolve().parents[1]
SET_DIR = ROOT / "data" / "fixtures" / "address_match"
SAMPLE = ROOT / "data" / "fixtures" / "guanggu"
LIST_LIMIT = 60
FAST_SERVER = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


def load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("address_match_build", SET_DIR / "build.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def admin(server: str, statement: str) -> None:
    url = make_url(server).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


@contextlib.contextmanager
def database(work: Path) -> Iterator[str]:
    """A fresh database URL on DATABASE_URL's server or a temporary embedded cluster."""
    cluster = None
    external = os.environ.get("DATABASE_URL")
    if external:
        server = sqlalchemy_url(external)
        print(f"server: DATABASE_URL ({make_url(server).host})")
    else:
        cluster = EmbeddedCluster(work / "pg-home", server_settings=FAST_SERVER)
        print("server: temporary embedded cluster, starting …", flush=True)
        server = cluster.up()
    name = f"registry_bench_{uuid.uuid4().hex[:12]}"
    try:
        admin(server, f'CREATE DATABASE "{name}"')
        try:
            yield make_url(server).set(database=name).render_as_string(hide_password=False)
        finally:
            admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        if cluster is not None:
            cluster.destroy()


def prepare(url: str, key_file: Path) -> None:
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        create_key_file(key_file)
        started = time.perf_counter()
        with transaction(engine) as session:
            report = load_bundle(session, SAMPLE, load_vault(key_file))
        if not report.written:
            raise SystemExit(f"the sample bundle did not load: {report.errors}")
        print(f"sample bundle loaded in {time.perf_counter() - started:.1f} s")
    finally:
        engine.dispose()


def quality(build: ModuleType, url: str) -> list[str]:
    """Print the scores on the labelled set; return its texts."""
    from registry.address.match import Matcher

    rows = build.read_labelled(SET_DIR / "labelled.csv")
    engine = make_engine(url)
    try:
        with sessionmaker(engine)() as session:
            started = time.perf_counter()
            matcher = Matcher.load(session)
            loaded = time.perf_counter()
            results = matcher.match_many([r.text for r in rows])
            done = time.perf_counter()
            session.rollback()
    finally:
        engine.dispose()
    score = build.score(rows, [build.Outcome.of(r) for r in results])
    print(f"\n== quality on the labelled set ({len(rows)} rows, {SET_DIR.relative_to(ROOT)})")
    print(
        f"Matcher.load {1000 * (loaded - started):.0f} ms; match_many "
        f"{done - loaded:.2f} s ({1000 * (done - loaded) / len(rows):.2f} ms/row, in process)"
    )
    print(score.summary())
    print(score.table())
    for title, pairs in (
        ("wrong automatic placements", score.wrong_rows),
        ("placeable rows not placed", score.missed_rows),
    ):
        print(f"\n{title}: {len(pairs)}")
        for row, out in pairs[:LIST_LIMIT]:
            got = f"{out.status} {out.address or '-'}/{out.room or '-'}"
            print(f"  {row.id} [{row.kind}] {row.text}  truth {row.address}/{row.room}; {got}")
        if len(pairs) > LIST_LIMIT:
            print(f"  … and {len(pairs) - LIST_LIMIT} more")
    return [r.text for r in rows]


def registry_command() -> str:
    local = Path(sys.executable).parent / "registry"
    found = str(local) if local.exists() else shutil.which("registry")
    if not found:
        raise SystemExit("no `registry` console script: pip install -e . in this environment")
    return found


def run_match(source: Path, out: Path, env: dict[str, str]) -> tuple[float, int, str]:
    """Run ``registry match`` on ``source``: seconds, peak RSS in KiB, output."""
    command = [registry_command(), "match", str(source), "--column", "address", "--out", str(out)]
    log = out.with_suffix(".log")
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as sink:
        proc = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    output = log.read_text(encoding="utf-8").strip()
    if proc.returncode != 0:
        raise SystemExit(f"registry match failed ({proc.returncode}):\n{output}")
    return seconds, usage.ru_maxrss, output


def write_csv(path: Path, texts: list[str]) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", "address"])
        w.writerows(enumerate(texts, 1))


def throughput(texts: list[str], n: int, seed: int, url: str, work: Path, key: Path) -> None:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REGISTRY_HOME": str(work / "home"),
        "REGISTRY_KEY_FILE": str(key),
    }
    print("\n== throughput: registry match FILE.csv --column address --out OUT.csv")
    write_csv(work / "one.csv", texts[:1])
    startup, _, _ = run_match(work / "one.csv", work / "one.matched.csv", env)
    print(f"1-row file (start-up, connect, load the index): {startup:.2f} s")
    source, out = work / "addresses.csv", work / "addresses.matched.csv"
    write_csv(source, random.Random(seed).choices(texts, k=n))
    seconds, peak_kib, output = run_match(source, out, env)
    print(output)
    with out.open(encoding="utf-8-sig", newline="") as f:
        statuses = Counter(row.get("status", "?") for row in csv.DictReader(f))
    rows = sum(statuses.values())
    rate, per_row = rows / seconds, 1000 * seconds / rows
    print(f"{rows} rows sampled with seed {seed} from the {len(set(texts))} labelled texts")
    print(f"rows {rows}; {seconds:.1f} s; {rate:,.0f} rows/s; {per_row:.3f} ms/row")
    print(f"peak RSS of the command {peak_kib / 1024:.0f} MiB")
    print("statuses " + ", ".join(f"{s} {c / rows:.3f}" for s, c in sorted(statuses.items())))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows of the timed CSV")
    parser.add_argument("--seed", type=int, default=1, help="seed for sampling the CSV")
    args = parser.parse_args(argv)
    build = load_build()
    print(f"cpus {os.cpu_count()}; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-address-") as tmp:
        work = Path(tmp)
        key = work / "home" / "keys.json"
        with database(work) as url:
            prepare(url, key)
            texts = quality(build, url)
            if args.rows > 0:
                throughput(texts, args.rows, args.seed, url, work, key)
    return 0


if __name__ == "__main__":
    sys.exit(main())
