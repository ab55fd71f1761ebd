"""The Alembic migrations: upgrade from empty, match the models, downgrade cleanly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from registry import migrate
from registry.db import make_engine
from registry.models import VERSIONED, Base

TABLES = {
    "community",
    "building",
    "address",
    "room",
    "person",
    "residence",
    "footprint",
    "building_verification",
    "verification_photo",
    "building_lineage",
    "import_log",
    "registry_meta",
    "address_review",
    "community_count",
    "community_resident_count",
    "footprint_cover_state",
    "tile_cell",
    "organization",
    "employment",
    "registry_txn",
    "registry_change",
    "registry_clock",
    *(f"{t}_history" for t in VERSIONED),
    "account",
    "api_token",
    "audit_log",
}


def user_tables(engine) -> set[str]:
    names = set(inspect(engine).get_table_names())
    return names - {"spatial_ref_sys", "alembic_version"}


def test_upgrade_from_empty_then_downgrade_to_nothing(empty_db_url):
    engine = make_engine(empty_db_url)
    try:
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision(engine)
        assert user_tables(engine) == TABLES
        with engine.connect() as conn:
            srids = conn.execute(
                text(
                    "SELECT f_geometry_column, srid FROM geometry_columns "
                    "WHERE f_table_schema = 'public'"
                )
            ).all()
            # stored in CGCS2000; only the tile copies (…_3857) are Web Mercator
            assert {srid for column, srid in srids if not column.endswith("_3857")} == {4490}
            assert {column for column, srid in srids if srid == 3857} == {
                "footprint_3857",
                "geom_3857",
            }
            gist = conn.execute(
                text("SELECT indexname FROM pg_indexes WHERE indexdef LIKE '%USING gist%'")
            ).scalars()
            assert set(gist) == {
                "ix_community_boundary",
                "ix_building_footprint",
                "ix_address_door_plate",
                "ix_footprint_geom",
                "ix_footprint_anchor",
                "ix_building_footprint_3857",
                "ix_footprint_geom_3857",
                # the same, for queries of the history at a past time (migration 0010)
                "ix_community_history_boundary",
                "ix_building_history_footprint",
                "ix_address_history_door_plate",
                "ix_footprint_history_geom",
                "ix_footprint_history_anchor",
            }

        migrate.downgrade(engine)
        assert user_tables(engine) == set()
        assert migrate.current_revision(engine) is None
        migrate.upgrade(engine)  # and up again: the downgrade left nothing behind
        assert user_tables(engine) == TABLES
    finally:
        engine.dispose()


EXPRESSION_INDEXES = {"ix_address_label_trgm"}
"""Alembic cannot compare expression indexes (PostgreSQL rewrites their text), so these
are checked by name and definition below instead."""


def compared(obj, name, kind, *_) -> bool:
    return name != "spatial_ref_sys" and name not in EXPRESSION_INDEXES


def test_models_match_the_migrations(engine):
    """Autogenerate finds nothing to add: the ORM classes describe the migrated schema."""
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": compared}
        )
        differences = compare_metadata(context, Base.metadata)
        trigram = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_address_label_trgm'")
        ).scalar_one()
    assert differences == []
    assert "USING gin" in trigram and "gin_trgm_ops" in trigram
    for column in ("road", "house_number", "compound", "building_no"):
        assert column in trigram


def test_constraints_guard_the_data(engine):
    """Checks in the database itself, not only in the importer."""
    bad = [
        "INSERT INTO community (code, name, street_code, district_code) "
        "VALUES ('42011100200', 'x', '420111002', '420111')",
        "INSERT INTO community (code, name, street_code, district_code) "
        "VALUES ('420111002001', 'x', '420111003', '420111')",
        "INSERT INTO building (id, community_code, status) VALUES ('b', '420111002001', 'gone')",
    ]
    with engine.connect() as conn:
        conn.execute(
            text(
                "INSERT INTO community (code, name, street_code, district_code) "
                "VALUES ('420111002001', 'x', '420111002', '420111')"
            )
        )
        for statement in bad:
            savepoint = conn.begin_nested()
            try:
                conn.execute(text(statement))
            except Exception as exc:  # IntegrityError from the check constraint
                assert "violates check constraint" in str(exc)
                savepoint.rollback()
            else:
                raise AssertionError(f"accepted: {statement}")
