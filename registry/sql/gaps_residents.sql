-- Active residents not placed on the map, counted per community (never listed here: they
-- are personal data): the complement of residents_on_map in community_counts.sql, active
-- when moved-out is empty or later than :as_of, placed when the residence's room is in a
-- building of the view on_map_building.
SELECT r.community_code, count(*) AS residents_not_on_map
FROM residence r
LEFT JOIN room ON room.id = r.room_id
LEFT JOIN on_map_building m ON m.id = room.building_id
WHERE (r.moved_out IS NULL OR r.moved_out > :as_of)
  AND m.id IS NULL
GROUP BY r.community_code
