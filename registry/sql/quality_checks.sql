-- The data-quality findings of the registry, one row each: what is wrong, how badly,
-- where, and the id to fix. Persons never appear: a check about residents names the
-- building and counts them. Binds :as_of (who is an active resident). No ORDER BY:
-- callers filter by community and order.
--   door_plate_far              an active address's door plate is more than 30 m from
--                               the outline of the building it names
--   building_outside_community  a building's point-on-surface is outside its community's
--                               boundary
--   residents_in_demolished     active residents live in rooms of a demolished building
--   room_above_floors           a room's floor is above its building's floor count
SELECT 'door_plate_far' AS check, 'warning' AS severity, a.community_code, a.code AS target_id,
       round(ST_Distance(a.door_plate::geography, b.footprint::geography))::text
           || ' m from building ' || b.id AS detail,
       a.door_plate AS geom
FROM address a
JOIN building b ON b.id = a.building_id
WHERE a.status = 'active'
  AND a.door_plate IS NOT NULL
  AND b.footprint IS NOT NULL
  AND NOT ST_DWithin(a.door_plate::geography, b.footprint::geography, 30)
UNION ALL
SELECT 'building_outside_community', 'error', b.community_code, b.id,
       'outline outside community ' || c.code,
       b.footprint
FROM building b
JOIN community c ON c.code = b.community_code
WHERE b.footprint IS NOT NULL
  AND NOT ST_IsEmpty(b.footprint)
  AND c.boundary IS NOT NULL
  AND NOT ST_Contains(c.boundary, ST_PointOnSurface(b.footprint))
UNION ALL
SELECT 'residents_in_demolished', 'error', b.community_code, b.id,
       count(*)::text || ' active residents',
       b.footprint
FROM residence r
JOIN room ON room.id = r.room_id
JOIN building b ON b.id = room.building_id
WHERE b.status = 'demolished'
  AND (r.moved_out IS NULL OR r.moved_out > CAST(:as_of AS date))
GROUP BY b.community_code, b.id, b.footprint
UNION ALL
SELECT 'room_above_floors', 'warning', b.community_code, room.id,
       'floor ' || room.floor || ' of a ' || b.floors || '-floor building ' || b.id,
       b.footprint
FROM room
JOIN building b ON b.id = room.building_id
WHERE room.floor > b.floors
