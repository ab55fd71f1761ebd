-- residents_in_demolished: active residents (moved_out empty or after :as_of) live in
-- rooms of a demolished building. A count per building: persons never appear.
SELECT b.community_code, b.id AS target_id,
       count(*)::text
           || CASE WHEN count(*) = 1 THEN ' active resident' ELSE ' active residents' END
           AS detail,
       b.footprint AS geom
FROM residence r
JOIN room ON room.id = r.room_id
JOIN building b ON b.id = room.building_id
WHERE b.status = 'demolished'
  AND (r.moved_out IS NULL OR r.moved_out > CAST(:as_of AS date))
GROUP BY b.community_code, b.id, b.footprint
