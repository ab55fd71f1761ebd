"""Bitemporal history of the register, and a change feed in commit order.

History. Every change to a community, footprint, building, address, room, residence,
organization or employment keeps the old version: ``<table>_history`` holds every
version with its valid time (``valid_from``, ``valid_to``: when it was true) and its
record time (``recorded_txid``, ``superseded_txid``: the transactions that recorded it
and that replaced it; ``registry_txn`` gives their commit times). Statement-level
triggers write it in the transaction of the change, whoever makes it (the API, a load,
the CLI, plain SQL), set-based so that a bulk load costs a few statements, not one per
row. A change is valid from the start of its transaction, or from the transaction's
``registry.valid_from`` setting for a correction that took effect earlier (never later
than now). Versions from other transactions that overlap the new valid time are
superseded and, where they began earlier, recorded again up to it; a transaction that
changes a row twice keeps one version. So at any valid time, as known at any record
time, an object has at most one version, and ``registry_<table>_at(valid, known)`` (known
null: the latest knowledge) returns exactly the rows valid then.

Change feed. Each changed row also appends to ``registry_change`` (entity, key, insert /
update / delete), numbered within its transaction. At commit, a deferred trigger on the
transaction's ``registry_txn`` row takes the one-row ``registry_clock`` lock, reserves the
next block of sequence numbers and stamps the commit time. The lock is held until the
commit is visible, so sequence numbers follow commit order: a reader that has seen
number N has seen every change numbered below it, and ``/changes?after=N`` misses none.

Privacy: residence and employment history is person-level (officers and stations in
scope only, like the rows themselves); the others follow their table's scope. Person
identities (names, encrypted identity numbers) are not versioned here: key rotation
must be able to re-encrypt every copy, and the residence history refers to persons by id.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

API_ROLE = "registry_api"

# table: (key column, scope expression over a row ``n`` of the table, person-level)
VERSIONED: dict[str, tuple[str, str, bool]] = {
    "community": ("code", "n.code", False),
    "footprint": ("id", "NULL", False),
    "building": ("id", "n.community_code", False),
    "address": ("code", "n.community_code", False),
    # a room's scope is its building's community (rooms have no community of their own)
    "room": (
        "id",
        "(SELECT b.community_code FROM building b WHERE b.id = n.building_id)",
        False,
    ),
    "residence": ("id", "n.community_code", True),
    "organization": ("uscc", "n.community_code", False),
    "employment": ("id", "n.community_code", True),
}
# columns a change of which alone is not a new version: kept by triggers or derived
IGNORED = "ARRAY['updated_at', 'version', 'footprint_3857', 'geom_3857', 'anchor']"
# geometry columns of the history tables, indexed for spatial queries at a past time
SPATIAL = {
    "community": ("boundary",),
    "footprint": ("geom", "anchor"),
    "building": ("footprint",),
    "address": ("door_plate",),
}
# columns the rates at a past time look versions up by
LOOKUPS = {"address": ("building_id",), "room": ("building_id",)}

IN_SCOPE = (
    "((SELECT registry_sees_all()) OR "
    "scope_code LIKE ANY ((SELECT registry_scope_patterns())::text[]))"
)
PERSONS_IN_SCOPE = (
    "((SELECT registry_sees_persons()) AND "
    "scope_code LIKE ANY ((SELECT registry_scope_patterns())::text[]))"
)
PERSON_ENTITIES = tuple(t for t, (_, _, person) in VERSIONED.items() if person)
CHANGE_VISIBLE = (
    f"CASE WHEN entity IN ({', '.join(repr(t) for t in PERSON_ENTITIES)}) "
    f"THEN {PERSONS_IN_SCOPE} ELSE (scope_code IS NULL OR {IN_SCOPE}) END"
)

FEED_TABLES = """
CREATE TABLE registry_clock (
    id smallint PRIMARY KEY CHECK (id = 1),
    last_seq bigint NOT NULL,
    last_commit timestamptz NOT NULL
);
INSERT INTO registry_clock VALUES (1, 0, '-infinity');
CREATE TABLE registry_txn (
    txid bigint PRIMARY KEY,
    account text NOT NULL,
    valid_from timestamptz NOT NULL,
    seq_first bigint,
    seq_last bigint,
    committed_at timestamptz
);
CREATE INDEX ix_registry_txn_seq_last ON registry_txn (seq_last);
CREATE INDEX ix_registry_txn_committed_at ON registry_txn (committed_at);
CREATE TABLE registry_change (
    txid bigint NOT NULL,
    ordinal integer NOT NULL,
    entity text NOT NULL,
    key text NOT NULL,
    op text NOT NULL CHECK (op IN ('insert', 'update', 'delete')),
    scope_code varchar(12),
    PRIMARY KEY (txid, ordinal)
);
"""

FUNCTIONS = """
CREATE FUNCTION registry_valid_from() RETURNS timestamptz
LANGUAGE plpgsql STABLE AS $$
DECLARE
    setting text := nullif(current_setting('registry.valid_from', true), '');
    moment timestamptz;
BEGIN
    IF setting IS NULL THEN
        RETURN now();
    END IF;
    moment := setting::timestamptz;
    IF moment > now() THEN
        RAISE EXCEPTION 'valid-from % is in the future: a change takes effect now or earlier',
            moment USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN moment;
END
$$;

CREATE FUNCTION registry_account() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('registry.user', true), ''), session_user::text)
$$;

CREATE FUNCTION registry_change_count() RETURNS bigint
LANGUAGE sql STABLE AS $$
    -- the changes this transaction has made so far (a transaction-local setting)
    SELECT coalesce(nullif(current_setting('registry.change_count', true), ''), '0')::bigint
$$;

CREATE FUNCTION registry_note_changes(x bigint, total bigint) RETURNS void
LANGUAGE plpgsql AS $$
-- this transaction has made ``total`` changes so far; open its record (its numbers and
-- commit time are given at commit)
BEGIN
    PERFORM set_config('registry.change_count', total::text, true);
    INSERT INTO registry_txn (txid, account, valid_from)
    VALUES (x, registry_account(), registry_valid_from())
    ON CONFLICT (txid) DO NOTHING;
END
$$;

CREATE FUNCTION registry_txn_commit() RETURNS trigger
LANGUAGE plpgsql AS $$
-- at commit: the next block of sequence numbers and the commit time, under the clock's
-- row lock, which is held until this commit is visible, so numbers follow commit order
DECLARE
    n bigint := registry_change_count();
    first_seq bigint;
    commit_time timestamptz;
BEGIN
    UPDATE registry_clock
    SET last_seq = last_seq + n, last_commit = greatest(last_commit, clock_timestamp())
    WHERE id = 1
    RETURNING last_seq - n, last_commit INTO first_seq, commit_time;
    UPDATE registry_txn
    SET seq_first = first_seq, seq_last = first_seq + n, committed_at = commit_time
    WHERE txid = NEW.txid;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER registry_txn_commit AFTER INSERT ON registry_txn
DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION registry_txn_commit();
"""


def history_table(table: str) -> str:
    key = VERSIONED[table][0]
    spatial = "".join(
        f"CREATE INDEX ix_{table}_history_{column} ON {table}_history USING gist ({column});\n"
        for column in SPATIAL.get(table, ())
    )
    lookups = "".join(
        f"CREATE INDEX ix_{table}_history_{column} ON {table}_history ({column});\n"
        for column in LOOKUPS.get(table, ())
    )
    return f"""
CREATE TABLE {table}_history (
    history_id bigserial PRIMARY KEY,
    LIKE {table},
    valid_from timestamptz NOT NULL,
    valid_to timestamptz,
    recorded_txid bigint NOT NULL,
    superseded_txid bigint,
    scope_code varchar(12),
    CONSTRAINT ck_{table}_history_valid_time CHECK (valid_to > valid_from)
);
CREATE INDEX ix_{table}_history_{key}_valid_from ON {table}_history ({key}, valid_from);
CREATE INDEX ix_{table}_history_recorded_txid ON {table}_history (recorded_txid);
{spatial}{lookups}"""


def trigger_function(table: str, columns: list[str]) -> str:
    """The statement trigger that versions ``table``; ``columns`` are its columns.

    One data-modifying statement per event: the changed rows are computed once (a
    materialized CTE the planner can estimate) and joined to the history by key, so a
    bulk load is a few hash joins, never a scan per row."""
    key, scope, _ = VERSIONED[table]
    names = ", ".join(columns)
    differs = f"(to_jsonb(n) - {IGNORED}) IS DISTINCT FROM (to_jsonb(o) - {IGNORED})"
    old_scope = scope.replace("n.", "o.")
    changed_by_event = {
        "INSERT": f"""
            SELECT n.{key} AS key, 'insert'::text AS op, ({scope})::text AS scope
            FROM new_rows n""",
        "DELETE": f"""
            SELECT o.{key} AS key, 'delete'::text AS op, ({old_scope})::text AS scope
            FROM old_rows o""",
        "UPDATE": f"""
            SELECT coalesce(n.{key}, o.{key}) AS key,
                   CASE WHEN o.{key} IS NULL THEN 'insert'
                        WHEN n.{key} IS NULL THEN 'delete' ELSE 'update' END AS op,
                   (CASE WHEN n.{key} IS NULL THEN {old_scope} ELSE {scope} END)::text
                       AS scope
            FROM new_rows n FULL JOIN old_rows o ON o.{key} = n.{key}
            WHERE {differs}""",
    }
    new_values = ", ".join(f"n.{c}" for c in columns)
    branches = []
    for event, changed in changed_by_event.items():
        added = (
            ""
            if event == "DELETE"
            else f"""        -- the new versions, valid from e
        added AS (
            INSERT INTO {table}_history ({names}, valid_from, recorded_txid, scope_code)
            SELECT {new_values}, e, x, c.scope
            FROM new_rows n JOIN changed c ON c.key = n.{key}
        ),
"""
        )
        branches.append(f"""
    {"IF" if not branches else "ELSIF"} TG_OP = '{event}' THEN
        WITH changed AS MATERIALIZED ({changed}
        ),
        -- this transaction's own versions from an earlier statement: end them at e, or
        -- drop them when they begin at e or later (one transaction, one version)
        trimmed AS (
            UPDATE {table}_history h SET valid_to = e
            FROM changed c
            WHERE h.{key} = c.key AND h.recorded_txid = x AND h.superseded_txid IS NULL
              AND h.valid_from < e AND (h.valid_to IS NULL OR h.valid_to > e)
        ),
        dropped AS (
            DELETE FROM {table}_history h USING changed c
            WHERE h.{key} = c.key AND h.recorded_txid = x AND h.superseded_txid IS NULL
              AND h.valid_from >= e
        ),
        -- earlier transactions' versions still valid at or after e: superseded, and
        -- their time before e recorded again
        superseded AS (
            UPDATE {table}_history h SET superseded_txid = x
            FROM changed c
            WHERE h.{key} = c.key AND h.superseded_txid IS NULL AND h.recorded_txid <> x
              AND (h.valid_to IS NULL OR h.valid_to > e)
            RETURNING h.*
        ),
        recorded_again AS (
            INSERT INTO {table}_history ({names}, valid_from, valid_to, recorded_txid,
                                         scope_code)
            SELECT {names}, valid_from, e, x, scope_code FROM superseded WHERE valid_from < e
        ),
{added}        -- the feed: one change per row, numbered after this transaction's earlier ones
        fed AS (
            INSERT INTO registry_change (txid, ordinal, entity, key, op, scope_code)
            SELECT x, done + row_number() OVER (), '{table}', c.key::text, c.op, c.scope
            FROM changed c
            RETURNING 1
        )
        SELECT count(*) INTO made FROM fed;""")
    body = "".join(branches)
    return f"""
CREATE FUNCTION registry_history_{table}() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    x bigint := pg_current_xact_id()::text::bigint;
    e timestamptz := registry_valid_from();
    done bigint := registry_change_count();
    made bigint;
BEGIN{body}
    END IF;
    IF made > 0 THEN
        PERFORM registry_note_changes(x, done + made);
    END IF;
    RETURN NULL;
END
$$
"""


def state_function(table: str) -> str:
    """``registry_<table>_at(valid, known)``: the versions valid at ``valid`` as known at
    ``known`` (null: as known now). SQL and STABLE, so PostgreSQL inlines it and the
    history table's indexes serve the caller's conditions."""
    return f"""
CREATE FUNCTION registry_{table}_at(valid timestamptz, known timestamptz)
RETURNS SETOF {table}_history
LANGUAGE sql STABLE AS $$
    SELECT h.*
    FROM {table}_history h
    WHERE h.valid_from <= valid AND (h.valid_to IS NULL OR h.valid_to > valid)
      AND ((known IS NULL AND h.superseded_txid IS NULL)
           OR (known IS NOT NULL
               AND EXISTS (SELECT 1 FROM registry_txn r
                           WHERE r.txid = h.recorded_txid AND r.committed_at <= known)
               AND NOT EXISTS (SELECT 1 FROM registry_txn s
                               WHERE s.txid = h.superseded_txid AND s.committed_at <= known)))
$$
"""


ON_MAP_AT = """
CREATE FUNCTION registry_on_map_building_at(valid timestamptz, known timestamptz)
RETURNS TABLE (id varchar, community_code varchar, footprint geometry)
LANGUAGE sql STABLE AS $$
    -- on_map_building (migration 0002) at a past time: counts and has a footprint
    SELECT b.id, b.community_code, b.footprint
    FROM registry_building_at(valid, known) b
    WHERE b.status <> 'demolished' AND b.footprint IS NOT NULL AND NOT ST_IsEmpty(b.footprint)
$$
"""


COUNTS_AT = """
CREATE FUNCTION registry_community_counts_at(
    valid timestamptz, known timestamptz, as_of date, code_prefix text DEFAULT ''
)
RETURNS TABLE (
    code varchar, name text, street_code varchar, street_name text, district_code varchar,
    district_name text, buildings bigint, buildings_on_map bigint, footprints bigint,
    footprints_covered bigint, buildings_labeled bigint, residents bigint,
    residents_on_map bigint, organizations bigint, organizations_on_map bigint
)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public
-- its estimated cost is high enough to trigger JIT compilation, which costs seconds here
SET jit = off AS $fn$
    -- the per-community counts behind the rates (community_recount.sql's definitions) for
    -- the register valid at ``valid`` as known at ``known`` (null: now); residents and
    -- organizations active at ``as_of``. As the owner, like the counters: counts only,
    -- which every role may see (callers filter by jurisdiction)
    -- Dynamic, so that each call is planned with its own values: a plan made for an
    -- unknown code prefix guesses a few rows and nests loops over the whole city.
BEGIN
    RETURN QUERY EXECUTE $q$
        SELECT c.code,
               c.name,
               c.street_code,
               c.street_name,
               c.district_code,
               c.district_name,
               coalesce(b.buildings, 0) AS buildings,
               coalesce(o.buildings_on_map, 0) AS buildings_on_map,
               coalesce(f.footprints, 0) AS footprints,
               coalesce(f.footprints_covered, 0) AS footprints_covered,
               coalesce(o.buildings_labeled, 0) AS buildings_labeled,
               coalesce(r.residents, 0) AS residents,
               coalesce(r.residents_on_map, 0) AS residents_on_map,
               coalesce(g.organizations, 0) AS organizations,
               coalesce(g.organizations_on_map, 0) AS organizations_on_map
        FROM registry_community_at($1, $2) c
        LEFT JOIN (
            SELECT community_code, count(*) AS buildings
            FROM registry_building_at($1, $2)
            WHERE status <> 'demolished' AND community_code LIKE $4 || '%'
            GROUP BY community_code
        ) b ON b.community_code = c.code
        LEFT JOIN (
            -- on the map, and labelled: an active address naming it has its door plate within
            -- 30 m of the footprint (0 inside), on the spheroid
            SELECT m.community_code,
                   count(*) AS buildings_on_map,
                   count(*) FILTER (WHERE EXISTS (
                       SELECT 1
                       FROM registry_address_at($1, $2) a
                       WHERE a.building_id = m.id
                         AND a.status = 'active'
                         AND a.door_plate IS NOT NULL
                         AND ST_DWithin(a.door_plate::geography, m.footprint::geography, 30)
                   )) AS buildings_labeled
            FROM registry_on_map_building_at($1, $2) m
            WHERE m.community_code LIKE $4 || '%'
            GROUP BY m.community_code
        ) o ON o.community_code = c.code
        LEFT JOIN (
            -- footprints by the community holding their point-on-surface; covered from half their
            -- area by the union of all on-map buildings, of any community
            SELECT holder.code AS community_code,
                   count(*) AS footprints,
                   count(*) FILTER (WHERE cover.covered_area >= 0.5 * ST_Area(fp.geom::geography))
                       AS footprints_covered
            FROM registry_community_at($1, $2) holder
            JOIN registry_footprint_at($1, $2) fp ON ST_Contains(holder.boundary, fp.anchor)
            CROSS JOIN LATERAL (
                SELECT coalesce(
                           ST_Area(ST_Intersection(fp.geom, ST_Union(m.footprint))::geography), 0
                       ) AS covered_area
                FROM registry_on_map_building_at($1, $2) m
                WHERE m.footprint && fp.geom AND ST_Intersects(m.footprint, fp.geom)
            ) cover
            WHERE holder.code LIKE $4 || '%'
            GROUP BY holder.code
        ) f ON f.community_code = c.code
        LEFT JOIN (
            -- active at $3; placed when the residence's room is in a building on the map
            SELECT r.community_code,
                   count(*) AS residents,
                   count(m.id) AS residents_on_map
            FROM registry_residence_at($1, $2) r
            LEFT JOIN registry_room_at($1, $2) room ON room.id = r.room_id
            LEFT JOIN registry_on_map_building_at($1, $2) m ON m.id = room.building_id
            WHERE (r.moved_out IS NULL OR r.moved_out > $3)
              AND r.community_code LIKE $4 || '%'
            GROUP BY r.community_code
        ) r ON r.community_code = c.code
        LEFT JOIN (
            -- organizations active at $3 (opened on or before it, closed after it or never),
            -- by their own community; on the map when their building (or their room's) is
            SELECT o.community_code,
                   count(*) AS organizations,
                   count(m.id) AS organizations_on_map
            FROM registry_organization_at($1, $2) o
            LEFT JOIN registry_room_at($1, $2) room ON room.id = o.room_id
            LEFT JOIN registry_on_map_building_at($1, $2) m
                ON m.id = coalesce(o.building_id, room.building_id)
            WHERE (o.opened IS NULL OR o.opened <= $3)
              AND o.community_code LIKE $4 || '%'
              AND (o.closed IS NULL OR o.closed > $3)
            GROUP BY o.community_code
        ) g ON g.community_code = c.code
        -- a code prefix keeps the communities under it, and what is counted for them
        WHERE c.code LIKE $4 || '%'
    $q$ USING valid, known, as_of, code_prefix;
END
$fn$
"""


def seed(table: str, columns: list[str]) -> str:
    """Today's rows as their first versions, valid since they were created (as far as the
    register knows: footprints have no creation time, so since their last change)."""
    names = ", ".join(columns)
    since = "n.updated_at" if table == "footprint" else "n.created_at"
    scope = VERSIONED[table][1]
    return f"""
INSERT INTO {table}_history ({names}, valid_from, recorded_txid, scope_code)
SELECT {", ".join(f"n.{c}" for c in columns)}, least({since}, now()),
       pg_current_xact_id()::text::bigint, {scope}
FROM {table} n
"""


def table_columns(table: str) -> list[str]:
    rows = op.get_bind().exec_driver_sql(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum",
        (table,),
    )
    return [row[0] for row in rows]


def generated_columns(table: str) -> list[str]:
    rows = op.get_bind().exec_driver_sql(
        "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attgenerated = 's'",
        (table,),
    )
    return [row[0] for row in rows]


def upgrade() -> None:
    op.execute(FEED_TABLES)
    op.execute(FUNCTIONS)
    for table in VERSIONED:
        columns = table_columns(table)
        op.execute(history_table(table))
        for column in generated_columns(table):  # plain copies here, nullable
            op.execute(f"ALTER TABLE {table}_history ALTER COLUMN {column} DROP NOT NULL")
        op.execute(trigger_function(table, columns))
        op.execute(state_function(table))
        op.execute(seed(table, columns))
        for event, tables in (
            ("INSERT", "NEW TABLE AS new_rows"),
            ("UPDATE", "NEW TABLE AS new_rows OLD TABLE AS old_rows"),
            ("DELETE", "OLD TABLE AS old_rows"),
        ):
            op.execute(
                f"CREATE TRIGGER history_{event.lower()} AFTER {event} ON {table} "
                f"REFERENCING {tables} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION registry_history_{table}()"
            )
        # the owner writes history whoever changed the row; the API role only reads it
        op.execute(
            f"ALTER FUNCTION registry_history_{table}() SECURITY DEFINER SET search_path = public"
        )
        person_level = VERSIONED[table][2]
        read = PERSONS_IN_SCOPE if person_level else IN_SCOPE
        if table in ("community", "footprint"):
            read = "true"
        op.execute(f"ALTER TABLE {table}_history ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_history_read ON {table}_history FOR SELECT USING ({read})"
        )
        op.execute(f"GRANT SELECT ON {table}_history TO {API_ROLE}")
    op.execute(ON_MAP_AT)
    op.execute(COUNTS_AT)
    # the seeds' transaction is the first of the record: committed by this migration
    op.execute(
        "INSERT INTO registry_txn (txid, account, valid_from) "
        "VALUES (pg_current_xact_id()::text::bigint, registry_account(), now()) "
        "ON CONFLICT (txid) DO NOTHING"
    )
    for function in (
        "registry_note_changes(bigint, bigint)",
        "registry_txn_commit()",
    ):
        op.execute(f"ALTER FUNCTION {function} SECURITY DEFINER SET search_path = public")
        op.execute(f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC")
    op.execute("ALTER TABLE registry_change ENABLE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY registry_change_read ON registry_change FOR SELECT USING ({CHANGE_VISIBLE})"
    )
    for table in ("registry_change", "registry_txn", "registry_clock"):
        op.execute(f"GRANT SELECT ON {table} TO {API_ROLE}")


def downgrade() -> None:
    op.execute("DROP FUNCTION registry_community_counts_at(timestamptz, timestamptz, date, text)")
    op.execute("DROP FUNCTION registry_on_map_building_at(timestamptz, timestamptz)")
    for table in reversed(VERSIONED):
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER history_{event} ON {table}")
        op.execute(f"DROP FUNCTION registry_{table}_at(timestamptz, timestamptz)")
        op.execute(f"DROP FUNCTION registry_history_{table}()")
        op.execute(f"DROP TABLE {table}_history")
    op.execute("DROP TABLE registry_change")
    op.execute("DROP TABLE registry_txn")
    op.execute("DROP TABLE registry_clock")
    for function in (
        "registry_txn_commit()",
        "registry_note_changes(bigint, bigint)",
        "registry_account()",
        "registry_change_count()",
        "registry_valid_from()",
    ):
        op.execute(f"DROP FUNCTION {function}")
