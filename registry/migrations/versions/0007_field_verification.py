"""Field verification: verification history, photos, building versions, new building ids.

- ``building.version`` counts the changes of a building (a trigger bumps it on every
  UPDATE that changes a column, whoever makes it: the API, a load, the CLI), so the
  API's ``If-Match`` can refuse a write based on a stale copy instead of overwriting.
- ``building.verification`` gains ``corrected`` (exists, outline fixed) and
  ``not_found`` (gone: proposes demolished); ``verified_by`` names who last visited.
- ``building_verification`` is the append-only history of every field action, with
  officer, time, old and new values, the device's position and its distance from the
  building; ``verification_photo`` holds the evidence photos. Both are INSERT-only for
  the API role and refuse UPDATE, DELETE and TRUNCATE (unless empty) to everyone.
- ``building_new_id`` numbers buildings drawn in the field (``N<community>-<n>``): a
  sequence never hands out a number twice, so an id is never reused.

Row-level security: both new tables follow the building's scope (their own
``community_code``, copied from the building when written); only editors insert.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

API_ROLE = "registry_api"
OLD_STATES = ("unverified", "verified", "disputed")
STATES = ("unverified", "verified", "corrected", "not_found", "disputed")
ACTIONS = (
    "verified",
    "corrected",
    "not_found",
    "disputed",
    "created",
    "demolition_confirmed",
    "demolition_rejected",
    "door_plate_moved",
)
PHOTO_TYPES = ("image/jpeg", "image/png")

IN_SCOPE = (
    "((SELECT registry_sees_all()) OR "
    "community_code LIKE ANY ((SELECT registry_scope_patterns())::text[]))"
)
EDITOR = "(SELECT registry_may_edit())"


def enum_check(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


BUMP_VERSION = """
CREATE FUNCTION registry_building_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    -- any change of the row, by anyone, makes copies read before it stale
    -- (as JSON without the derived columns: a generated column is not yet computed in a
    -- BEFORE trigger, and updated_at alone is no change)
    IF to_jsonb(NEW) - '{footprint_3857,version,updated_at}'::text[]
       IS DISTINCT FROM to_jsonb(OLD) - '{footprint_3857,version,updated_at}'::text[] THEN
        NEW.version := OLD.version + 1;
    END IF;
    RETURN NEW;
END
$$
"""

APPEND_ONLY = """
CREATE FUNCTION registry_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    recorded boolean;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        -- an empty history loses nothing: let TRUNCATE ... CASCADE of the tables it
        -- refers to (a scratch database, a benchmark) through
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I.%I)', TG_TABLE_SCHEMA, TG_TABLE_NAME)
            INTO recorded;
        IF NOT recorded THEN
            RETURN NULL;
        END IF;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""

APPEND_ONLY_TABLES = ("building_verification", "verification_photo")


def upgrade() -> None:
    op.add_column("building", sa.Column("version", sa.Integer, nullable=False, server_default="1"))
    op.add_column("building", sa.Column("verified_by", sa.Text))
    op.drop_constraint(op.f("ck_building_verification"), "building", type_="check")
    op.create_check_constraint(
        op.f("ck_building_verification"), "building", enum_check("verification", STATES)
    )
    op.execute(BUMP_VERSION)
    op.execute(
        "CREATE TRIGGER building_version BEFORE UPDATE ON building "
        "FOR EACH ROW EXECUTE FUNCTION registry_building_version()"
    )
    op.execute("CREATE SEQUENCE building_new_id")

    op.create_table(
        "verification_photo",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("community_code", sa.String(12), nullable=False),
        sa.Column("building_id", sa.String(64), nullable=False),
        sa.Column("media_type", sa.Text, nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.CheckConstraint(
            enum_check("media_type", PHOTO_TYPES), name=op.f("ck_verification_photo_media_type")
        ),
    )
    op.create_table(
        "building_verification",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("building_id", sa.String(64), sa.ForeignKey("building.id"), nullable=False),
        sa.Column("community_code", sa.String(12), nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column("note", sa.Text),
        sa.Column("position", Geometry("POINT", srid=4490, spatial_index=False)),
        sa.Column("accuracy_m", sa.Float),
        sa.Column("distance_m", sa.Float),
        sa.Column("far", sa.Boolean, nullable=False, server_default="false"),
        sa.Column("photo_id", sa.BigInteger, sa.ForeignKey("verification_photo.id")),
        sa.Column("old_values", postgresql.JSONB, nullable=False, server_default="{}"),
        sa.Column("new_values", postgresql.JSONB, nullable=False, server_default="{}"),
        sa.Column("building_version", sa.Integer, nullable=False),
        sa.CheckConstraint(
            enum_check("action", ACTIONS), name=op.f("ck_building_verification_action")
        ),
        sa.CheckConstraint(
            "accuracy_m >= 0", name=op.f("ck_building_verification_accuracy_positive")
        ),
    )
    op.create_index(
        "ix_building_verification_building_id_id", "building_verification", ["building_id", "id"]
    )
    op.create_index(
        "ix_building_verification_community_code", "building_verification", ["community_code"]
    )
    op.execute(APPEND_ONLY)
    for table in APPEND_ONLY_TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION registry_append_only()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION registry_append_only()"
        )
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {table}_read ON {table} FOR SELECT USING ({IN_SCOPE})")
        op.execute(
            f"CREATE POLICY {table}_insert ON {table} FOR INSERT "
            f"WITH CHECK ({EDITOR} AND {IN_SCOPE})"
        )
        op.execute(f"GRANT SELECT, INSERT ON {table} TO {API_ROLE}")
        op.execute(f"GRANT USAGE ON SEQUENCE {table}_id_seq TO {API_ROLE}")
    op.execute(f"GRANT USAGE ON SEQUENCE building_new_id TO {API_ROLE}")


def downgrade() -> None:
    for table in APPEND_ONLY_TABLES:  # the history first: it refers to the photos
        op.drop_table(table)
    op.execute("DROP FUNCTION registry_append_only()")
    op.execute("DROP SEQUENCE building_new_id")
    op.execute("DROP TRIGGER building_version ON building")
    op.execute("DROP FUNCTION registry_building_version()")
    op.execute("UPDATE building SET verification = 'verified' WHERE verification = 'corrected'")
    op.execute("UPDATE building SET verification = 'disputed' WHERE verification = 'not_found'")
    op.drop_constraint(op.f("ck_building_verification"), "building", type_="check")
    op.create_check_constraint(
        op.f("ck_building_verification"), "building", enum_check("verification", OLD_STATES)
    )
    op.drop_column("building", "verified_by")
    op.drop_column("building", "version")
