"""Initial schema: communities, buildings, addresses, rooms, persons and residences,
reference footprints, import log and registry metadata, all geometry in EPSG:4490.

Identity numbers are never stored in clear, from this first revision on: ``person``
holds AES-GCM ciphertext, a keyed HMAC for look-up and the four-character tail.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SRID = 4490


def geometry(kind: str) -> Geometry:
    return Geometry(kind, srid=SRID, spatial_index=False)


def timestamps() -> list[sa.Column]:
    return [
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    ]


def in_list(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS postgis")

    op.create_table(
        "community",
        sa.Column("code", sa.String(12), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("street_code", sa.String(9), nullable=False),
        sa.Column("street_name", sa.Text),
        sa.Column("district_code", sa.String(6), nullable=False),
        sa.Column("district_name", sa.Text),
        sa.Column("boundary", geometry("MULTIPOLYGON")),
        *timestamps(),
        sa.CheckConstraint("code ~ '^[0-9]{12}$'", name="code_digits"),
        sa.CheckConstraint(
            "street_code ~ '^[0-9]{9}$' AND left(code, 9) = street_code", name="street_code"
        ),
        sa.CheckConstraint(
            "district_code ~ '^[0-9]{6}$' AND left(street_code, 6) = district_code",
            name="district_code",
        ),
    )
    op.create_index(None, "community", ["street_code"])
    op.create_index(None, "community", ["boundary"], postgresql_using="gist")

    op.create_table(
        "building",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("community_code", sa.String(12), sa.ForeignKey("community.code"), nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("footprint", geometry("MULTIPOLYGON")),
        sa.Column("floors", sa.SmallInteger),
        sa.Column("use", sa.Text),
        sa.Column("status", sa.Text, nullable=False, server_default="in_use"),
        sa.Column("verification", sa.Text, nullable=False, server_default="unverified"),
        sa.Column("verified_at", sa.DateTime(timezone=True)),
        *timestamps(),
        sa.CheckConstraint(
            in_list("status", ("in_use", "under_construction", "demolished")), name="status"
        ),
        sa.CheckConstraint(
            in_list("verification", ("unverified", "verified", "disputed")), name="verification"
        ),
        sa.CheckConstraint("floors >= 1", name="floors_positive"),
    )
    op.create_index(None, "building", ["community_code"])
    op.create_index(None, "building", ["footprint"], postgresql_using="gist")

    op.create_table(
        "address",
        sa.Column("code", sa.String(64), primary_key=True),
        sa.Column("community_code", sa.String(12), sa.ForeignKey("community.code"), nullable=False),
        sa.Column("building_id", sa.String(64), sa.ForeignKey("building.id")),
        sa.Column("road", sa.Text),
        sa.Column("house_number", sa.Text),
        sa.Column("compound", sa.Text),
        sa.Column("building_no", sa.Text),
        sa.Column("door_plate", geometry("POINT")),
        sa.Column("status", sa.Text, nullable=False, server_default="active"),
        *timestamps(),
        sa.CheckConstraint(in_list("status", ("active", "retired")), name="status"),
    )
    op.create_index(None, "address", ["community_code"])
    op.create_index(None, "address", ["building_id"])
    op.create_index(None, "address", ["door_plate"], postgresql_using="gist")

    op.create_table(
        "room",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("building_id", sa.String(64), sa.ForeignKey("building.id"), nullable=False),
        sa.Column("unit", sa.Text),
        sa.Column("floor", sa.SmallInteger),
        sa.Column("number", sa.Text, nullable=False),
        sa.Column("use", sa.Text),
        *timestamps(),
    )
    op.create_index(None, "room", ["building_id"])

    op.create_table(
        "person",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("id_hmac", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("id_cipher", sa.LargeBinary, nullable=False),
        sa.Column("id_tail", sa.String(4), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        *timestamps(),
    )

    op.create_table(
        "residence",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("person_id", sa.BigInteger, sa.ForeignKey("person.id"), nullable=False),
        sa.Column("room_id", sa.String(64), sa.ForeignKey("room.id")),
        sa.Column("community_code", sa.String(12), sa.ForeignKey("community.code"), nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("moved_in", sa.Date),
        sa.Column("moved_out", sa.Date),
        *timestamps(),
        sa.CheckConstraint(
            in_list("category", ("household", "floating", "overseas", "other")), name="category"
        ),
        sa.CheckConstraint("moved_out >= moved_in", name="dates_ordered"),
        sa.UniqueConstraint("person_id", "moved_in", postgresql_nulls_not_distinct=True),
    )
    op.create_index(None, "residence", ["community_code"])
    op.create_index(None, "residence", ["room_id"])

    op.create_table(
        "footprint",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("source", sa.Text),
        sa.Column("geom", geometry("MULTIPOLYGON"), nullable=False),
        sa.Column(
            "anchor",
            geometry("POINT"),
            sa.Computed("ST_PointOnSurface(geom)", persisted=True),
            nullable=False,
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index(None, "footprint", ["geom"], postgresql_using="gist")
    op.create_index(None, "footprint", ["anchor"], postgresql_using="gist")

    op.create_table(
        "import_log",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("bundle", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("file", sa.Text, nullable=False),
        sa.Column(
            "loaded_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("counts", postgresql.JSONB, nullable=False),
        sa.Column("warnings", postgresql.JSONB, nullable=False),
    )

    op.create_table(
        "registry_meta",
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "registry_meta",
        "import_log",
        "footprint",
        "residence",
        "person",
        "room",
        "address",
        "building",
        "community",
    ):
        op.drop_table(table)
