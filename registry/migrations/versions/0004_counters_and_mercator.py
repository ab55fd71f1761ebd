"""Rates in milliseconds: per-community counters kept by triggers; tiles without transforms.

``community_count`` holds each community's building, label and footprint counts and
``community_resident_count`` its residents by moved-out date (so the active residents at
any as-of date are a sum over the dates after it). Statement-level triggers on every table
a rate reads recount exactly the communities a statement touched, using the rate views of
migration 0002, in the same transaction as the change: the rates are right the moment it
commits. Concurrent writers to one community are serialised by a row lock on the community
taken before counting, so under READ COMMITTED each recount sees the other's committed
rows. A bulk load sets ``registry.defer_counts`` to ``on`` for its transaction and
recounts once at the end (registry/counts.py).

``building.footprint_3857`` and ``footprint.geom_3857`` are stored Web Mercator copies,
with spatial indexes, so a vector tile selects and encodes features with no per-request
transform.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from geoalchemy2 import Geometry

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

COUNT_COLUMNS = (
    "buildings",
    "buildings_on_map",
    "buildings_labeled",
    "footprints",
    "footprints_covered",
)

LOCK_AND_COUNT = """
CREATE FUNCTION registry_refresh_counts(
    building_codes text[], footprint_codes text[], resident_codes text[]
) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    codes text[] := ARRAY(
        SELECT DISTINCT code
        FROM unnest(building_codes || footprint_codes || resident_codes) AS u(code)
        WHERE code IS NOT NULL ORDER BY code
    );
BEGIN
    IF cardinality(codes) = 0 THEN
        RETURN;
    END IF;
    -- one recount of a community at a time: a concurrent writer's recount waits here,
    -- and (READ COMMITTED) the statements below then see what the first one committed
    PERFORM 1 FROM community WHERE code = ANY (codes) ORDER BY code FOR NO KEY UPDATE;

    -- a part not asked for keeps its stored value (a community's first row gets all)
    INSERT INTO community_count (
        code, buildings, buildings_on_map, buildings_labeled, footprints,
        footprints_covered, refreshed_at
    )
    SELECT c.code,
           CASE WHEN b.due THEN (
               SELECT count(*) FROM building
               WHERE community_code = c.code AND status <> 'demolished')
           ELSE k.buildings END,
           CASE WHEN b.due THEN (
               SELECT count(*) FROM on_map_building WHERE community_code = c.code)
           ELSE k.buildings_on_map END,
           CASE WHEN b.due THEN (
               SELECT count(*) FROM building_label
               WHERE community_code = c.code AND labeled)
           ELSE k.buildings_labeled END,
           CASE WHEN f.due THEN (
               SELECT count(*) FROM footprint_cover_state WHERE community_code = c.code)
           ELSE k.footprints END,
           CASE WHEN f.due THEN (
               SELECT count(*) FROM footprint_cover_state
               WHERE community_code = c.code AND covered)
           ELSE k.footprints_covered END,
           clock_timestamp()
    FROM community c
    LEFT JOIN community_count k ON k.code = c.code
    CROSS JOIN LATERAL (SELECT k.code IS NULL OR c.code = ANY (building_codes) AS due) b
    CROSS JOIN LATERAL (SELECT k.code IS NULL OR c.code = ANY (footprint_codes) AS due) f
    WHERE c.code = ANY (codes)
    ON CONFLICT (code) DO UPDATE SET
        buildings = excluded.buildings,
        buildings_on_map = excluded.buildings_on_map,
        buildings_labeled = excluded.buildings_labeled,
        footprints = excluded.footprints,
        footprints_covered = excluded.footprints_covered,
        refreshed_at = excluded.refreshed_at;

    DELETE FROM community_resident_count WHERE code = ANY (resident_codes);
    INSERT INTO community_resident_count (code, moved_out, residents, residents_on_map)
    SELECT r.community_code, r.moved_out, count(*), count(m.id)
    FROM residence r
    LEFT JOIN room ON room.id = r.room_id
    LEFT JOIN on_map_building m ON m.id = room.building_id
    WHERE r.community_code = ANY (resident_codes)
    GROUP BY r.community_code, r.moved_out;
END
$$
"""

ADD_RESIDENTS = """
CREATE FUNCTION registry_add_residents(deltas community_resident_count[]) RETURNS void
LANGUAGE sql AS $$
    -- add signed counts per community and moved-out date; additions commute, so
    -- concurrent writers need no recount and no lock here
    INSERT INTO community_resident_count AS k (code, moved_out, residents, residents_on_map)
    SELECT d.code, d.moved_out, sum(d.residents), sum(d.residents_on_map)
    FROM unnest(deltas) d
    GROUP BY d.code, d.moved_out
    ON CONFLICT (code, moved_out) DO UPDATE SET
        residents = k.residents + excluded.residents,
        residents_on_map = k.residents_on_map + excluded.residents_on_map
$$
"""

REFRESH_COVER = """
CREATE FUNCTION registry_refresh_cover(ids text[]) RETURNS text[]
LANGUAGE plpgsql AS $$
-- recompute whether each given footprint is covered, and in which community it lies;
-- returns those communities, before and after
DECLARE
    codes text[];
BEGIN
    IF cardinality(ids) = 0 THEN
        RETURN '{}';
    END IF;
    -- as for counts: a concurrent change over the same footprint waits, then sees ours
    PERFORM 1 FROM footprint WHERE id = ANY (ids) ORDER BY id FOR NO KEY UPDATE;
    WITH gone AS (
        DELETE FROM footprint_cover_state WHERE id = ANY (ids) RETURNING community_code
    )
    SELECT ARRAY(SELECT community_code FROM gone) INTO codes;
    WITH made AS (
        INSERT INTO footprint_cover_state (id, community_code, covered)
        SELECT id, community_code, covered FROM footprint_cover WHERE id = ANY (ids)
        RETURNING community_code
    )
    SELECT codes || ARRAY(SELECT community_code FROM made) INTO codes;
    RETURN codes;
END
$$
"""

REFRESH_ALL = """
CREATE FUNCTION registry_refresh_all() RETURNS void
LANGUAGE plpgsql AS $$
-- every footprint's cover and every community's counts, from the definitions
DECLARE
    codes text[] := ARRAY(SELECT code FROM community);
BEGIN
    DELETE FROM footprint_cover_state;
    INSERT INTO footprint_cover_state (id, community_code, covered)
    SELECT id, community_code, covered FROM footprint_cover;
    PERFORM registry_refresh_counts(codes, codes, codes);
END
$$
"""

DEFERRED = """
CREATE FUNCTION registry_counts_deferred() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT coalesce(current_setting('registry.defer_counts', true), '') = 'on'
$$
"""

ON_MAP = "(x.status <> 'demolished' AND x.footprint IS NOT NULL AND NOT ST_IsEmpty(x.footprint))"

# What each table's trigger recounts, given ``changed``: the statement's changed rows, old
# and new versions, as an array of the table's row type.
TRIGGER_BODIES = {
    "building": f"""
        -- the footprints its outline meets, old or new (their cover, in their communities)
        cover_codes := registry_refresh_cover(ARRAY(
            SELECT DISTINCT f.id FROM unnest(changed) x
            JOIN footprint f ON f.geom && x.footprint AND ST_Intersects(f.geom, x.footprint)
        ));
        PERFORM registry_refresh_counts(
            ARRAY(SELECT x.community_code FROM unnest(changed) x),
            cover_codes,
            '{{}}'
        );
        -- the residents of its rooms are placed, or no longer, when it comes onto or goes
        -- off the map
        PERFORM registry_add_residents(ARRAY(
            SELECT ROW(r.community_code, r.moved_out, 0, flip.sign)::community_resident_count
            FROM (
                SELECT x.id,
                       CASE WHEN EXISTS (SELECT 1 FROM on_map_building m WHERE m.id = x.id)
                            THEN 1 ELSE -1 END AS sign
                FROM unnest(changed) x
                GROUP BY x.id HAVING bool_or({ON_MAP}) <> bool_and({ON_MAP})
            ) flip
            JOIN room ON room.building_id = flip.id
            JOIN residence r ON r.room_id = room.id
        ));
    """,
    "address": """
        -- the community of the building it names (its label)
        PERFORM registry_refresh_counts(
            ARRAY(
                SELECT b.community_code FROM unnest(changed) x
                JOIN building b ON b.id = x.building_id
            ),
            '{}', '{}'
        );
    """,
    "room": """
        -- the residents of a room that moves to another building: placed by the old
        -- building out, by the new one in
        PERFORM registry_add_residents(ARRAY(
            SELECT ROW(r.community_code, r.moved_out, 0, v.sign)::community_resident_count
            FROM (
                SELECT x.id, x.building_id, -1 AS sign FROM unnest(removed) x
                UNION ALL
                SELECT x.id, x.building_id, 1 FROM unnest(added) x
            ) v
            JOIN on_map_building m ON m.id = v.building_id
            JOIN residence r ON r.room_id = v.id
        ));
    """,
    "footprint": """
        -- its cover (a deleted footprint's went with it), and the communities holding its
        -- point-on-surface before and after
        cover_codes := registry_refresh_cover(ARRAY(
            SELECT x.id FROM unnest(changed) x WHERE EXISTS (
                SELECT 1 FROM footprint f WHERE f.id = x.id)
        ));
        PERFORM registry_refresh_counts(
            '{}',
            cover_codes || ARRAY(
                SELECT c.code FROM unnest(changed) x
                JOIN community c ON ST_Contains(c.boundary, x.anchor)
            ),
            '{}'
        );
    """,
    "community": """
        -- the footprints within its boundary, old or new (which community holds them)
        cover_codes := registry_refresh_cover(ARRAY(
            SELECT f.id FROM unnest(changed) x JOIN footprint f ON ST_Contains(x.boundary, f.anchor)
        ));
        cover_codes := cover_codes || ARRAY(
            SELECT x.code FROM unnest(changed) x WHERE EXISTS (
                SELECT 1 FROM community c WHERE c.code = x.code)
        );
        PERFORM registry_refresh_counts(cover_codes, cover_codes, cover_codes);
    """,
}
# the columns a rate reads; an UPDATE that leaves them all alone recounts nothing
RELEVANT = {
    "building": ("community_code", "footprint", "status"),
    "address": ("building_id", "door_plate", "status"),
    "room": ("building_id",),
    "residence": ("community_code", "room_id", "moved_out"),
    "footprint": ("geom",),
    "community": ("boundary",),
}
KEYS = {"community": "code", "address": "code"}


def trigger_function(table: str) -> str:
    key = KEYS.get(table, "id")
    differs = " OR ".join(f"n.{c} IS DISTINCT FROM o.{c}" for c in RELEVANT[table])
    return f"""
CREATE FUNCTION registry_counts_{table}() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    added {table}[] := '{{}}';  -- new versions of the changed rows
    removed {table}[] := '{{}}';  -- their old versions
    changed {table}[];  -- both
    cover_codes text[] := '{{}}';
BEGIN
    IF registry_counts_deferred() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        added := ARRAY(SELECT n FROM new_rows n);
    ELSIF TG_OP = 'DELETE' THEN
        removed := ARRAY(SELECT o FROM old_rows o);
    ELSE
        added := ARRAY(
            SELECT n FROM new_rows n JOIN old_rows o ON o.{key} = n.{key} WHERE {differs}
        );
        removed := ARRAY(
            SELECT o FROM new_rows n JOIN old_rows o ON o.{key} = n.{key} WHERE {differs}
        );
    END IF;
    changed := added || removed;
    IF cardinality(changed) > 0 THEN
        {TRIGGER_BODIES[table]}
    END IF;
    RETURN NULL;
END
$$
"""


def residence_delta(rows: str, sign: int) -> str:
    """Count residence versions ``rows`` in (+1) or out (-1) by community and moved-out
    date, placed when their room's building is on the map now. The buildings are
    share-locked first, so a concurrent change bringing one onto or off the map either
    waits for us (and then counts these residences) or committed first (and we read its
    outcome). Set-based, so a bulk statement costs one join, not one step per row."""
    return f"""
        PERFORM 1 FROM building
        WHERE id IN (SELECT room.building_id FROM {rows} x JOIN room ON room.id = x.room_id)
        ORDER BY id FOR SHARE;
        INSERT INTO community_resident_count AS k (code, moved_out, residents, residents_on_map)
        SELECT x.community_code, x.moved_out, {sign} * count(*), {sign} * count(m.id)
        FROM {rows} x
        LEFT JOIN room ON room.id = x.room_id
        LEFT JOIN on_map_building m ON m.id = room.building_id
        GROUP BY x.community_code, x.moved_out
        ON CONFLICT (code, moved_out) DO UPDATE SET
            residents = k.residents + excluded.residents,
            residents_on_map = k.residents_on_map + excluded.residents_on_map;
    """


def residence_trigger_function() -> str:
    differs = " OR ".join(f"n.{c} IS DISTINCT FROM o.{c}" for c in RELEVANT["residence"])
    pairs = f"old_rows o JOIN new_rows n ON n.id = o.id WHERE {differs}"
    return f"""
CREATE FUNCTION registry_counts_residence() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF registry_counts_deferred() THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        {residence_delta("new_rows", 1)}
    ELSIF TG_OP = 'DELETE' THEN
        {residence_delta("old_rows", -1)}
    ELSE
        {residence_delta(f"(SELECT o.* FROM {pairs})", -1)}
        {residence_delta(f"(SELECT n.* FROM {pairs})", 1)}
    END IF;
    RETURN NULL;
END
$$
"""


def create_triggers(table: str) -> None:
    if table == "residence":
        op.execute(residence_trigger_function())
    else:
        op.execute(trigger_function(table))
    for event, tables in (
        ("INSERT", "NEW TABLE AS new_rows"),
        ("UPDATE", "NEW TABLE AS new_rows OLD TABLE AS old_rows"),
        ("DELETE", "OLD TABLE AS old_rows"),
    ):
        op.execute(
            f"CREATE TRIGGER counts_{event.lower()} AFTER {event} ON {table} "
            f"REFERENCING {tables} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION registry_counts_{table}()"
        )


def upgrade() -> None:
    op.add_column(
        "building",
        sa.Column(
            "footprint_3857",
            Geometry("MULTIPOLYGON", srid=3857, spatial_index=False),
            sa.Computed("ST_Transform(footprint, 3857)", persisted=True),
        ),
    )
    op.create_index(
        "ix_building_footprint_3857", "building", ["footprint_3857"], postgresql_using="gist"
    )
    op.add_column(
        "footprint",
        sa.Column(
            "geom_3857",
            Geometry("MULTIPOLYGON", srid=3857, spatial_index=False),
            sa.Computed("ST_Transform(geom, 3857)", persisted=True),
        ),
    )
    op.create_index("ix_footprint_geom_3857", "footprint", ["geom_3857"], postgresql_using="gist")

    op.create_table(
        "community_count",
        sa.Column(
            "code",
            sa.String(12),
            sa.ForeignKey("community.code", ondelete="CASCADE"),
            primary_key=True,
        ),
        *(sa.Column(name, sa.Integer, nullable=False) for name in COUNT_COLUMNS),
        sa.Column("refreshed_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "community_resident_count",
        sa.Column(
            "code",
            sa.String(12),
            sa.ForeignKey("community.code", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("moved_out", sa.Date),
        sa.Column("residents", sa.Integer, nullable=False),
        sa.Column("residents_on_map", sa.Integer, nullable=False),
        sa.UniqueConstraint("code", "moved_out", postgresql_nulls_not_distinct=True),
    )
    op.create_table(
        "footprint_cover_state",
        sa.Column(
            "id",
            sa.String(64),
            sa.ForeignKey("footprint.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column(
            "community_code",
            sa.String(12),
            sa.ForeignKey("community.code", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("covered", sa.Boolean, nullable=False),
    )
    op.create_index(
        "ix_footprint_cover_state_community_code", "footprint_cover_state", ["community_code"]
    )
    for function in (
        DEFERRED,
        LOCK_AND_COUNT,
        ADD_RESIDENTS,
        REFRESH_COVER,
        REFRESH_ALL,
    ):
        op.execute(function)
    for table in (*TRIGGER_BODIES, "residence"):
        create_triggers(table)
    op.execute("SELECT registry_refresh_all()")


def downgrade() -> None:
    for table in ("residence", *reversed(TRIGGER_BODIES)):
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER counts_{event} ON {table}")
        op.execute(f"DROP FUNCTION registry_counts_{table}()")
    op.execute("DROP FUNCTION registry_refresh_all()")
    op.execute("DROP FUNCTION registry_refresh_cover(text[])")
    op.execute("DROP FUNCTION registry_add_residents(community_resident_count[])")
    op.execute("DROP FUNCTION registry_refresh_counts(text[], text[], text[])")
    op.execute("DROP FUNCTION registry_counts_deferred()")
    op.drop_table("footprint_cover_state")
    op.drop_table("community_resident_count")
    op.drop_table("community_count")
    op.drop_index("ix_footprint_geom_3857", table_name="footprint")
    op.drop_column("footprint", "geom_3857")
    op.drop_index("ix_building_footprint_3857", table_name="building")
    op.drop_column("building", "footprint_3857")
