"""Tile versions in one indexed lookup: per-layer version counters on a z16 grid.

A vector tile's ETag used to hash aggregates over every row in the tile (and the rows its
derived properties read), which at low zooms cost as much as building the tile. Now
statement-level triggers bump ``tile_cell.version`` for each layer a change can show in,
over the WebMercatorQuad zoom-16 cells its geometry's box meets, in the same transaction as
the change. A tile's version is the sum of the versions of its layers' cells around it
(registry/tiles.py): versions only grow, so the sum moves with any edit nearby and with
nothing else. What bumps which layer:

- building: buildings, and coverage-gaps over the reference footprints its outline meets;
- address: addresses at its door plate, buildings at the outline of the building it names;
- footprint: footprints and coverage-gaps;
- community (any column): communities, footprints (their community code) and
  coverage-gaps (community code and name), over its boundary;
- community_count / community_resident_count (the rates): communities.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CELL_ZOOM = 16
# a box meeting more cells than this bumps the layer's world cell (-1, -1) instead
MAX_CELLS = 250_000
# beyond this many changed rows, coverage-gaps are bumped over the changed outlines'
# box widened by this many degrees (about a kilometre) instead of by an exact join to the
# reference footprints, which would cost as much as the load
BULK_ROWS = 1000
BULK_MARGIN_DEG = 0.01

TOUCH = f"""
CREATE FUNCTION registry_touch_tiles(layers text[], box geometry) RETURNS void
LANGUAGE plpgsql AS $$
-- bump the version of each layer's z{CELL_ZOOM} cells that the box (EPSG:4490) meets
DECLARE
    half CONSTANT float8 := 20037508.342789244;
    size CONSTANT float8 := 2 * half / 2 ^ {CELL_ZOOM};
    last CONSTANT integer := 2 ^ {CELL_ZOOM} - 1;
    m geometry;
    x0 integer; x1 integer; y0 integer; y1 integer;
BEGIN
    IF box IS NULL OR ST_IsEmpty(box) OR cardinality(layers) = 0 THEN
        RETURN;
    END IF;
    -- clipped to the Mercator world first: a box past 85° cannot be transformed
    m := ST_Transform(
        ST_SetSRID(ST_ClipByBox2D(box, ST_MakeEnvelope(-180, -85.0511, 180, 85.0511)), 4490),
        3857
    );
    IF m IS NULL OR ST_IsEmpty(m) THEN
        RETURN;
    END IF;
    x0 := greatest(0, floor((ST_XMin(m) + half) / size));
    x1 := least(last, floor((ST_XMax(m) + half) / size));
    y0 := greatest(0, floor((half - ST_YMax(m)) / size));
    y1 := least(last, floor((half - ST_YMin(m)) / size));
    IF (x1 - x0 + 1)::bigint * (y1 - y0 + 1) > {MAX_CELLS} THEN
        x0 := -1; x1 := -1; y0 := -1; y1 := -1;
    END IF;
    INSERT INTO tile_cell AS t (layer, x, y)
    SELECT l, gx, gy
    FROM unnest(layers) AS l, generate_series(x0, x1) AS gx, generate_series(y0, y1) AS gy
    ORDER BY l, gx, gy
    ON CONFLICT (layer, x, y) DO UPDATE SET version = t.version + 1;
END
$$
"""

# per table: (key column, statements run with ``changed``: old and new versions of every
# changed row, as an array of the table's row type)
BODIES = {
    "building": f"""
        PERFORM registry_touch_tiles(
            ARRAY['buildings'], (SELECT ST_Extent(x.footprint) FROM unnest(changed) x)::geometry
        );
        IF cardinality(changed) > {BULK_ROWS} THEN
            PERFORM registry_touch_tiles(ARRAY['coverage-gaps'], ST_Expand(
                (SELECT ST_Extent(x.footprint) FROM unnest(changed) x)::geometry,
                {BULK_MARGIN_DEG}
            ));
        ELSE
            PERFORM registry_touch_tiles(ARRAY['coverage-gaps'], (
                SELECT ST_Extent(f.geom) FROM unnest(changed) x
                JOIN footprint f ON f.geom && x.footprint
            )::geometry);
        END IF;
    """,
    "address": """
        PERFORM registry_touch_tiles(
            ARRAY['addresses'], (SELECT ST_Extent(x.door_plate) FROM unnest(changed) x)::geometry
        );
        PERFORM registry_touch_tiles(ARRAY['buildings'], (
            SELECT ST_Extent(b.footprint) FROM unnest(changed) x
            JOIN building b ON b.id = x.building_id
        )::geometry);
    """,
    "footprint": """
        PERFORM registry_touch_tiles(
            ARRAY['footprints', 'coverage-gaps'],
            (SELECT ST_Extent(x.geom) FROM unnest(changed) x)::geometry
        );
    """,
    "community": """
        PERFORM registry_touch_tiles(
            ARRAY['communities', 'footprints', 'coverage-gaps'],
            (SELECT ST_Extent(x.boundary) FROM unnest(changed) x)::geometry
        );
    """,
    "community_count": """
        PERFORM registry_touch_tiles(ARRAY['communities'], (
            SELECT ST_Extent(c.boundary) FROM unnest(changed) x JOIN community c ON c.code = x.code
        )::geometry);
    """,
    "community_resident_count": """
        PERFORM registry_touch_tiles(ARRAY['communities'], (
            SELECT ST_Extent(c.boundary) FROM unnest(changed) x JOIN community c ON c.code = x.code
        )::geometry);
    """,
}


def trigger_function(table: str) -> str:
    return f"""
CREATE FUNCTION registry_tiles_{table}() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed {table}[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        changed := ARRAY(SELECT n FROM new_rows n);
    ELSIF TG_OP = 'DELETE' THEN
        changed := ARRAY(SELECT o FROM old_rows o);
    ELSE
        changed := ARRAY(SELECT n FROM new_rows n) || ARRAY(SELECT o FROM old_rows o);
    END IF;
    IF cardinality(changed) > 0 THEN
        {BODIES[table]}
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "tile_cell",
        sa.Column("layer", sa.Text, primary_key=True),
        sa.Column("x", sa.Integer, primary_key=True),
        sa.Column("y", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="1"),
    )
    op.execute(TOUCH)
    for table in BODIES:
        op.execute(trigger_function(table))
        for event, tables in (
            ("INSERT", "NEW TABLE AS new_rows"),
            ("UPDATE", "NEW TABLE AS new_rows OLD TABLE AS old_rows"),
            ("DELETE", "OLD TABLE AS old_rows"),
        ):
            op.execute(
                f"CREATE TRIGGER tiles_{event.lower()} AFTER {event} ON {table} "
                f"REFERENCING {tables} FOR EACH STATEMENT "
                f"EXECUTE FUNCTION registry_tiles_{table}()"
            )


def downgrade() -> None:
    for table in reversed(BODIES):
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER tiles_{event} ON {table}")
        op.execute(f"DROP FUNCTION registry_tiles_{table}()")
    op.execute("DROP FUNCTION registry_touch_tiles(text[], geometry)")
    op.drop_table("tile_cell")
