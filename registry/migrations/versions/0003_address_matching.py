"""Matching free-text addresses: trigram search over standard addresses, and a review queue.

``pg_trgm`` ranks standard addresses by similarity to a parsed free-text address when no
exact key matches; ``address_review`` holds every match that was not certain enough to
place automatically, with its candidates, until a person accepts or rejects it.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

REVIEW_STATUSES = ("open", "accepted", "rejected")
# the searchable one-line form of a standard address; || rather than concat_ws, which is
# not immutable and so cannot be indexed
LABEL = (
    "(coalesce(road, '') || coalesce(house_number, '') || coalesce(compound, '') "
    "|| coalesce(building_no, ''))"
)


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute(f"CREATE INDEX ix_address_label_trgm ON address USING gin ({LABEL} gin_trgm_ops)")
    op.create_table(
        "address_review",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("input", sa.Text, nullable=False),
        sa.Column("parsed", postgresql.JSONB, nullable=False),
        sa.Column("candidates", postgresql.JSONB, nullable=False),
        sa.Column("match_status", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="open"),
        sa.Column("residence_id", sa.BigInteger),
        sa.Column("address_code", sa.String(64)),
        sa.Column("room_id", sa.String(64)),
        sa.Column("resolved_by", sa.Text),
        sa.Column("resolved_at", sa.DateTime(timezone=True)),
        sa.Column("note", sa.Text),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint(
            "status IN ('open', 'accepted', 'rejected')", name="ck_address_review_status"
        ),
        sa.CheckConstraint(
            "match_status IN ('review', 'unmatched')", name="ck_address_review_match_status"
        ),
        sa.CheckConstraint(
            "(status = 'open') = (resolved_at IS NULL)", name="ck_address_review_resolved"
        ),
        sa.ForeignKeyConstraint(
            ["residence_id"],
            ["residence.id"],
            name="fk_address_review_residence_id_residence",
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["address_code"], ["address.code"], name="fk_address_review_address_code_address"
        ),
        sa.ForeignKeyConstraint(["room_id"], ["room.id"], name="fk_address_review_room_id_room"),
    )
    op.create_index("ix_address_review_status", "address_review", ["status"])
    op.create_index("ix_address_review_residence_id", "address_review", ["residence_id"])


def downgrade() -> None:
    op.drop_table("address_review")
    op.execute("DROP INDEX ix_address_label_trgm")
