"""Security: accounts, tokens, sessions, the audit log, the API role and row-level security.

The API connects as ``registry_api``, a role that owns nothing. Each request sets, in its
own transaction, who is asking (``registry.user``), their role (``registry.role``) and
their jurisdiction as comma-separated code prefixes (``registry.scope``); the policies
below filter on those, so a query that forgets a WHERE clause still sees nothing outside
the jurisdiction. The owner (the CLI, loads, migrations) bypasses row-level security as
table owners do, and so do the counter and tile triggers, which now run as the owner
(SECURITY DEFINER): a count must never depend on who made the edit.

Who sees what (the policies):

- building, address: every signed-in role, within its scope; ``admin`` everywhere;
- room: the rooms of the buildings the caller sees;
- residence, person: ``officer`` and ``station`` only, within scope (a person through a
  residence the caller sees) — never ``analyst``, ``gis`` or ``admin``;
- address_review: editors (``officer``, ``station``, ``admin``), and only items whose
  residence, if any, the caller sees;
- writes: editors only, and only inside their scope (WITH CHECK: nothing can be moved
  out of it either).

``audit_log`` is append-only for everyone: the API role may INSERT only, and a trigger
refuses UPDATE, DELETE and TRUNCATE even to the owner.

Spatial index use under row-level security needs the geometry ``&&`` operator marked
LEAKPROOF (PostgreSQL will not otherwise evaluate a user's bounding-box condition before
the policy, and every tile becomes a sequential scan). It only compares bounding boxes and
its one error names SRIDs, not data. That needs a superuser; without one, the migration
warns and the API still returns the right rows, slowly.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

API_ROLE = "registry_api"
ROLES = ("officer", "station", "analyst", "gis", "admin")
AUDIT_ACTIONS = (
    "read_persons",
    "unmask",
    "search_identity",
    "export",
    "verification",
    "login",
    "login_failed",
    "logout",
    "review",
    "key_rotation",
)


def enum_check(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


CONTEXT_FUNCTIONS = """
CREATE FUNCTION registry_role() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT nullif(current_setting('registry.role', true), '')
$$;
CREATE FUNCTION registry_scope_patterns() RETURNS text[]
LANGUAGE sql STABLE AS $$
    -- codes are digits only (checked on the account), so they are safe LIKE prefixes
    SELECT coalesce(array_agg(code || '%'), '{}')
    FROM unnest(string_to_array(nullif(current_setting('registry.scope', true), ''), ',')) code
$$;
CREATE FUNCTION registry_sees_all() RETURNS boolean
LANGUAGE sql STABLE AS $$ SELECT coalesce(registry_role() = 'admin', false) $$;
CREATE FUNCTION registry_sees_persons() RETURNS boolean
LANGUAGE sql STABLE AS $$ SELECT coalesce(registry_role() IN ('officer', 'station'), false) $$;
CREATE FUNCTION registry_disclose(n bigint) RETURNS bigint
LANGUAGE sql STABLE AS $$
    -- a published count of persons: null (suppressed) from 1 to 4 for the gis role, whose
    -- data is passed on; see registry/disclosure.py
    SELECT CASE WHEN registry_role() = 'gis' AND n BETWEEN 1 AND 4 THEN NULL ELSE n END
$$;
CREATE FUNCTION registry_may_edit() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(registry_role() IN ('officer', 'station', 'admin'), false)
$$;
"""

# ``(SELECT f())`` is an uncorrelated subquery: evaluated once per query (an InitPlan),
# not once per row
IN_SCOPE = (
    "((SELECT registry_sees_all()) OR "
    "community_code LIKE ANY ((SELECT registry_scope_patterns())::text[]))"
)
PERSONS_IN_SCOPE = (
    "((SELECT registry_sees_persons()) AND "
    "community_code LIKE ANY ((SELECT registry_scope_patterns())::text[]))"
)
ROOM_VISIBLE = "EXISTS (SELECT 1 FROM building b WHERE b.id = room.building_id)"
PERSON_VISIBLE = (
    "((SELECT registry_sees_persons()) AND "
    "EXISTS (SELECT 1 FROM residence r WHERE r.person_id = person.id))"
)
REVIEW_VISIBLE = (
    "((SELECT registry_may_edit()) AND (address_review.residence_id IS NULL OR "
    "EXISTS (SELECT 1 FROM residence r WHERE r.id = address_review.residence_id)))"
)
EDITOR = "(SELECT registry_may_edit())"

# table: (who reads, who writes)
POLICIES = {
    "building": (IN_SCOPE, f"({EDITOR} AND {IN_SCOPE})"),
    "address": (IN_SCOPE, f"({EDITOR} AND {IN_SCOPE})"),
    "room": (ROOM_VISIBLE, f"({EDITOR} AND {ROOM_VISIBLE})"),
    "residence": (PERSONS_IN_SCOPE, PERSONS_IN_SCOPE),
    "person": (PERSON_VISIBLE, "(SELECT registry_sees_persons())"),
    "address_review": (REVIEW_VISIBLE, REVIEW_VISIBLE),
}

READ_ONLY_TABLES = (
    "community",
    "footprint",
    "footprint_cover_state",
    "community_count",
    "community_resident_count",
    "tile_cell",
    "registry_meta",
    "alembic_version",
    "account",
    "api_token",
    "on_map_building",
    "building_label",
    "footprint_cover",
)
WRITABLE_TABLES = ("building", "address", "room", "residence", "person", "address_review")

# functions that run as the owner: the counters and tile versions must see every row
# whatever the role of the writer, and the API role has no rights on their tables
DEFINER_FUNCTIONS = (
    "registry_counts_building()",
    "registry_counts_address()",
    "registry_counts_room()",
    "registry_counts_footprint()",
    "registry_counts_community()",
    "registry_counts_residence()",
    "registry_tiles_building()",
    "registry_tiles_address()",
    "registry_tiles_footprint()",
    "registry_tiles_community()",
    "registry_tiles_community_count()",
    "registry_tiles_community_resident_count()",
)
INTERNAL_FUNCTIONS = (
    "registry_refresh_counts(text[], text[], text[])",
    "registry_add_residents(community_resident_count[])",
    "registry_refresh_cover(text[])",
    "registry_refresh_all()",
    "registry_touch_tiles(text[], geometry)",
)
VIEWS = ("on_map_building", "building_label", "footprint_cover")

CREATE_API_ROLE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{API_ROLE}') THEN
        BEGIN
            CREATE ROLE {API_ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'role {API_ROLE} does not exist and % may not create it: '
                'ask a database administrator to run CREATE ROLE {API_ROLE} NOLOGIN',
                current_user;
        END;
    END IF;
END
$$
"""

SET_API_PASSWORD = f"""
CREATE FUNCTION registry_set_api_password(password text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- %L quotes the value server-side: the password is a bound parameter, never SQL text
    EXECUTE format('ALTER ROLE {API_ROLE} WITH LOGIN PASSWORD %L', password);
END
$$
"""

LEAKPROOF = """
DO $$
BEGIN
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        ALTER FUNCTION geometry_overlaps(geometry, geometry) LEAKPROOF;
        ALTER FUNCTION geography_overlaps(geography, geography) LEAKPROOF;
    ELSE
        RAISE WARNING 'not a superuser: geometry && is not LEAKPROOF, so spatial indexes '
            'cannot serve the API role under row-level security. A superuser should run '
            'ALTER FUNCTION geometry_overlaps(geometry, geometry) LEAKPROOF';
    END IF;
END
$$
"""

APPEND_ONLY = """
CREATE FUNCTION registry_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$
"""


LOGIN_FAILURES = """
CREATE FUNCTION registry_login_failures(account text, client inet, since timestamptz)
RETURNS integer
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    -- failed sign-ins for an account or from an address: a count, so that throttling needs
    -- no read access to the audit log
    SELECT count(*)::integer
    FROM audit_log
    WHERE action = 'login_failed' AND at > since
      AND (user_name = account OR (client IS NOT NULL AND client_ip = client))
$$
"""


RESIDENTS_NOT_ON_MAP = f"""
CREATE FUNCTION registry_residents_not_on_map(as_of date)
RETURNS TABLE (community_code text, residents_not_on_map integer)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
    -- active residents not placed on the map, counted per community: a count that roles
    -- who may not see persons may see. Runs as the owner, so it applies the caller's
    -- scope itself; a caller with no role set sees all only if it is not the API's role.
    SELECT r.community_code::text, count(*)::integer
    FROM residence r
    LEFT JOIN room ON room.id = r.room_id
    LEFT JOIN on_map_building m ON m.id = room.building_id
    WHERE (r.moved_out IS NULL OR r.moved_out > as_of)
      AND m.id IS NULL
      AND (registry_sees_all()
           OR r.community_code LIKE ANY (registry_scope_patterns())
           OR (registry_role() IS NULL AND session_user <> '{API_ROLE}' AND NOT EXISTS (
                   SELECT 1 FROM pg_auth_members am
                   JOIN pg_roles g ON g.oid = am.roleid
                   JOIN pg_roles u ON u.oid = am.member
                   WHERE g.rolname = '{API_ROLE}' AND u.rolname = session_user)))
    GROUP BY r.community_code
$$
"""


# footprint_cover (migration 0002) with the box test spelled out: under row-level security
# only the LEAKPROOF ``&&`` may use the spatial index, not ST_Intersects
FOOTPRINT_COVER = """
CREATE OR REPLACE VIEW footprint_cover AS
SELECT f.id,
       f.source,
       c.code AS community_code,
       c.name AS community_name,
       f.geom,
       ST_Area(f.geom::geography) AS area,
       cover.covered_area,
       coalesce(cover.covered_area >= 0.5 * ST_Area(f.geom::geography), false) AS covered
FROM community c
JOIN footprint f ON ST_Contains(c.boundary, f.anchor)
CROSS JOIN LATERAL (
    SELECT coalesce(
               ST_Area(ST_Intersection(f.geom, ST_Union(m.footprint))::geography), 0
           ) AS covered_area
    FROM on_map_building m
    WHERE m.footprint && f.geom AND ST_Intersects(m.footprint, f.geom)
) cover
"""


def upgrade() -> None:
    op.create_table(
        "account",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column(
            "jurisdiction",
            postgresql.ARRAY(sa.Text),
            nullable=False,
            server_default="{}",
        ),
        sa.Column("password_hash", sa.Text),
        sa.Column("disabled_at", sa.DateTime(timezone=True)),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.CheckConstraint(enum_check("role", ROLES), name="ck_account_role"),
        sa.CheckConstraint("name ~ '^[A-Za-z0-9_.@-]{1,64}$'", name="ck_account_name"),
        sa.CheckConstraint(
            "array_to_string(jurisdiction, ',') ~ '^([0-9]+(,[0-9]+)*)?$'",
            name="ck_account_jurisdiction",
        ),
    )
    op.create_table(
        "api_token",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "account",
            sa.Text,
            sa.ForeignKey("account.name", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.Text, nullable=False, server_default="token"),
        sa.Column("digest", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("csrf", sa.Text),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("kind IN ('token', 'session')", name="ck_api_token_kind"),
        sa.CheckConstraint("(kind = 'session') = (csrf IS NOT NULL)", name="ck_api_token_csrf"),
    )
    op.create_index("ix_api_token_account", "api_token", ["account"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("clock_timestamp()"),
        ),
        sa.Column("user_name", sa.Text, nullable=False),
        sa.Column("role", sa.Text),
        sa.Column("jurisdiction", postgresql.ARRAY(sa.Text)),
        sa.Column("client_ip", postgresql.INET),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("target_ids", postgresql.ARRAY(sa.Text), nullable=False, server_default="{}"),
        sa.Column("purpose", sa.Text),
        sa.Column("detail", postgresql.JSONB, nullable=False, server_default="{}"),
        sa.CheckConstraint(enum_check("action", AUDIT_ACTIONS), name="ck_audit_log_action"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_user_name_at", "audit_log", ["user_name", "at"])
    op.execute(APPEND_ONLY)
    op.execute(
        "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log "
        "FOR EACH ROW EXECUTE FUNCTION registry_audit_append_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log "
        "FOR EACH STATEMENT EXECUTE FUNCTION registry_audit_append_only()"
    )
    # persons: which key version encrypted the row, for rotation without downtime
    op.add_column(
        "person",
        sa.Column("key_version", sa.SmallInteger, nullable=False, server_default="1"),
    )

    op.execute(LOGIN_FAILURES)
    op.execute(CREATE_API_ROLE)
    op.execute(SET_API_PASSWORD)
    op.execute("REVOKE ALL ON FUNCTION registry_set_api_password(text) FROM PUBLIC")
    op.execute(CONTEXT_FUNCTIONS)
    op.execute(RESIDENTS_NOT_ON_MAP)
    op.execute(LEAKPROOF)
    for function in DEFINER_FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} SECURITY DEFINER SET search_path = public")
    for function in INTERNAL_FUNCTIONS:
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
    op.execute(FOOTPRINT_COVER)
    for view in VIEWS:
        op.execute(f"ALTER VIEW {view} SET (security_invoker = true)")

    op.execute(f"GRANT USAGE ON SCHEMA public TO {API_ROLE}")
    for table in READ_ONLY_TABLES:
        op.execute(f"GRANT SELECT ON {table} TO {API_ROLE}")
    for table in WRITABLE_TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE ON {table} TO {API_ROLE}")
    op.execute(f"GRANT SELECT, INSERT, UPDATE ON api_token TO {API_ROLE}")
    op.execute(f"GRANT INSERT ON audit_log TO {API_ROLE}")
    op.execute(
        f"GRANT USAGE ON SEQUENCE audit_log_id_seq, api_token_id_seq, person_id_seq, "
        f"residence_id_seq, address_review_id_seq TO {API_ROLE}"
    )
    for table, (read, write) in POLICIES.items():
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {table}_read ON {table} FOR SELECT USING ({read})")
        op.execute(f"CREATE POLICY {table}_insert ON {table} FOR INSERT WITH CHECK ({write})")
        op.execute(
            f"CREATE POLICY {table}_update ON {table} FOR UPDATE "
            f"USING ({write}) WITH CHECK ({write})"
        )


def downgrade() -> None:
    for table in reversed(POLICIES):
        for kind in ("read", "insert", "update"):
            op.execute(f"DROP POLICY {table}_{kind} ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    # the role is shared by every registry database of the cluster: revoke, never drop
    op.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {API_ROLE}")
    op.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {API_ROLE}")
    op.execute(f"REVOKE ALL ON SCHEMA public FROM {API_ROLE}")
    for view in VIEWS:
        op.execute(f"ALTER VIEW {view} RESET (security_invoker)")
    # footprint_cover keeps its spelled-out box test: the same rows as 0002's definition
    for function in INTERNAL_FUNCTIONS:
        op.execute(f"GRANT EXECUTE ON FUNCTION {function} TO PUBLIC")
    for function in DEFINER_FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} SECURITY INVOKER RESET search_path")
    for function in (
        "registry_may_edit()",
        "registry_disclose(bigint)",
        "registry_sees_persons()",
        "registry_sees_all()",
        "registry_scope_patterns()",
        "registry_role()",
        "registry_set_api_password(text)",
        "registry_login_failures(text, inet, timestamptz)",
        "registry_residents_not_on_map(date)",
    ):
        op.execute(f"DROP FUNCTION {function}")
    op.drop_column("person", "key_version")
    op.drop_table("audit_log")
    op.execute("DROP FUNCTION registry_audit_append_only()")
    op.drop_table("api_token")
    op.drop_table("account")
