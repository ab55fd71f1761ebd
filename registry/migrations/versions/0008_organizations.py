"""Organizations (实有单位) and their employees.

- ``organization``: keyed by its unified social credit code (统一社会信用代码, GB 32100,
  18 characters; the check character is validated on import, the alphabet here), placed
  in a room or directly in a building (at most one of the two), with opening and closing
  dates. Organizations are not personal data: every role sees those of its scope.
- ``employment``: a person working for an organization, from ``started`` to ``ended``.
  It is personal data, under the residences' rules: officers and stations of the
  organization's community only, and the person becomes visible through it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

API_ROLE = "registry_api"
# GB 32100: 18 characters from 0-9 and the capitals without I, O, Z, S, V
USCC_PATTERN = "^[0-9A-HJ-NPQRTUWXY]{18}$"

IN_SCOPE = (
    "((SELECT registry_sees_all()) OR "
    "community_code LIKE ANY ((SELECT registry_scope_patterns())::text[]))"
)
PERSONS_IN_SCOPE = (
    "((SELECT registry_sees_persons()) AND "
    "community_code LIKE ANY ((SELECT registry_scope_patterns())::text[]))"
)
EDITOR = "(SELECT registry_may_edit())"
PERSON_VISIBLE = (
    "((SELECT registry_sees_persons()) AND "
    "(EXISTS (SELECT 1 FROM residence r WHERE r.person_id = person.id) OR "
    "EXISTS (SELECT 1 FROM employment e WHERE e.person_id = person.id)))"
)
OLD_PERSON_VISIBLE = (
    "((SELECT registry_sees_persons()) AND "
    "EXISTS (SELECT 1 FROM residence r WHERE r.person_id = person.id))"
)
POLICIES = {
    "organization": (IN_SCOPE, f"({EDITOR} AND {IN_SCOPE})"),
    "employment": (PERSONS_IN_SCOPE, PERSONS_IN_SCOPE),
}


def timestamps() -> list[sa.Column]:
    return [
        sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())
        for name in ("created_at", "updated_at")
    ]


def upgrade() -> None:
    op.create_table(
        "organization",
        sa.Column("uscc", sa.String(18), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("community_code", sa.String(12), sa.ForeignKey("community.code"), nullable=False),
        sa.Column("building_id", sa.String(64), sa.ForeignKey("building.id")),
        sa.Column("room_id", sa.String(64), sa.ForeignKey("room.id")),
        sa.Column("category", sa.Text),
        sa.Column("opened", sa.Date),
        sa.Column("closed", sa.Date),
        *timestamps(),
        sa.CheckConstraint(f"uscc ~ '{USCC_PATTERN}'", name=op.f("ck_organization_uscc")),
        sa.CheckConstraint(
            "num_nonnulls(building_id, room_id) <= 1", name=op.f("ck_organization_one_place")
        ),
        sa.CheckConstraint("closed >= opened", name=op.f("ck_organization_dates_ordered")),
    )
    for column in ("community_code", "building_id", "room_id"):
        op.create_index(f"ix_organization_{column}", "organization", [column])
    op.create_table(
        "employment",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("person_id", sa.BigInteger, sa.ForeignKey("person.id"), nullable=False),
        sa.Column(
            "organization_uscc",
            sa.String(18),
            sa.ForeignKey("organization.uscc"),
            nullable=False,
        ),
        # the organization's community, copied when written: the scope of the record
        sa.Column("community_code", sa.String(12), sa.ForeignKey("community.code"), nullable=False),
        sa.Column("position", sa.Text),
        sa.Column("started", sa.Date),
        sa.Column("ended", sa.Date),
        *timestamps(),
        sa.CheckConstraint("ended >= started", name=op.f("ck_employment_dates_ordered")),
        sa.UniqueConstraint(
            "person_id",
            "organization_uscc",
            "started",
            name=op.f("uq_employment_person_id_organization_uscc_started"),
            postgresql_nulls_not_distinct=True,
        ),
    )
    for column in ("organization_uscc", "community_code"):
        op.create_index(f"ix_employment_{column}", "employment", [column])

    for table, (read, write) in POLICIES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {table}_read ON {table} FOR SELECT USING ({read})")
        op.execute(f"CREATE POLICY {table}_insert ON {table} FOR INSERT WITH CHECK ({write})")
        op.execute(
            f"CREATE POLICY {table}_update ON {table} FOR UPDATE "
            f"USING ({write}) WITH CHECK ({write})"
        )
        op.execute(f"GRANT SELECT, INSERT, UPDATE ON {table} TO {API_ROLE}")
    op.execute(f"GRANT USAGE ON SEQUENCE employment_id_seq TO {API_ROLE}")
    # a person is visible through an employment the caller sees, as through a residence
    op.execute(f"ALTER POLICY person_read ON person USING ({PERSON_VISIBLE})")


def downgrade() -> None:
    op.execute(f"ALTER POLICY person_read ON person USING ({OLD_PERSON_VISIBLE})")
    op.drop_table("employment")
    op.drop_table("organization")
