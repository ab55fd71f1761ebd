"""Building lineage: permanent ids, splits and merges.

- ``building_lineage``: one row per predecessor and successor of a split (one building
  becomes several) or a merge (several become one); the rows of one operation share an
  ``event_id`` from the ``building_lineage_event`` sequence. Append-only, like the
  verification history (``registry_append_only()`` of 0007).
- An id, once given, never comes back: a trigger refuses to insert (or rename to) an id
  that was ever retired, naming the event and its successors (SQLSTATE ``RG410``).
- Retiring an id deletes its building row, once its rooms, addresses and organizations
  have moved to the successors, through ``registry_retire_building(id)``: the API role
  has no DELETE on ``building``, and the function deletes only a building the lineage
  names as a predecessor, for an editor within whose scope it is. The verification
  history of a retired building stays, by id: the foreign key from
  ``building_verification`` goes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

API_ROLE = "registry_api"
KINDS = ("split", "merge")
RETIRED_SQLSTATE = "RG410"

IN_SCOPE = (
    "((SELECT registry_sees_all()) OR "
    "community_code LIKE ANY ((SELECT registry_scope_patterns())::text[]))"
)
EDITOR = "(SELECT registry_may_edit())"

REFUSE_RETIRED = f"""
CREATE FUNCTION registry_refuse_retired_id() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    retired record;
BEGIN
    SELECT min(event_id) AS event_id, min(kind) AS kind, min(recorded_at) AS recorded_at,
           string_agg(successor_id, ', ' ORDER BY successor_id) AS successors
      INTO retired
      FROM building_lineage
     WHERE predecessor_id = NEW.id
       AND event_id = (SELECT min(event_id) FROM building_lineage WHERE predecessor_id = NEW.id);
    IF retired.event_id IS NOT NULL THEN
        RAISE EXCEPTION
            'building id % was retired by % %, %; its successors: %; ids are never reused',
            NEW.id, retired.kind, retired.event_id,
            to_char(retired.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD'), retired.successors
            USING ERRCODE = '{RETIRED_SQLSTATE}';
    END IF;
    RETURN NEW;
END
$$
"""
RETIRE = """
CREATE FUNCTION registry_retire_building(retired_id text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    code text;
BEGIN
    SELECT community_code INTO code FROM building WHERE id = retired_id;
    IF code IS NULL THEN
        RAISE EXCEPTION 'no building %', retired_id USING ERRCODE = 'no_data_found';
    END IF;
    -- the owner (the CLI) may delete anyway; the API role only as an editor in scope
    IF NOT has_table_privilege(session_user, 'building', 'DELETE')
       AND NOT (registry_may_edit()
                AND (registry_sees_all() OR code LIKE ANY (registry_scope_patterns()))) THEN
        RAISE EXCEPTION 'may not retire building %', retired_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM building_lineage WHERE predecessor_id = retired_id) THEN
        RAISE EXCEPTION 'building % is not retired by a split or merge', retired_id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    DELETE FROM building WHERE id = retired_id;
END
$$
"""
VERIFICATION_FK = "fk_building_verification_building_id_building"


def upgrade() -> None:
    op.execute("CREATE SEQUENCE building_lineage_event")
    op.create_table(
        "building_lineage",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("predecessor_id", sa.String(64), nullable=False),
        sa.Column("successor_id", sa.String(64), nullable=False),
        sa.Column("community_code", sa.String(12), nullable=False),
        sa.Column(
            "recorded_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column("account", sa.Text, nullable=False),
        sa.Column("note", sa.Text),
        sa.CheckConstraint(
            f"kind IN ({', '.join(repr(k) for k in KINDS)})", name=op.f("ck_building_lineage_kind")
        ),
        sa.CheckConstraint(
            "predecessor_id <> successor_id", name=op.f("ck_building_lineage_distinct")
        ),
    )
    for column in ("predecessor_id", "successor_id", "event_id", "community_code"):
        op.create_index(f"ix_building_lineage_{column}", "building_lineage", [column])
    op.execute(
        "CREATE TRIGGER building_lineage_append_only BEFORE UPDATE OR DELETE ON building_lineage "
        "FOR EACH ROW EXECUTE FUNCTION registry_append_only()"
    )
    op.execute(
        "CREATE TRIGGER building_lineage_no_truncate BEFORE TRUNCATE ON building_lineage "
        "FOR EACH STATEMENT EXECUTE FUNCTION registry_append_only()"
    )
    op.execute("ALTER TABLE building_lineage ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY building_lineage_read ON building_lineage FOR SELECT USING ({IN_SCOPE})"
    )
    op.execute(
        "CREATE POLICY building_lineage_insert ON building_lineage FOR INSERT "
        f"WITH CHECK ({EDITOR} AND {IN_SCOPE})"
    )
    op.execute(f"GRANT SELECT, INSERT ON building_lineage TO {API_ROLE}")
    op.execute(
        f"GRANT USAGE ON SEQUENCE building_lineage_id_seq, building_lineage_event TO {API_ROLE}"
    )

    op.execute(REFUSE_RETIRED)
    op.execute("REVOKE ALL ON FUNCTION registry_refuse_retired_id() FROM PUBLIC")
    op.execute(
        "CREATE TRIGGER building_id_not_retired BEFORE INSERT OR UPDATE OF id ON building "
        "FOR EACH ROW EXECUTE FUNCTION registry_refuse_retired_id()"
    )
    # retiring = deleting the emptied row; the API role only through this function
    op.execute(RETIRE)
    op.execute("REVOKE ALL ON FUNCTION registry_retire_building(text) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION registry_retire_building(text) TO {API_ROLE}")
    op.drop_constraint(op.f(VERIFICATION_FK), "building_verification", type_="foreignkey")


def downgrade() -> None:
    # the history of buildings retired meanwhile has no row to refer to: the constraint
    # comes back for new rows (NOT VALID), and is validated when nothing was retired
    op.create_foreign_key(
        op.f(VERIFICATION_FK),
        "building_verification",
        "building",
        ["building_id"],
        ["id"],
        postgresql_not_valid=True,
    )
    op.execute(
        "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM building_verification v WHERE NOT EXISTS "
        "(SELECT 1 FROM building b WHERE b.id = v.building_id)) THEN "
        f"ALTER TABLE building_verification VALIDATE CONSTRAINT {VERIFICATION_FK}; "
        "END IF; END $$"
    )
    op.execute("DROP FUNCTION registry_retire_building(text)")
    op.execute("DROP TRIGGER building_id_not_retired ON building")
    op.execute("DROP FUNCTION registry_refuse_retired_id()")
    op.drop_table("building_lineage")
    op.execute("DROP SEQUENCE building_lineage_event")
