"""HTTP load: ``wrk`` cycling through a fixed URL list, or an asyncio httpx fallback.

``wrk`` (Debian package ``wrk``) keeps ``concurrency`` keep-alive connections busy for the
whole duration; a Lua script sends the listed paths round-robin (each thread starting at
a different place in the list), counts responses by status and prints one JSON line from
``done()`` with latency percentiles. Without ``wrk`` the same loop runs in Python, which
costs more CPU on the client side, so its figures are only comparable among themselves
(:attr:`LoadResult.tool` says which ran).

Success is any 2xx or 3xx status: 204 is an empty tile and 304 a revalidated one.
Neither tool asks for compressed bodies unless ``headers`` say so (``Accept-Encoding``).
"""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

MVT_MEDIA_TYPE = "application/vnd.mapbox-vector-tile"
JSON_MARKER = "WRK_JSON "

# Globals (statuses, id) are what thread:get/thread:set can reach across Lua states.
WRK_SCRIPT = r"""
local threads = {}
local queue = {}
local index = 1
statuses = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then queue[#queue + 1] = wrk.format("GET", line) end
  end
  index = math.floor(id * #queue / tonumber(args[2])) % #queue + 1
end

function request()
  local r = queue[index]
  index = index % #queue + 1
  return r
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    parts[#parts + 1] = string.format('"%d":%d', status, n)
  end
  local e = summary.errors
  io.write("WRK_JSON ", string.format(
    '{"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"statuses":{%s}}',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, table.concat(parts, ",")), "\n")
end
"""


@dataclass
class LoadResult:
    """What one load run measured; latencies in milliseconds.

    ``errors`` are requests without a response (connect, read, write errors and
    timeouts); ``non_2xx`` are responses whose status is not 2xx or 3xx. ``bytes`` is
    what came over the wire: whole responses for wrk, bodies for httpx.
    """

    tool: str
    concurrency: int
    threads: int
    duration_s: float
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    non_2xx: int
    bytes: int
    statuses: dict[int, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Probe:
    """One request made by :func:`warm`: status, body size, and what the body holds.

    ``features`` is the feature count of an MVT (all layers) or of a GeoJSON body;
    ``layers`` the MVT's count per layer; ``number_matched`` a GeoJSON page's total.
    """

    url: str
    status: int
    bytes: int
    content_type: str
    elapsed_ms: float
    features: int | None = None
    layers: dict[str, int] | None = None
    number_matched: int | None = None


def is_success(status: int) -> bool:
    return 200 <= status < 400


def non_success(statuses: Mapping[int, int]) -> int:
    return sum(n for status, n in statuses.items() if not is_success(status))


# ---------------------------------------------------------------- wrk


def split_origin(urls: Sequence[str]) -> tuple[str, list[str]]:
    """The one ``scheme://host:port`` of ``urls`` and their paths with query strings."""
    origins, paths = set(), []
    for url in urls:
        parts = urlsplit(url)
        origins.add(f"{parts.scheme}://{parts.netloc}")
        paths.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    if len(origins) != 1:
        raise ValueError(f"wrk needs one origin for all URLs, got {sorted(origins)}")
    return origins.pop(), paths


def wrk_command(
    origin: str,
    files: tuple[Path, Path],
    concurrency: int,
    threads: int,
    seconds: int,
    headers: Mapping[str, str],
    timeout_s: float,
) -> list[str]:
    """The wrk command line: ``files`` are the Lua script and the path list."""
    script, paths = files
    command = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{seconds}s"]
    command += ["--timeout", f"{max(1, math.ceil(timeout_s))}s", "-s", str(script)]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    return [*command, origin, "--", str(paths), str(threads)]


def parse_wrk(stdout: str, concurrency: int, threads: int) -> LoadResult:
    """The :class:`LoadResult` from the JSON line the Lua ``done()`` printed."""
    line = next((x for x in stdout.splitlines() if x.startswith(JSON_MARKER)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result line:\n{stdout[-2000:]}")
    data = json.loads(line[len(JSON_MARKER) :])
    statuses = {int(k): v for k, v in data["statuses"].items()}
    duration_s = data["duration_us"] / 1e6
    return LoadResult(
        tool="wrk",
        concurrency=concurrency,
        threads=threads,
        duration_s=round(duration_s, 3),
        requests=data["requests"],
        rps=round(data["requests"] / duration_s, 1) if duration_s else 0.0,
        p50_ms=data["p50_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        errors=sum(data[k] for k in ("connect", "read", "write", "timeout")),
        non_2xx=non_success(statuses),
        bytes=data["bytes"],
        statuses=statuses,
    )


def run_wrk(
    urls: Sequence[str],
    concurrency: int,
    duration_s: float,
    threads: int,
    headers: Mapping[str, str],
    timeout_s: float,
) -> LoadResult:
    """Run wrk for ``duration_s`` rounded up to whole seconds (wrk's resolution)."""
    origin, paths = split_origin(urls)
    seconds = max(1, math.ceil(duration_s))
    with tempfile.TemporaryDirectory(prefix="httpload-") as tmp:
        script, listing = Path(tmp, "cycle.lua"), Path(tmp, "paths.txt")
        script.write_text(WRK_SCRIPT)
        listing.write_text("\n".join(paths) + "\n")
        command = wrk_command(
            origin, (script, listing), concurrency, threads, seconds, headers, timeout_s
        )
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=seconds + timeout_s + 60
        )
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout, concurrency, threads)


# ---------------------------------------------------------------- httpx fallback


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (0 when there are none)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class _Tally:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: int = 0
    bytes: int = 0


async def _worker(
    client: httpx.AsyncClient, urls: Sequence[str], start: int, deadline: float, tally: _Tally
) -> None:
    """Request ``urls`` round-robin from ``start`` until ``deadline`` (perf_counter)."""
    i = start
    while time.perf_counter() < deadline:
        url, i = urls[i % len(urls)], i + 1
        began = time.perf_counter()
        try:
            response = await client.get(url)
        except httpx.HTTPError:
            tally.errors += 1
            continue
        tally.latencies_ms.append((time.perf_counter() - began) * 1000)
        tally.statuses[response.status_code] += 1
        tally.bytes += response.num_bytes_downloaded


async def _run_httpx_async(
    urls: Sequence[str],
    concurrency: int,
    duration_s: float,
    headers: Mapping[str, str],
    timeout_s: float,
) -> tuple[_Tally, float]:
    tally = _Tally()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=timeout_s, headers=dict(headers)) as client:
        began = time.perf_counter()
        deadline = began + duration_s
        starts = [k * len(urls) // concurrency for k in range(concurrency)]
        await asyncio.gather(*(_worker(client, urls, s, deadline, tally) for s in starts))
        return tally, time.perf_counter() - began


def run_httpx(
    urls: Sequence[str],
    concurrency: int,
    duration_s: float,
    headers: Mapping[str, str],
    timeout_s: float,
) -> LoadResult:
    """The same loop as the wrk script, in one Python process with ``concurrency`` tasks."""
    sent = {"Accept-Encoding": "identity", **headers}  # like wrk: no compression unless asked
    tally, elapsed = asyncio.run(_run_httpx_async(urls, concurrency, duration_s, sent, timeout_s))
    latencies = sorted(tally.latencies_ms)
    requests = len(latencies)
    return LoadResult(
        tool="httpx",
        concurrency=concurrency,
        threads=1,
        duration_s=round(elapsed, 3),
        requests=requests,
        rps=round(requests / elapsed, 1) if elapsed else 0.0,
        p50_ms=round(percentile(latencies, 50), 3),
        p90_ms=round(percentile(latencies, 90), 3),
        p99_ms=round(percentile(latencies, 99), 3),
        max_ms=round(latencies[-1], 3) if latencies else 0.0,
        errors=tally.errors,
        non_2xx=non_success(tally.statuses),
        bytes=tally.bytes,
        statuses=dict(tally.statuses),
    )


# ---------------------------------------------------------------- entry points


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_load(
    urls: list[str],
    concurrency: int,
    duration_s: float,
    threads: int = 2,
    headers: Mapping[str, str] | None = None,
    *,
    tool: str = "auto",
    timeout_s: float = 10.0,
) -> LoadResult:
    """Keep ``concurrency`` connections requesting ``urls`` round-robin for ``duration_s``.

    ``tool`` is ``"wrk"``, ``"httpx"`` or ``"auto"`` (wrk when installed). wrk needs at
    least one connection per thread, so it runs ``min(threads, concurrency)`` threads.
    """
    if not urls:
        raise ValueError("run_load needs at least one URL")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if tool == "auto":
        tool = "wrk" if wrk_available() else "httpx"
    if tool == "wrk":
        threads = max(1, min(threads, concurrency))
        return run_wrk(urls, concurrency, duration_s, threads, headers or {}, timeout_s)
    if tool == "httpx":
        return run_httpx(urls, concurrency, duration_s, headers or {}, timeout_s)
    raise ValueError(f"unknown load tool {tool!r}: wrk, httpx or auto")


def warm(
    urls: Sequence[str], headers: Mapping[str, str] | None = None, timeout_s: float = 60.0
) -> list[Probe]:
    """Request each URL once, in order: fills caches and shows what each server answers."""
    with httpx.Client(timeout=timeout_s, headers=dict(headers or {})) as client:
        return [probe(client, url) for url in urls]


def probe(client: httpx.Client, url: str) -> Probe:
    """One GET, with the body's features counted when it is an MVT or GeoJSON."""
    began = time.perf_counter()
    response = client.get(url)
    elapsed_ms = (time.perf_counter() - began) * 1000
    content_type = response.headers.get("content-type", "").split(";")[0].strip()
    result = Probe(url, response.status_code, len(response.content), content_type, elapsed_ms)
    if response.status_code == 204 and url.split("?")[0].endswith(".mvt"):
        result.features, result.layers = 0, {}
    elif content_type == MVT_MEDIA_TYPE or content_type.endswith("protobuf"):
        result.layers = mvt_layer_counts(response.content)
        result.features = sum(result.layers.values())
    elif content_type.endswith("json") and response.content:
        count_geojson(result, response)
    return result


def count_geojson(result: Probe, response: httpx.Response) -> None:
    """Fill ``features`` and ``number_matched`` from a FeatureCollection body."""
    try:
        document = response.json()
    except ValueError:
        return
    if isinstance(document, dict) and isinstance(document.get("features"), list):
        result.features = len(document["features"])
        result.number_matched = document.get("numberMatched")


# ---------------------------------------------------------------- MVT


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def protobuf_fields(buf: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of each field of one protobuf message, unparsed."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        wire = key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            yield key >> 3, value
            continue
        if wire == 2:
            size, pos = _varint(buf, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield key >> 3, buf[pos : pos + size]
        pos += size


def mvt_layer_counts(tile: bytes) -> dict[str, int]:
    """Features per layer of a Mapbox Vector Tile (Tile.layers = 3; Layer.name = 1,
    Layer.features = 2), read without a protobuf library."""
    counts: dict[str, int] = {}
    for number, layer in protobuf_fields(tile):
        if number != 3 or not isinstance(layer, bytes):
            continue
        name, features = "", 0
        for inner, value in protobuf_fields(layer):
            if inner == 1 and isinstance(value, bytes):
                name = value.decode()
            elif inner == 2:
                features += 1
        counts[name] = counts.get(name, 0) + features
    return counts
