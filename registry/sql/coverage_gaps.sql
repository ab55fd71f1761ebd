-- Reference footprints of a community that are NOT covered: the work list behind
-- coverage_rate, the complement of footprints_covered in community_counts.sql (same
-- definitions: a footprint belongs to the community whose boundary contains its
-- point-on-surface, footprint.anchor; it is covered when the union of all on-map
-- buildings, of any community, covers at least half of its area in square metres).
-- One row per footprint and containing community. No parameters, no ORDER BY or LIMIT:
-- callers wrap it as a subquery and PostgreSQL pushes their filters down.
WITH on_map AS NOT MATERIALIZED (
    -- counts (not demolished) and has a non-empty polygon footprint
    SELECT id, community_code, footprint
    FROM building
    WHERE status <> 'demolished'
      AND footprint IS NOT NULL
      AND NOT ST_IsEmpty(footprint)
)
SELECT f.id,
       f.source,
       c.code AS community_code,
       c.name AS community_name,
       cover.covered_area / nullif(ST_Area(f.geom::geography), 0) AS covered_share,
       f.geom
FROM footprint f
JOIN community c ON ST_Contains(c.boundary, f.anchor)
CROSS JOIN LATERAL (
    SELECT coalesce(
               ST_Area(ST_Intersection(f.geom, ST_Union(m.footprint))::geography), 0
           ) AS covered_area
    FROM on_map m
    WHERE ST_Intersects(m.footprint, f.geom)
) cover
-- the negation of community_counts.sql's FILTER, true also should the area be null
WHERE (cover.covered_area >= 0.5 * ST_Area(f.geom::geography)) IS NOT TRUE
