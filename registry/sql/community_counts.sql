-- Per-community counts behind the four rates (docs/rates.md, domain.md section 3).
-- Every community has a row, even one with nothing in it.
-- :as_of  the date at which residents are counted.
WITH on_map AS NOT MATERIALIZED (
    -- counts (not demolished) and has a non-empty polygon footprint; NOT MATERIALIZED lets
    -- each use below reach the spatial index on building.footprint
    SELECT id, community_code, footprint
    FROM building
    WHERE status <> 'demolished'
      AND footprint IS NOT NULL
      AND NOT ST_IsEmpty(footprint)
),
building_counts AS (
    SELECT community_code, count(*) AS buildings
    FROM building
    WHERE status <> 'demolished'
    GROUP BY community_code
),
on_map_counts AS (
    -- labelled: an active standard address naming the building has its door plate
    -- within 30 m of the footprint (distance 0 inside), measured on the spheroid
    SELECT m.community_code,
           count(*) AS buildings_on_map,
           count(*) FILTER (WHERE EXISTS (
               SELECT 1
               FROM address a
               WHERE a.building_id = m.id
                 AND a.status = 'active'
                 AND a.door_plate IS NOT NULL
                 AND ST_DWithin(a.door_plate::geography, m.footprint::geography, 30)
           )) AS buildings_labeled
    FROM on_map m
    GROUP BY m.community_code
),
footprint_counts AS (
    -- a footprint belongs to the community whose boundary contains its point-on-surface
    -- (footprint.anchor) and is covered when the union of all on-map buildings, of any
    -- community, covers at least half of its area (in square metres)
    SELECT c.code AS community_code,
           count(*) AS footprints,
           count(*) FILTER (WHERE cover.covered_area >= 0.5 * ST_Area(f.geom::geography))
               AS footprints_covered
    FROM community c
    JOIN footprint f ON ST_Contains(c.boundary, f.anchor)
    CROSS JOIN LATERAL (
        SELECT coalesce(
                   ST_Area(ST_Intersection(f.geom, ST_Union(m.footprint))::geography), 0
               ) AS covered_area
        FROM on_map m
        WHERE ST_Intersects(m.footprint, f.geom)
    ) cover
    GROUP BY c.code
),
resident_counts AS (
    -- active: no moved-out date, or one later than the as-of date;
    -- placed: the residence's room is in a building on the map
    SELECT r.community_code,
           count(*) AS residents,
           count(m.id) AS residents_on_map
    FROM residence r
    LEFT JOIN room ON room.id = r.room_id
    LEFT JOIN on_map m ON m.id = room.building_id
    WHERE r.moved_out IS NULL OR r.moved_out > :as_of
    GROUP BY r.community_code
)
SELECT c.code,
       c.name,
       c.street_code,
       c.street_name,
       c.district_code,
       c.district_name,
       coalesce(b.buildings, 0) AS buildings,
       coalesce(o.buildings_on_map, 0) AS buildings_on_map,
       coalesce(f.footprints, 0) AS footprints,
       coalesce(f.footprints_covered, 0) AS footprints_covered,
       coalesce(o.buildings_labeled, 0) AS buildings_labeled,
       coalesce(r.residents, 0) AS residents,
       coalesce(r.residents_on_map, 0) AS residents_on_map
FROM community c
LEFT JOIN building_counts b ON b.community_code = c.code
LEFT JOIN on_map_counts o ON o.community_code = c.code
LEFT JOIN footprint_counts f ON f.community_code = c.code
LEFT JOIN resident_counts r ON r.community_code = c.code
