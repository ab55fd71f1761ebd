"""The benchmark's database: its own embedded PostGIS cluster, a fresh database per run.

The cluster lives in the work directory (``.bench/pg-home``), apart from any cluster the
user runs, with settings for a modest dedicated server (written into the results). Every
run drops and re-creates one database, migrates it and loads the synthetic bundle into it,
so all servers and all measurements of a run read the same tables.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from sqlalchemy.engine import make_url

from registry import migrate
from registry.db import make_engine
from registry.embedded import EmbeddedCluster
from registry.synth import write_synthetic_bundle

# A modest dedicated server: a quarter of this machine's 24 GiB for shared buffers is
# more than a district needs; connections for three servers' pools plus the floor.
SERVER_SETTINGS = {
    "shared_buffers": "2GB",
    "effective_cache_size": "8GB",
    "work_mem": "32MB",
    "maintenance_work_mem": "512MB",
    "max_connections": "300",
    "max_wal_size": "4GB",
    "synchronous_commit": "on",
}


def cluster(workdir: Path) -> EmbeddedCluster:
    """The benchmark's own cluster (created on first ``up``), apart from the user's."""
    return EmbeddedCluster(workdir / "pg-home", SERVER_SETTINGS)


def libpq(url: str) -> str:
    """A SQLAlchemy URL as a libpq connection string (what psycopg and tipg take)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def fresh_database(admin_url: str, name: str) -> str:
    """Drop (if present) and create database ``name``, migrated; its SQLAlchemy URL."""
    with psycopg.connect(libpq(admin_url), autocommit=True) as conn:
        ident = sql.Identifier(name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(ident))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return url


def synthesize(out_dir: Path, communities: int, seed: int) -> dict[str, Any]:
    """Write the synthetic bundle; what it holds and how long it took."""
    began = time.perf_counter()
    summary = write_synthetic_bundle(out_dir, communities, seed)
    seconds = time.perf_counter() - began
    return {"seconds": round(seconds, 1), "summary": str(summary), "path": str(out_dir)}


def server_facts(url: str) -> dict[str, Any]:
    """PostgreSQL and PostGIS versions, the settings that matter for the figures, and
    whether geometry ``&&`` is LEAKPROOF (without it, row-level security keeps the API
    role off the spatial indexes: migration 0006)."""
    with psycopg.connect(libpq(url)) as conn:
        facts: dict[str, Any] = {
            "postgresql": conn.execute("SHOW server_version").fetchone()[0],
            "postgis": conn.execute("SELECT postgis_lib_version()").fetchone()[0],
            "geometry_overlaps_leakproof": conn.execute(
                "SELECT bool_and(proleakproof) FROM pg_proc WHERE proname = 'geometry_overlaps'"
            ).fetchone()[0],
        }
        for name in SERVER_SETTINGS:
            facts[name] = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()[
                0
            ]
    return facts


def vacuum_analyze(url: str) -> float:
    """``VACUUM (ANALYZE)`` the whole database, as an operator does after a bulk load, so
    that autovacuum does not compete with the measurements that follow; seconds taken."""
    began = time.perf_counter()
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")
    return round(time.perf_counter() - began, 1)
