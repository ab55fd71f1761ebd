-- door_plate_far: an active address's door plate is more than 30 m (on the spheroid; 0
-- inside) from the outline of the building it names -- the labelling rate's 30 m.
-- Only addresses with a door plate naming a building with an outline can be measured.
SELECT a.community_code, a.code AS target_id,
       round(ST_Distance(a.door_plate::geography, b.footprint::geography))::text
           || ' m from building ' || b.id AS detail,
       a.door_plate AS geom
FROM address a
JOIN building b ON b.id = a.building_id
WHERE a.status = 'active'
  AND a.door_plate IS NOT NULL
  AND b.footprint IS NOT NULL
  AND NOT ST_IsEmpty(b.footprint)
  AND NOT ST_DWithin(a.door_plate::geography, b.footprint::geography, 30)
