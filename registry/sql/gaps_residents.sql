-- Active residents not placed on the map, counted per community (never listed here: they
-- are personal data). The complement of residents_on_map in community_counts.sql, by the
-- same definitions: active when moved-out is empty or later than the as-of date (bound
-- parameter as_of); placed when the residence's room is in a building on the map.
WITH on_map AS NOT MATERIALIZED (
    -- counts (not demolished) and has a non-empty polygon footprint
    SELECT id, community_code, footprint
    FROM building
    WHERE status <> 'demolished'
      AND footprint IS NOT NULL
      AND NOT ST_IsEmpty(footprint)
)
SELECT r.community_code, count(*) AS residents_not_on_map
FROM residence r
LEFT JOIN room ON room.id = r.room_id
LEFT JOIN on_map m ON m.id = room.building_id
WHERE (r.moved_out IS NULL OR r.moved_out > :as_of)
  AND m.id IS NULL
GROUP BY r.community_code
