"""``python -m bench.fieldwork --scale district``: the field-verification API under load.

One run, one machine, one database (docs/web-map.md): synthesize the bundle as
``python -m bench`` does, load it into a fresh database of this benchmark's own embedded
cluster (``.bench/fieldwork/pg-home``, apart from the main benchmark's), and serve it with
``registry serve`` as deployed: 2 worker processes connecting as the API role, every
request carrying ``Authorization: Bearer`` of an ``officer`` account scoped to one
community (accounts and tokens made as :mod:`bench.rls` makes them). Then, with an
asyncio httpx client in this process (figures, not verdicts; no peers for this feature):

1. reads, sequential and at 8 concurrent clients (8 officers of 8 communities):
   ``GET /map/config``, ``/buildings/{id}``, ``/communities/{code}/progress`` and
   ``/communities/{code}/worklist?lon=&lat=`` (a position inside the community);
2. writes: ``POST /buildings/{id}/verifications`` as JSON and as multipart with a 200 KB
   JPEG of random noise, sequential and 8 officers at once in 8 communities;
   ``PUT /buildings/{id}/geometry`` with ``If-Match``; ``POST /buildings``;
3. contention: 8 officers of one community PUT the same building's outline with the same
   ``If-Match`` at once, 20 rounds: 200s and 409s per round (one 200 expected);
4. ``EXPLAIN (ANALYZE, BUFFERS)`` of the work list SQL as the API role, in a read-only
   transaction carrying the officer's context, as the API runs it;
5. consistency: history rows, photos and building versions against the writes answered
   200/201.

Prints the tables and writes ``bench/results/fieldwork-<scale>.{json,md}``. Tokens and
passwords never reach the results.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import io
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psycopg
from PIL import Image
from sqlalchemy import event, text
from sqlalchemy.orm import Session

from bench import peers, rls
from bench.database import (
    cluster,
    fresh_database,
    libpq,
    server_facts,
    synthesize,
    vacuum_analyze,
)
from bench.httpload import percentile
from bench.loadbench import measure_load
from bench.procmem import track
from registry import auth
from registry.db import make_engine, transaction
from registry.progress import community_progress
from registry.worklist import WORKLIST

SCALES = {"small": 10, "district": 150}
DEFAULT_WORKDIR = peers.REPO_ROOT / ".bench" / "fieldwork"
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_PORT = 18450
CLIENTS = 8
OFFICER = "bench-officer-{:02d}"
CONTENDER = "bench-contender-{:02d}"
PHOTO_BYTES = 200 * 1024
CYCLE_DAYS = 90  # the API's default REGISTRY_VERIFICATION_CYCLE_DAYS
TIMEOUT_S = 60.0
OK = (200, 201)
# uvicorn --workers N leaves Nagle's algorithm on for accepted sockets (Kludex/uvicorn#3149);
# `registry serve` binds its socket with TCP_NODELAY (api/listening.py): the keep-alive and
# new-connection runs show whether a keep-alive answer still waits for a delayed ACK
CLOSE = {"Connection": "close"}
M_PER_DEG_LAT = 110_574.0


def log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.fieldwork", description=__doc__)
    parser.add_argument("--scale", choices=SCALES, default="district")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="(a free one if taken)")
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--pool-size", type=int, default=10, help="connections per worker")
    parser.add_argument("--reads", type=int, default=200, help="sequential requests per read")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per 8-client read")
    parser.add_argument("--writes", type=int, default=100, help="sequential JSON verifications")
    parser.add_argument("--client-writes", type=int, default=40, help="per client, 8 at once")
    parser.add_argument("--photo-writes", type=int, default=40, help="sequential, with a photo")
    parser.add_argument("--client-photo-writes", type=int, default=10, help="per client")
    parser.add_argument("--geometry-writes", type=int, default=60, help="PUT geometry")
    parser.add_argument("--creates", type=int, default=40, help="POST /buildings")
    parser.add_argument("--rounds", type=int, default=20, help="contention rounds")
    parser.add_argument("--explain-repeat", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="JSON results file")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- the machine


def machine() -> dict[str, Any]:
    """As ``python -m bench`` reports it, with this benchmark's client."""
    from bench.__main__ import machine as bench_machine

    facts = bench_machine()
    facts["load_tool"] = "httpx (asyncio, one client process on the same machine)"
    return facts


def busy(own_group: int | None = None) -> dict[str, Any]:
    """The load average and the other processes using the CPU now: not this one, nor the
    server's process group ``own_group`` (command names only; ``ps`` gives each process
    its average over its lifetime)."""
    done = subprocess.run(
        ["ps", "-eo", "pid=,pgid=,pcpu=,comm=", "--sort=-pcpu"], capture_output=True, text=True
    )
    top = []
    for line in done.stdout.splitlines()[:16]:
        pid, group, cpu, comm = line.split(None, 3)
        if int(pid) == os.getpid() or (own_group is not None and int(group) == own_group):
            continue
        if float(cpu) >= 5.0:
            top.append({"cpu_pct": float(cpu), "command": comm.strip()})
    return {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "top": top,
    }


OTHERS_PCT = 20.0  # another process at this share of a CPU or more: the machine is busy


def others_seen(results: dict[str, Any]) -> list[str]:
    """Other processes seen at OTHERS_PCT or more of a CPU before, during or after the
    run; PostgreSQL is left out (this run's own backends cannot be told from others)."""
    samples = [results["busy_before"], *results.get("busy_during", []), results["busy_after"]]
    return sorted(
        {
            t["command"]
            for sample in samples
            for t in sample["top"]
            if t["cpu_pct"] >= OTHERS_PCT and t["command"] != "postgres"
        }
    )


def free_port(preferred: int) -> int:
    if peers.port_is_free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind((peers.HOST, 0))
        return sock.getsockname()[1]


# ---------------------------------------------------------------- accounts and data


@dataclass
class Officer:
    """An officer account scoped to one community, and what the benchmark knows of it."""

    name: str
    token: str
    community: str
    spot: tuple[float, float]  # a point inside the community (its boundary's)
    bbox: tuple[float, float, float, float]
    buildings: list[tuple[str, float, float]]  # id and a point on its outline
    taken: int = 0

    @property
    def principal(self) -> auth.Principal:
        return auth.Principal(self.name, "officer", (self.community,))

    @property
    def headers(self) -> dict[str, str]:
        return rls.bearer(self.token)

    def take(self, n: int) -> list[tuple[str, float, float]]:
        """``n`` buildings not written yet by this benchmark."""
        chosen = self.buildings[self.taken : self.taken + n]
        if len(chosen) < n:
            raise RuntimeError(f"{self.community}: not enough buildings for {n} more writes")
        self.taken += n
        return chosen


@dataclass
class Access:
    api_password: str
    officers: list[Officer]
    contenders: list[Officer]

    def describe(self) -> dict[str, Any]:
        return {
            "api_role": rls.API_ROLE,
            "officers": [
                {"name": o.name, "role": "officer", "jurisdiction": [o.community]}
                for o in self.officers
            ],
            "contenders": [
                {"name": o.name, "role": "officer", "jurisdiction": [o.community]}
                for o in self.contenders
            ],
        }


def spread(codes: Sequence[str], n: int) -> list[str]:
    """``n`` codes spread evenly over ``codes`` (all of them if there are fewer)."""
    if len(codes) <= n:
        return list(codes)
    return [codes[k * len(codes) // n] for k in range(n)]


def prepare_access(database_url: str) -> Access:
    """As the owner: a random password for the API role, one officer (with a token) for
    each of 8 communities spread over the codes, and 8 more officers of the first
    community for the contention rounds; the buildings of each community with an
    outline, not demolished, by id."""
    password = secrets.token_urlsafe(24)
    engine = make_engine(database_url)
    try:
        with transaction(engine) as session:
            session.execute(text("SELECT registry_set_api_password(:p)"), {"p": password})
            codes = list(session.scalars(text("SELECT code FROM community ORDER BY code")))
            chosen = spread(codes, CLIENTS)

            def officer(name: str, code: str) -> Officer:
                auth.add_account(session, name, "officer", [code])
                token = auth.create_token(session, name)
                place = session.execute(
                    text(
                        "SELECT ST_X(p) AS lon, ST_Y(p) AS lat, ST_XMin(b) AS x0, ST_YMin(b) AS y0,"
                        " ST_XMax(b) AS x1, ST_YMax(b) AS y1 FROM (SELECT"
                        " ST_PointOnSurface(boundary) AS p, Box2D(boundary) AS b"
                        " FROM community WHERE code = :c) s"
                    ),
                    {"c": code},
                ).one()
                rows = session.execute(
                    text(
                        "SELECT id, ST_X(p), ST_Y(p) FROM (SELECT id,"
                        " ST_PointOnSurface(footprint) AS p FROM building"
                        " WHERE community_code = :c AND status <> 'demolished'"
                        " AND footprint IS NOT NULL) s ORDER BY id"
                    ),
                    {"c": code},
                ).all()
                return Officer(
                    name,
                    token,
                    code,
                    (place.lon, place.lat),
                    (place.x0, place.y0, place.x1, place.y1),
                    [(r[0], r[1], r[2]) for r in rows],
                )

            officers = [officer(OFFICER.format(k + 1), code) for k, code in enumerate(chosen)]
            contenders = [officer(CONTENDER.format(k + 1), chosen[0]) for k in range(CLIENTS)]
    finally:
        engine.dispose()
    return Access(password, officers, contenders)


def noise_jpeg(target: int = PHOTO_BYTES, seed: int = 1) -> bytes:
    """A JPEG of random noise (so it does not compress away) of about ``target`` bytes."""
    rng = np.random.default_rng(seed)
    side = 256
    best = b""
    for _ in range(6):
        pixels = rng.integers(0, 256, size=(side, side, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(buffer, "JPEG", quality=85)
        best = buffer.getvalue()
        if abs(len(best) - target) < target * 0.02:
            break
        side = max(16, round(side * (target / len(best)) ** 0.5))
    return best


# ---------------------------------------------------------------- the HTTP client


@dataclass
class Call:
    """One request; ``tag`` names what it writes (a building id) for the ledger."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any = None
    data: dict[str, str] | None = None
    files: dict[str, tuple[str, bytes, str]] | None = None
    tag: str = ""


@dataclass
class Outcome:
    tag: str
    status: int  # 0: no response
    ms: float
    etag: str | None = None
    location: str | None = None
    body: Any = None
    error: str | None = None


@dataclass
class Run:
    outcomes: list[Outcome]
    seconds: float
    client_cpu_s: float
    clients: int

    def summary(self) -> dict[str, Any]:
        latencies = sorted(o.ms for o in self.outcomes if o.status)
        n = len(self.outcomes)
        statuses = collections.Counter(o.status for o in self.outcomes)
        return {
            "clients": self.clients,
            "n": n,
            "seconds": round(self.seconds, 3),
            "rps": round(n / self.seconds, 1) if self.seconds else 0.0,
            "p50_ms": round(percentile(latencies, 50), 2),
            "p95_ms": round(percentile(latencies, 95), 2),
            "p99_ms": round(percentile(latencies, 99), 2),
            "max_ms": round(latencies[-1], 2) if latencies else 0.0,
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "errors": statuses.get(0, 0),
            "client_cpu_share": round(self.client_cpu_s / self.seconds, 2)
            if self.seconds
            else None,
        }


async def _client(
    base: str,
    calls: Sequence[Call],
    duration_s: float | None,
    barrier: asyncio.Barrier,
    clock: dict[str, float],
    out: list[Outcome],
    keep_body: bool,
) -> None:
    """One client on one keep-alive connection: open it (untimed), wait for the others,
    then send ``calls`` in order (round-robin until ``duration_s`` when given)."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=base, timeout=TIMEOUT_S, limits=limits) as client:
        await client.get("/conformance")
        await barrier.wait()
        start = clock.setdefault("start", time.perf_counter())
        deadline = None if duration_s is None else start + duration_s
        i = 0
        while (i < len(calls)) if deadline is None else (time.perf_counter() < deadline):
            call = calls[i % len(calls)]
            i += 1
            began = time.perf_counter()
            try:
                response = await client.request(
                    call.method,
                    call.path,
                    headers=call.headers,
                    json=call.json,
                    data=call.data,
                    files=call.files,
                )
            except httpx.HTTPError as exc:
                ms = (time.perf_counter() - began) * 1000
                out.append(Outcome(call.tag, 0, ms, error=f"{type(exc).__name__}: {exc}"))
                continue
            ms = (time.perf_counter() - began) * 1000
            body = None
            if keep_body and response.headers.get("content-type", "").endswith("json"):
                body = response.json()
            out.append(
                Outcome(
                    call.tag,
                    response.status_code,
                    ms,
                    response.headers.get("etag"),
                    response.headers.get("location"),
                    body,
                )
            )
        clock["end"] = max(clock.get("end", 0.0), time.perf_counter())


async def _clients(
    base: str, lists: Sequence[Sequence[Call]], duration_s: float | None, keep_body: bool
) -> tuple[list[Outcome], float]:
    barrier = asyncio.Barrier(len(lists))
    clock: dict[str, float] = {}
    out: list[Outcome] = []
    await asyncio.gather(
        *(_client(base, calls, duration_s, barrier, clock, out, keep_body) for calls in lists)
    )
    return out, clock["end"] - clock["start"]


def run_clients(
    base: str,
    lists: Sequence[Sequence[Call]],
    duration_s: float | None = None,
    keep_body: bool = False,
) -> Run:
    """``len(lists)`` clients at once, each sending its list (once, or round-robin for
    ``duration_s``); one list is a sequential run."""
    cpu = time.process_time()
    outcomes, seconds = asyncio.run(_clients(base, lists, duration_s, keep_body))
    return Run(outcomes, seconds, time.process_time() - cpu, len(lists))


def get(base: str, path: str, headers: dict[str, str]) -> httpx.Response:
    response = httpx.get(base + path, headers=headers, timeout=TIMEOUT_S)
    response.raise_for_status()
    return response


# ---------------------------------------------------------------- reads


def read_paths(officer: Officer, kind: str, n: int = 50) -> list[str]:
    """The URLs of one read for one officer: its community, its buildings, positions at
    its buildings (inside the community)."""
    code = officer.community
    sample = officer.buildings[:: max(1, len(officer.buildings) // n)][:n]
    if kind == "map_config":
        return ["/map/config"]
    if kind == "building":
        return [f"/buildings/{b}" for b, _, _ in sample]
    if kind == "progress":
        return [f"/communities/{code}/progress"]
    if kind == "worklist":
        return [f"/communities/{code}/worklist?lon={x:.6f}&lat={y:.6f}" for _, x, y in sample]
    raise ValueError(kind)


READS = {
    "map_config": "GET /map/config",
    "building": "GET /buildings/{id}",
    "progress": "GET /communities/{code}/progress",
    "worklist": "GET /communities/{code}/worklist?lon=&lat=",
}


def closing(calls: Sequence[Call]) -> list[Call]:
    """The same requests, each on a new connection (``Connection: close``)."""
    return [
        Call(c.method, c.path, c.headers | CLOSE, c.json, c.data, c.files, c.tag) for c in calls
    ]


def measure_reads(base: str, officers: list[Officer], args: argparse.Namespace) -> dict:
    """Each read sequentially and at 8 clients, on keep-alive connections (as a browser
    sends them) and with a new connection per request (:data:`CLOSE`)."""
    out: dict[str, Any] = {}
    for kind, label in READS.items():
        per_officer = [[Call("GET", p, o.headers) for p in read_paths(o, kind)] for o in officers]
        # sequential: the officers' requests interleaved, one at a time
        interleaved = [
            per_officer[i % len(officers)][
                (i // len(officers)) % len(per_officer[i % len(officers)])
            ]
            for i in range(args.reads)
        ]
        run_clients(base, [interleaved[: len(officers) * 2]])  # warm-up, untimed
        sequential = run_clients(base, [interleaved]).summary()
        concurrent = run_clients(base, per_officer, args.duration).summary()
        sequential_new = run_clients(base, [closing(interleaved)]).summary()
        concurrent_new = run_clients(
            base, [closing(c) for c in per_officer], args.duration
        ).summary()
        out[kind] = {
            "label": label,
            "sequential": sequential,
            "concurrent": concurrent,
            "sequential_new_connection": sequential_new,
            "concurrent_new_connection": concurrent_new,
        }
        log(
            f"{label}: sequential p50 {sequential['p50_ms']} ms "
            f"(new connections {sequential_new['p50_ms']}), 8 clients {concurrent['rps']} "
            f"req/s p95 {concurrent['p95_ms']} ms (new connections {concurrent_new['rps']} "
            f"req/s p95 {concurrent_new['p95_ms']}) {concurrent['statuses']}"
        )
    return out


# ---------------------------------------------------------------- writes


@dataclass
class Ledger:
    """The writes answered 200/201: per building, per action, and the new buildings."""

    per_building: collections.Counter[str] = field(default_factory=collections.Counter)
    per_action: collections.Counter[str] = field(default_factory=collections.Counter)
    created: list[str] = field(default_factory=list)
    photos: int = 0
    conflicts: int = 0

    def record(self, run: Run, action: str, photo: bool = False) -> None:
        for o in run.outcomes:
            if o.status == 409:
                self.conflicts += 1
            if o.status not in OK:
                continue
            self.per_action[action] += 1
            if action == "created":
                self.created.append((o.location or "").rsplit("/", 1)[-1])
            else:
                self.per_building[o.tag] += 1
            if photo:
                self.photos += 1

    @property
    def total(self) -> int:
        return sum(self.per_action.values())


def position(lon: float, lat: float) -> dict[str, float]:
    """A device position about 11 m east of the building's point, 8 m accuracy."""
    return {"lon": round(lon + 0.000115, 7), "lat": round(lat, 7), "accuracy": 8.0}


def verify_calls(officer: Officer, n: int, photo: bytes | None = None) -> list[Call]:
    calls = []
    for building, lon, lat in officer.take(n):
        path = f"/buildings/{building}/verifications"
        spot = position(lon, lat)
        if photo is None:
            body = {"state": "verified", "position": spot, "note": "bench: seen on the street"}
            calls.append(Call("POST", path, officer.headers, json=body, tag=building))
        else:
            form = {k: str(v) for k, v in spot.items()} | {"state": "verified"}
            files = {"photo": ("evidence.jpg", photo, "image/jpeg")}
            calls.append(Call("POST", path, officer.headers, data=form, files=files, tag=building))
    return calls


def shifted(geometry: dict[str, Any], dx: float, dy: float) -> dict[str, Any]:
    """A GeoJSON (Multi)Polygon moved by ``dx``, ``dy`` degrees."""

    def move(value: Any) -> Any:
        if isinstance(value[0], int | float):
            return [round(value[0] + dx, 7), round(value[1] + dy, 7)]
        return [move(v) for v in value]

    return {"type": geometry["type"], "coordinates": move(geometry["coordinates"])}


def geometry_calls(base: str, officer: Officer, n: int) -> list[Call]:
    """PUT each building's outline moved by about half a metre, with the ETag read just
    before (the reads are not timed)."""
    calls = []
    for building, _, _ in officer.take(n):
        response = get(base, f"/buildings/{building}", officer.headers)
        moved = shifted(response.json()["geometry"], 0.000005, 0.0)
        headers = officer.headers | {"If-Match": response.headers["etag"]}
        calls.append(
            Call("PUT", f"/buildings/{building}/geometry", headers, json=moved, tag=building)
        )
    return calls


def square(lon: float, lat: float, side_m: float = 8.0) -> dict[str, Any]:
    dlat = side_m / M_PER_DEG_LAT
    dlon = dlat / np.cos(np.radians(lat))
    ring = [[lon, lat], [lon + dlon, lat], [lon + dlon, lat + dlat], [lon, lat + dlat]]
    ring = [[round(x, 7), round(y, 7)] for x, y in ring]
    return {"type": "Polygon", "coordinates": [[*ring, ring[0]]]}


def create_calls(officer: Officer, n: int) -> list[Call]:
    """New 8 m squares on a grid well inside the community (no ``community_code``: the
    API finds it from the outline, as the map sends it)."""
    x0, y0, x1, y1 = officer.bbox
    side = int(np.ceil(np.sqrt(n)))
    calls = []
    for k in range(n):
        fx, fy = 0.2 + 0.6 * (k % side) / side, 0.2 + 0.6 * (k // side) / side
        lon, lat = x0 + fx * (x1 - x0), y0 + fy * (y1 - y0)
        body = {
            "geometry": square(lon, lat),
            "note": "bench: drawn in the field",
            "position": position(lon, lat),
        }
        calls.append(Call("POST", "/buildings", officer.headers, json=body, tag="new"))
    return calls


def measure_writes(
    base: str, access: Access, args: argparse.Namespace, ledger: Ledger
) -> dict[str, Any]:
    first, officers = access.officers[0], access.officers
    photo = noise_jpeg()
    out: dict[str, Any] = {"photo_bytes": len(photo)}

    def record(name: str, label: str, run: Run, action: str, photo: bool = False) -> None:
        ledger.record(run, action, photo)
        out[name] = {"label": label, **run.summary()}
        s = out[name]
        log(
            f"{label}: {s['n']} in {s['seconds']} s, p50 {s['p50_ms']} p95 {s['p95_ms']} ms, "
            f"{s['rps']}/s {s['statuses']}"
        )

    record(
        "verify_sequential",
        "POST verifications, JSON, sequential",
        run_clients(base, [verify_calls(first, args.writes)]),
        "verified",
    )
    record(
        "verify_sequential_new_connection",
        "POST verifications, JSON, sequential, new connection each",
        run_clients(base, [closing(verify_calls(first, args.writes // 2))]),
        "verified",
    )
    record(
        "verify_concurrent",
        "POST verifications, JSON, 8 officers in 8 communities",
        run_clients(base, [verify_calls(o, args.client_writes) for o in officers]),
        "verified",
    )
    record(
        "photo_sequential",
        f"POST verifications, multipart + {len(photo) // 1024} KB JPEG, sequential",
        run_clients(base, [verify_calls(first, args.photo_writes, photo)]),
        "verified",
        photo=True,
    )
    record(
        "photo_concurrent",
        f"POST verifications, multipart + {len(photo) // 1024} KB JPEG, 8 officers",
        run_clients(base, [verify_calls(o, args.client_photo_writes, photo) for o in officers]),
        "verified",
        photo=True,
    )
    record(
        "geometry_sequential",
        "PUT geometry with If-Match, sequential",
        run_clients(base, [geometry_calls(base, first, args.geometry_writes)]),
        "corrected",
    )
    record(
        "create_sequential",
        "POST /buildings, sequential",
        run_clients(base, [create_calls(first, args.creates)]),
        "created",
    )
    # the sequential writes again on a new connection each, as the second officer
    second = officers[1 % len(officers)]
    record(
        "photo_sequential_new_connection",
        f"POST verifications, multipart + {len(photo) // 1024} KB JPEG, sequential, "
        "new connection each",
        run_clients(base, [closing(verify_calls(second, args.photo_writes // 2, photo))]),
        "verified",
        photo=True,
    )
    record(
        "geometry_sequential_new_connection",
        "PUT geometry with If-Match, sequential, new connection each",
        run_clients(base, [closing(geometry_calls(base, second, args.geometry_writes // 2))]),
        "corrected",
    )
    record(
        "create_sequential_new_connection",
        "POST /buildings, sequential, new connection each",
        run_clients(base, [closing(create_calls(second, args.creates // 2))]),
        "created",
    )
    return out


def measure_contention(base: str, access: Access, rounds: int, ledger: Ledger) -> dict[str, Any]:
    """8 officers of one community PUT the same building's outline with the same
    ``If-Match`` at once (each a different shape), ``rounds`` times."""
    contenders = access.contenders
    building, _, _ = access.officers[0].take(1)[0]
    per_round = []
    latencies: list[float] = []
    for r in range(rounds):
        before = get(base, f"/buildings/{building}", contenders[0].headers)
        seen, geometry = before.headers["etag"], before.json()["geometry"]
        lists = [
            [
                Call(
                    "PUT",
                    f"/buildings/{building}/geometry",
                    c.headers | {"If-Match": seen},
                    json=shifted(geometry, 0.000003 * (k + 1), 0.000002 * (r % 3)),
                    tag=building,
                )
            ]
            for k, c in enumerate(contenders)
        ]
        run = run_clients(base, lists, keep_body=True)
        ledger.record(run, "corrected")
        after = get(base, f"/buildings/{building}", contenders[0].headers).headers["etag"]
        statuses = collections.Counter(o.status for o in run.outcomes)
        winners = [o for o in run.outcomes if o.status == 200]
        conflicts_current = sorted(
            {
                (o.body or {}).get("current", {}).get("version")
                for o in run.outcomes
                if o.status == 409
            },
            key=str,
        )
        latencies += [o.ms for o in run.outcomes]
        per_round.append(
            {
                "round": r + 1,
                "etag_before": seen,
                "etag_after": after,
                "statuses": {str(k): v for k, v in sorted(statuses.items())},
                "winner_etag": winners[0].etag if len(winners) == 1 else None,
                "conflict_current_versions": conflicts_current,
                "wall_ms": round(run.seconds * 1000, 1),
            }
        )
    ok_rounds = sum(
        1
        for p in per_round
        if p["statuses"].get("200") == 1 and p["statuses"].get("409") == CLIENTS - 1
    )
    latencies.sort()
    summary = {
        "building": building,
        "clients": CLIENTS,
        "rounds": rounds,
        "rounds_exactly_one_200": ok_rounds,
        "total_200": sum(p["statuses"].get("200", 0) for p in per_round),
        "total_409": sum(p["statuses"].get("409", 0) for p in per_round),
        "other": sum(
            n for p in per_round for s, n in p["statuses"].items() if s not in ("200", "409")
        ),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p95_ms": round(percentile(latencies, 95), 2),
        "per_round": per_round,
    }
    log(f"contention: {ok_rounds}/{rounds} rounds with exactly one 200 and 7 409s")
    return summary


# ---------------------------------------------------------------- plans and checks


def explain_worklist(database_url: str, access: Access, repeat: int) -> dict[str, Any]:
    """The work list SQL under ``EXPLAIN (ANALYZE, BUFFERS)`` as the API role, in a
    read-only transaction carrying the first officer's context (``run_sync``'s), at a
    position inside the community; ``repeat`` times after one warm-up."""
    officer = access.officers[0]
    params = {
        "code": officer.community,
        "cycle_days": CYCLE_DAYS,
        "lon": officer.spot[0],
        "lat": officer.spot[1],
        "max_items": 500,
    }
    statement = text("EXPLAIN (ANALYZE, BUFFERS) " + WORKLIST.text)
    engine = make_engine(rls.api_url(database_url, access.api_password))
    plans = []
    try:
        with engine.connect() as conn:
            user = conn.scalar(text("SELECT current_user"))
            conn.rollback()
            for _ in range(repeat + 1):
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                conn.execute(auth.SET_CONTEXT, auth.context_params(officer.principal))
                plans.append([row[0] for row in conn.execute(statement, params)])
                conn.rollback()
    finally:
        engine.dispose()
    execution = [rls.execution_ms(p) for p in plans[1:]]
    planning = [planning_ms(p) for p in plans[1:]]
    return {
        "as": user,
        "principal": {"name": officer.name, "role": "officer", "jurisdiction": [officer.community]},
        "params": {k: v for k, v in params.items()},
        "execution_ms": round(statistics.median(execution), 2),
        "execution_ms_runs": execution,
        "planning_ms": round(statistics.median(planning), 2),
        "plan": plans[-1],
    }


def explain_progress(database_url: str, access: Access, repeat: int) -> dict[str, Any]:
    """The statements ``GET /communities/{code}/progress`` runs (and every write, whose
    answer carries the progress), captured as the driver sends them, each under
    ``EXPLAIN (ANALYZE, BUFFERS)`` as the API role in the first officer's context."""
    officer = access.officers[0]
    engine = make_engine(rls.api_url(database_url, access.api_password))
    captured: list[tuple[str, Any]] = []

    def grab(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    out = []
    try:
        with engine.connect() as conn:
            context = auth.context_params(officer.principal)
            conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            conn.execute(auth.SET_CONTEXT, context)
            event.listen(engine, "before_cursor_execute", grab)
            community_progress(
                Session(bind=conn), officer.community, CYCLE_DAYS, (officer.community,)
            )
            event.remove(engine, "before_cursor_execute", grab)
            conn.rollback()
            for statement, parameters in captured:
                plans = []
                for _ in range(repeat + 1):
                    conn.exec_driver_sql("SET TRANSACTION READ ONLY")
                    conn.execute(auth.SET_CONTEXT, context)
                    result = conn.exec_driver_sql(
                        "EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters
                    )
                    plans.append([row[0] for row in result])
                    conn.rollback()
                execution = [rls.execution_ms(p) for p in plans[1:]]
                out.append(
                    {
                        "statement": " ".join(statement.split())[:160] + " …",
                        "execution_ms": round(statistics.median(execution), 2),
                        "execution_ms_runs": execution,
                        "planning_ms": round(
                            statistics.median(planning_ms(p) for p in plans[1:]), 2
                        ),
                        "seq_scans": sorted(
                            set(re.findall(r"Seq Scan on (\w+)", "\n".join(plans[-1])))
                        ),
                        "rows_removed_by_filter": sum(
                            int(n)
                            for n in re.findall(
                                r"Rows Removed by Filter: (\d+)", "\n".join(plans[-1])
                            )
                        ),
                        "plan": plans[-1],
                    }
                )
    finally:
        engine.dispose()
    return {"community": officer.community, "statements": out}


def planning_ms(plan: Sequence[str]) -> float:
    for line in plan:
        if match := re.match(r"\s*Planning Time: ([0-9.]+) ms", line):
            return float(match[1])
    return float("nan")


def snapshot(database_url: str, codes: Sequence[str]) -> dict[str, Any]:
    """As the owner: history rows by action, photos, and the version of every building of
    ``codes``."""
    with psycopg.connect(libpq(database_url)) as conn:
        actions = dict(
            conn.execute("SELECT action, count(*) FROM building_verification GROUP BY 1").fetchall()
        )
        photos = conn.execute("SELECT count(*) FROM verification_photo").fetchone()[0]
        with_photo = conn.execute(
            "SELECT count(*) FROM building_verification WHERE photo_id IS NOT NULL"
        ).fetchone()[0]
        versions = dict(
            conn.execute(
                "SELECT id, version FROM building WHERE community_code = ANY(%s)", (list(codes),)
            ).fetchall()
        )
    return {
        "history": sum(actions.values()),
        "actions": actions,
        "photos": photos,
        "with_photo": with_photo,
        "versions": versions,
    }


def latest_history_matches(database_url: str, ids: Sequence[str]) -> int:
    """How many of ``ids`` have a latest history row naming the building's version."""
    with psycopg.connect(libpq(database_url)) as conn:
        row = conn.execute(
            "SELECT count(*) FROM building b JOIN LATERAL (SELECT building_version"
            " FROM building_verification v WHERE v.building_id = b.id ORDER BY v.id DESC"
            " LIMIT 1) v ON true WHERE b.id = ANY(%s) AND v.building_version = b.version",
            (list(ids),),
        ).fetchone()
    return int(row[0])


def check_consistency(
    database_url: str, before: dict[str, Any], after: dict[str, Any], ledger: Ledger
) -> dict[str, Any]:
    """The rows and versions the writes left against the writes answered 200/201."""
    delta_actions = {
        a: after["actions"].get(a, 0) - before["actions"].get(a, 0)
        for a in sorted(set(after["actions"]) | set(before["actions"]))
    }
    version_mismatches = []
    for building, version in after["versions"].items():
        if building in ledger.created:
            continue
        advanced = version - before["versions"].get(building, version)
        if advanced != ledger.per_building.get(building, 0):
            version_mismatches.append(
                {"id": building, "advanced": advanced, "writes": ledger.per_building[building]}
            )
    created_versions = sorted(
        {after["versions"].get(b) for b in ledger.created}, key=lambda v: (v is None, v)
    )
    touched = sorted(ledger.per_building)
    checks = [
        ("history rows added", ledger.total, after["history"] - before["history"]),
        *(
            (f"history rows '{a}'", ledger.per_action.get(a, 0), n)
            for a, n in delta_actions.items()
        ),
        ("photos stored", ledger.photos, after["photos"] - before["photos"]),
        ("history rows with a photo", ledger.photos, after["with_photo"] - before["with_photo"]),
        (
            "buildings whose version advanced by their 200/201 writes",
            len(after["versions"]) - len(ledger.created),
            len(after["versions"]) - len(ledger.created) - len(version_mismatches),
        ),
        (
            "new buildings present",
            len(ledger.created),
            sum(1 for b in ledger.created if b in after["versions"]),
        ),
        (
            "written buildings whose latest history row names their version",
            len(touched),
            latest_history_matches(database_url, touched),
        ),
    ]
    return {
        "writes_ok": ledger.total,
        "writes_by_action": dict(ledger.per_action),
        "conflicts_409": ledger.conflicts,
        "buildings_written": len(touched),
        "created_versions": created_versions,
        "checks": [
            {"check": name, "expected": want, "found": got, "ok": want == got}
            for name, want, got in checks
        ],
        "version_mismatches": version_mismatches[:20],
        "all_ok": not version_mismatches and all(want == got for _, want, got in checks),
    }


# ---------------------------------------------------------------- report


def fmt(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def statuses(s: dict[str, int]) -> str:
    return " ".join(f"{k}×{v}" for k, v in s.items())


def tables(results: dict[str, Any]) -> list[str]:
    """The figures as Markdown tables (also what is printed)."""
    lines = [
        "| read | connection | sequential n | p50 ms | p95 ms | req/s | 8 clients n | p50 ms |"
        " p95 ms | req/s | statuses (8 clients) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in results["reads"].values():
        for mode, suffix in (("keep-alive", ""), ("new each", "_new_connection")):
            s, c = entry["sequential" + suffix], entry["concurrent" + suffix]
            lines.append(
                f"| `{entry['label']}` | {mode} | {s['n']} | {fmt(s['p50_ms'])} |"
                f" {fmt(s['p95_ms'])} | {fmt(s['rps'])} | {c['n']} | {fmt(c['p50_ms'])} |"
                f" {fmt(c['p95_ms'])} | {fmt(c['rps'])} | {statuses(c['statuses'])} |"
            )
    lines += [
        "",
        "| write | clients | n | p50 ms | p95 ms | writes/s | statuses |",
        "|---|---|---|---|---|---|---|",
    ]
    for entry in results["writes"].values():
        if not isinstance(entry, dict):
            continue
        lines.append(
            f"| {entry['label']} | {entry['clients']} | {entry['n']} | {fmt(entry['p50_ms'])} |"
            f" {fmt(entry['p95_ms'])} | {fmt(entry['rps'])} | {statuses(entry['statuses'])} |"
        )
    c = results["contention"]
    wins = " ".join(str(p["statuses"].get("200", 0)) for p in c["per_round"])
    lines += [
        "",
        "| contention: 8 PUTs, same building, same If-Match | value |",
        "|---|---|",
        f"| rounds with exactly one 200 and seven 409 | {c['rounds_exactly_one_200']} of"
        f" {c['rounds']} |",
        f"| 200 / 409 / other, all rounds | {c['total_200']} / {c['total_409']} / {c['other']} |",
        f"| 200s per round | {wins} |",
        f"| latency p50 / p95 (ms) | {fmt(c['p50_ms'])} / {fmt(c['p95_ms'])} |",
    ]
    e = results["explain_worklist"]
    lines += [
        "",
        "| EXPLAIN (ANALYZE, BUFFERS) as the API role, one community | value |",
        "|---|---|",
        f"| as | `{e['as']}`, in the context of an officer of {e['params']['code']} |",
        f"| work list: execution (median of {len(e['execution_ms_runs'])})"
        f" | {e['execution_ms']} ms |",
        f"| work list: planning (median) | {e['planning_ms']} ms |",
    ]
    for k, x in enumerate(results.get("explain_progress", {}).get("statements", []), 1):
        scans = ", ".join(x["seq_scans"]) or "none"
        lines.append(
            f"| progress statement {k}: execution (median) | {x['execution_ms']} ms; sequential"
            f" scans: {scans}; rows removed by filter: {x['rows_removed_by_filter']:,} |"
        )
    k = results["consistency"]
    lines += ["", "| consistency check | expected | found | ok |", "|---|---|---|---|"]
    lines += [
        f"| {x['check']} | {x['expected']} | {x['found']} | {'yes' if x['ok'] else '**no**'} |"
        for x in k["checks"]
    ]
    return lines


def nagle_note(results: dict[str, Any]) -> str:
    """What a keep-alive connection adds, from the sequential reads."""
    added = [
        e["sequential"]["p50_ms"] - e["sequential_new_connection"]["p50_ms"]
        for e in results["reads"].values()
    ]
    return (
        "Reads and the sequential writes run twice: on keep-alive connections, as a browser "
        "sends them, and with a new connection per request (`Connection: close`). uvicorn "
        "with `--workers` above 1 leaves Nagle's algorithm on for the sockets it accepts "
        "(Kludex/uvicorn#3149), so each small keep-alive answer after a connection's "
        "first would wait ~40 ms for the client's delayed ACK; `registry serve` binds its "
        "listening socket with TCP_NODELAY, which accepted sockets inherit "
        "(api/listening.py). Sequential p50, keep-alive over new connections: "
        + ", ".join(
            f"{e['label'].split('?')[0].removeprefix('GET ')} +{max(0.0, a):.0f} ms"
            for e, a in zip(results["reads"].values(), added, strict=True)
        )
        + " (a wait would show here as about +40 ms)."
    )


def markdown(results: dict[str, Any]) -> str:
    m, db = results["machine"], results["database"]
    before, after = results["busy_before"], results["busy_after"]
    others = others_seen(results)
    loaded = before["loadavg"][0] > 0.5 * (m["cpus"] or 1) or bool(others)
    after_note = (
        f" Just after the run: {after['loadavg']} (which includes the run's own server, "
        "database and client)."
    )
    busy_note = (
        (
            f"**The machine was busy**: load average (1, 5, 15 min) {before['loadavg']} on "
            f"{m['cpus']} CPUs before the run"
            + (f"; other processes using the CPU during it: {', '.join(others)}" if others else "")
            + ". The figures may be lower than an idle machine would give."
        )
        if loaded
        else (
            f"Load average (1, 5, 15 min) {before['loadavg']} before the run; no other process "
            f"at {OTHERS_PCT:.0f}% of a CPU or more before, between the phases or after it "
            "(PostgreSQL aside)."
        )
    ) + after_note
    s = results["settings"]
    head = [
        f"# Field verification benchmark: {results['scale']} ({results['communities']} "
        "communities)",
        "",
        f"{results['started']} → {results['finished']}. {m['cpus']} CPUs ({m['cpu']}), "
        f"{m['memory_gib']} GiB, {m['os']}, Python {m['python']}; PostgreSQL "
        f"{db['postgresql']}, PostGIS {db['postgis']} (embedded cluster, shared_buffers "
        f"{db['shared_buffers']}, synchronous_commit {db['synchronous_commit']}). "
        f"Data: {results['synth']['summary']}; loaded in {results['load']['seconds']} s.",
        "",
        f"`registry serve`, {s['workers']} workers, pool {s['pool_size_per_worker']} per "
        f"worker, connected as `{results['connected_as']}`; every request with the bearer "
        f"token of an `officer` scoped to one community. Client: {m['load_tool']} (it shares "
        "the CPUs with the server and PostgreSQL). Sequential reads interleave the 8 "
        f"officers; 8-client reads run {s['duration_s']} s, one client per officer. Latency "
        "is the client's, from request to whole response; percentiles are nearest-rank.",
        "",
        nagle_note(results),
        "",
        busy_note,
        "",
    ]
    e = results["explain_worklist"]
    plan = ["", "## Work list plan", "", "```", *e["plan"], "```", ""]
    for k, x in enumerate(results.get("explain_progress", {}).get("statements", []), 1):
        plan += [f"## Progress statement {k}", "", f"`{x['statement']}`", "", "```"]
        plan += [*x["plan"], "```", ""]
    return "\n".join(head + tables(results) + plan)


# ---------------------------------------------------------------- main


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
        "busy_before": busy(),
    }
    log(f"synthesizing {communities} communities")
    bundle = workdir / "bundles" / f"{args.scale}-seed{args.seed}"
    results["synth"] = synthesize(bundle, communities, args.seed)
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
    database_url = fresh_database(admin_url, f"fieldwork_{args.scale}")
    results["database"] = server_facts(database_url)
    log("registry load")
    results["load"] = measure_load(database_url, bundle)
    results["vacuum_analyze_s"] = vacuum_analyze(database_url)
    access = prepare_access(database_url)
    results["access"] = access.describe()
    port = free_port(args.port)
    server = peers.registry_server(
        database_url,
        port,
        args.workers,
        args.pool_size,
        workdir=workdir,
        api_password=access.api_password,
        name="registry-fieldwork",
    )
    results["settings"] = {
        "workers": args.workers,
        "pool_size_per_worker": args.pool_size,
        "port": port,
        "duration_s": args.duration,
        "reads_sequential": args.reads,
        "clients": CLIENTS,
        "cycle_days": CYCLE_DAYS,
    }
    codes = [o.community for o in access.officers]
    ledger = Ledger()
    log(f"{server.name}: starting on port {port}")
    with server, track(server.pid) as memory:
        base = server.base_url
        results["busy_during"] = [busy(server.pid)]
        results["reads"] = measure_reads(base, access.officers, args)
        results["busy_during"].append(busy(server.pid))
        log("EXPLAIN of the work list")
        results["explain_worklist"] = explain_worklist(database_url, access, args.explain_repeat)
        log(f"work list: {results['explain_worklist']['execution_ms']} ms")
        results["explain_progress"] = explain_progress(database_url, access, args.explain_repeat)
        log(
            "progress: "
            + ", ".join(
                f"{x['execution_ms']} ms" for x in results["explain_progress"]["statements"]
            )
        )
        before = snapshot(database_url, codes)
        results["writes"] = measure_writes(base, access, args, ledger)
        results["busy_during"].append(busy(server.pid))
        results["contention"] = measure_contention(base, access, args.rounds, ledger)
        results["connected_as"] = ", ".join(rls.connected_roles(database_url)) or "?"
        results["server"] = server.describe()
    results["server_memory"] = memory.as_dict()
    after = snapshot(database_url, codes)
    results["consistency"] = check_consistency(database_url, before, after, ledger)
    results["busy_after"] = busy()
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")

    out = args.out or RESULTS / f"fieldwork-{args.scale}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    text_out = json.dumps(results, indent=2, ensure_ascii=False, default=str) + "\n"
    secrets_ = [access.api_password, peers.password_of(database_url) or access.api_password]
    secrets_ += [o.token for o in access.officers + access.contenders]
    if any(s in text_out for s in secrets_):
        raise RuntimeError("a token or password would reach the results")
    out.write_text(text_out)
    out.with_suffix(".md").write_text(markdown(results))
    print("\n".join(tables(results)))
    print("\nwork list plan:\n" + "\n".join(results["explain_worklist"]["plan"]))
    log(f"results: {out} and {out.with_suffix('.md')}")
    return 0 if results["consistency"]["all_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
