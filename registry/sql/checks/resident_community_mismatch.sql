-- resident_community_mismatch: active residents (moved_out empty or after :as_of) whose
-- community differs from the community of their room's building. A count per building and
-- resident community, filed under the building's community: persons never appear.
SELECT b.community_code, b.id AS target_id,
       count(*)::text
           || CASE WHEN count(*) = 1 THEN ' active resident' ELSE ' active residents' END
           || ' registered in community ' || r.community_code AS detail,
       b.footprint AS geom
FROM residence r
JOIN room ON room.id = r.room_id
JOIN building b ON b.id = room.building_id
WHERE r.community_code <> b.community_code
  AND (r.moved_out IS NULL OR r.moved_out > CAST(:as_of AS date))
GROUP BY b.community_code, b.id, b.footprint, r.community_code
