-- room_above_floors: a room's floor is above its building's floor count (both known).
SELECT b.community_code, room.id AS target_id,
       'floor ' || room.floor || ' of a ' || b.floors || '-floor building ' || b.id AS detail,
       b.footprint AS geom
FROM room
JOIN building b ON b.id = room.building_id
WHERE room.floor IS NOT NULL
  AND b.floors IS NOT NULL
  AND room.floor > b.floors
