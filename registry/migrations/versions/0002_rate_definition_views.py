"""Rate definitions as views: one place for "on the map", "labelled" and "covered".

The rates (registry/sql/community_counts.sql) and the work lists behind them
(registry/sql/gaps_*.sql, coverage_gaps.sql) read these views, so a gap is always the
exact complement of a rate's numerator. PostgreSQL inlines views into each query, so
every use still reaches the spatial indexes. Definitions: docs/rates.md.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

VIEWS = {
    "on_map_building": """
        -- 上图: counts (not demolished) and has a non-empty polygon footprint
        SELECT id, community_code, footprint
        FROM building
        WHERE status <> 'demolished'
          AND footprint IS NOT NULL
          AND NOT ST_IsEmpty(footprint)
    """,
    "building_label": """
        -- each on-map building and whether it is labelled (标注): an active standard
        -- address naming it has its door plate within 30 m of the footprint (distance 0
        -- inside), measured on the spheroid
        SELECT m.id,
               m.community_code,
               EXISTS (
                   SELECT 1
                   FROM address a
                   WHERE a.building_id = m.id
                     AND a.status = 'active'
                     AND a.door_plate IS NOT NULL
                     AND ST_DWithin(a.door_plate::geography, m.footprint::geography, 30)
               ) AS labeled
        FROM on_map_building m
    """,
    "footprint_cover": """
        -- each reference footprint in a community (the one whose boundary contains its
        -- point-on-surface, footprint.anchor) and how much of it the union of all on-map
        -- buildings, of any community, covers; covered (覆盖) from half its area, in m²
        SELECT f.id,
               f.source,
               c.code AS community_code,
               c.name AS community_name,
               f.geom,
               ST_Area(f.geom::geography) AS area,
               cover.covered_area,
               coalesce(cover.covered_area >= 0.5 * ST_Area(f.geom::geography), false)
                   AS covered
        FROM community c
        JOIN footprint f ON ST_Contains(c.boundary, f.anchor)
        CROSS JOIN LATERAL (
            SELECT coalesce(
                       ST_Area(ST_Intersection(f.geom, ST_Union(m.footprint))::geography), 0
                   ) AS covered_area
            FROM on_map_building m
            WHERE ST_Intersects(m.footprint, f.geom)
        ) cover
    """,
}


def upgrade() -> None:
    for name, query in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {query}")


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
