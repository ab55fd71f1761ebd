-- Buildings behind the on-map and labelling gaps, one row each: the complements of
-- buildings_on_map and buildings_labeled in community_counts.sql, by the same definitions.
--   buildings_not_on_map   counts (not demolished) but is not on the map (no non-empty polygon
--                          footprint): buildings - buildings_on_map
--   buildings_not_labeled  on the map, but no active standard address naming it has its door plate
--                          within 30 m of the footprint (distance 0 inside, on the
--                          spheroid): buildings_on_map - buildings_labeled
-- No parameters and no ORDER BY: callers filter by community and order.
WITH on_map AS NOT MATERIALIZED (
    -- counts (not demolished) and has a non-empty polygon footprint
    SELECT id, community_code, footprint
    FROM building
    WHERE status <> 'demolished'
      AND footprint IS NOT NULL
      AND NOT ST_IsEmpty(footprint)
)
SELECT 'buildings_not_on_map' AS kind, b.community_code, b.id
FROM building b
WHERE b.status <> 'demolished'
  AND NOT EXISTS (SELECT 1 FROM on_map m WHERE m.id = b.id)
UNION ALL
SELECT 'buildings_not_labeled' AS kind, m.community_code, m.id
FROM on_map m
WHERE NOT EXISTS (
    SELECT 1
    FROM address a
    WHERE a.building_id = m.id
      AND a.status = 'active'
      AND a.door_plate IS NOT NULL
      AND ST_DWithin(a.door_plate::geography, m.footprint::geography, 30)
)
