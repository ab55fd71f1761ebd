"""Real OGC API clients read the sample registry: GDAL's OAPIF driver and OWSLib.

GDAL 3.6 pages with limit=10, takes the feature count from numberMatched, follows
rel=next links and pushes `-where` equality filters to the server for properties the
OpenAPI document declares as query parameters of /collections/<id>/items.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pyogrio
import pytest
from sqlalchemy import create_engine, text

from conftest import bearer, grant

PUBLIC_TABLES = {
    "communities": "SELECT count(*) FROM community",
    "buildings": "SELECT count(*) FROM building",
    "addresses": "SELECT count(*) FROM address",
    "footprints": "SELECT count(*) FROM footprint",
}


def gdal(*args: str, token: str) -> subprocess.CompletedProcess:
    """Run a GDAL tool that signs in to the API with ``token`` (GDAL_HTTP_HEADERS)."""
    if shutil.which(args[0]) is None:
        pytest.skip(f"{args[0]} (Debian's gdal-bin) is not installed")
    env = {**os.environ, "GDAL_HTTP_HEADERS": f"Authorization: Bearer {token}"}
    return subprocess.run(args, capture_output=True, text=True, timeout=300, check=False, env=env)


@pytest.fixture(scope="module")
def database_counts(sample_db_url):
    engine = create_engine(sample_db_url)
    with engine.connect() as conn:
        counts = {name: conn.execute(text(sql)).scalar_one() for name, sql in PUBLIC_TABLES.items()}
    engine.dispose()
    return counts


def test_ogrinfo_lists_collections_with_database_counts(live_server, database_counts, admin_token):
    listing = gdal("ogrinfo", "-ro", "-q", f"OAPIF:{live_server.url}", token=admin_token)
    assert listing.returncode == 0, listing.stderr
    for name in ["communities", "buildings", "addresses", "footprints", "coverage-gaps"]:
        assert name in listing.stdout
    for name, expected in database_counts.items():
        summary = gdal("ogrinfo", "-ro", "-so", f"OAPIF:{live_server.url}", name, token=admin_token)
        assert summary.returncode == 0, summary.stderr
        assert f"Feature Count: {expected}" in summary.stdout, (name, summary.stdout)


def test_ogr2ogr_copies_all_buildings_across_pages(
    live_server, sample_db_url, tmp_path: Path, admin_token
):
    out = tmp_path / "buildings.gpkg"
    # GDAL 3.6 asks for pages of 10, so the 221 buildings take 23 requests
    copy = gdal(
        "ogr2ogr",
        "-f",
        "GPKG",
        str(out),
        f"OAPIF:{live_server.url}",
        "buildings",
        token=admin_token,
    )
    assert copy.returncode == 0, copy.stderr
    table = pyogrio.read_dataframe(out)
    engine = create_engine(sample_db_url)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, name FROM building ORDER BY id")).all()
    engine.dispose()
    assert len(table) == len(rows)
    names = table["name"].astype(object).where(table["name"].notna(), None)
    copied = dict(zip(table["id"], names, strict=True))
    assert copied == {r.id: r.name for r in rows}  # Chinese names survive the trip


def test_ogr2ogr_where_is_filtered_by_the_server(
    live_server, sample_db_url, tmp_path: Path, admin_token
):
    engine = create_engine(sample_db_url)
    with engine.connect() as conn:
        code, expected = conn.execute(
            text(
                "SELECT community_code, count(*) FROM building GROUP BY community_code "
                "ORDER BY count(*) DESC LIMIT 1"
            )
        ).one()
    engine.dispose()
    out = tmp_path / "one.geojson"
    copy = gdal(
        "ogr2ogr",
        "-f",
        "GeoJSON",
        str(out),
        f"OAPIF:{live_server.url}",
        "buildings",
        "-where",
        f"community_code = '{code}'",
        "--config",
        "CPL_CURL_VERBOSE",
        "YES",
        token=admin_token,
    )
    assert copy.returncode == 0, copy.stderr
    features = json.loads(out.read_text(encoding="utf-8"))["features"]
    assert len(features) == expected
    assert {f["properties"]["community_code"] for f in features} == {code}
    # the filter went to the server, not applied by GDAL after fetching everything
    assert f"community_code={code}" in copy.stderr


def test_owslib_reads_collections_and_items(live_server, database_counts, admin_token):
    from owslib.ogcapi.features import Features

    client = Features(live_server.url, headers=bearer(admin_token))
    ids = set(client.feature_collections())  # ids of the collections of itemType feature
    assert {"communities", "buildings", "addresses", "footprints", "coverage-gaps"} <= ids
    page = client.collection_items("communities", limit=100)
    assert page["numberReturned"] == database_counts["communities"]
    assert page["numberMatched"] == database_counts["communities"]
    one = client.collection_item("communities", page["features"][0]["id"])
    assert one["id"] == page["features"][0]["id"]
    queryables = client.collection_queryables("buildings")
    assert "community_code" in queryables["properties"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_demo_serves_the_api_to_ogrinfo(registry_env):
    """`registry demo` loads the sample, prints the URLs and serves them: the Done-when check."""
    port = free_port()
    registry = str(Path(sys.executable).with_name("registry"))
    demo = subprocess.Popen(
        [registry, "demo", "--port", str(port)],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert demo.poll() is None, demo.stdout.read()
            try:
                if httpx.get(root + "/", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "demo did not start serving"
            time.sleep(0.3)
        assert httpx.get(root + "/collections", timeout=5).status_code == 401
        token = grant(registry_env["DATABASE_URL"], "gis-desk", "gis", ("420111",))
        listing = gdal("ogrinfo", "-ro", "-q", f"OAPIF:{root}", token=token)
        assert listing.returncode == 0, listing.stderr
        assert "buildings" in listing.stdout and "coverage-gaps" in listing.stdout
    finally:
        demo.send_signal(signal.SIGINT)
        output, _ = demo.communicate(timeout=30)
    assert f"{root}/collections" in output
    assert f"ogrinfo OAPIF:{root}" in output
    assert "Authorization: Bearer rgt_" in output and "Sign in at" in output
    assert "Traceback" not in output
