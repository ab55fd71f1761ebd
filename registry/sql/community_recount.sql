-- Per-community counts behind the rates, recomputed from the definitions (docs/rates.md,
-- domain.md section 3); the counters of community_counts.sql must always equal these.
-- Every community has a row, even one with nothing in it. "On the map", "labelled" and
-- "covered" are the views on_map_building, building_label and footprint_cover
-- (migration 0002), which the work lists in gaps_*.sql share.
-- :as_of  the date at which residents and organizations are counted.
WITH building_counts AS (
    SELECT community_code, count(*) AS buildings
    FROM building
    WHERE status <> 'demolished'
    GROUP BY community_code
),
on_map_counts AS (
    SELECT community_code,
           count(*) AS buildings_on_map,
           count(*) FILTER (WHERE labeled) AS buildings_labeled
    FROM building_label
    GROUP BY community_code
),
footprint_counts AS (
    SELECT community_code,
           count(*) AS footprints,
           count(*) FILTER (WHERE covered) AS footprints_covered
    FROM footprint_cover
    GROUP BY community_code
),
resident_counts AS (
    -- active: no moved-out date, or one later than the as-of date;
    -- placed: the residence's room is in a building on the map
    SELECT r.community_code,
           count(*) AS residents,
           count(m.id) AS residents_on_map
    FROM residence r
    LEFT JOIN room ON room.id = r.room_id
    LEFT JOIN on_map_building m ON m.id = room.building_id
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
       coalesce(r.residents_on_map, 0) AS residents_on_map,
       coalesce(g.organizations, 0) AS organizations,
       coalesce(g.organizations_on_map, 0) AS organizations_on_map
FROM community c
LEFT JOIN building_counts b ON b.community_code = c.code
LEFT JOIN on_map_counts o ON o.community_code = c.code
LEFT JOIN footprint_counts f ON f.community_code = c.code
LEFT JOIN resident_counts r ON r.community_code = c.code
LEFT JOIN (
    -- organizations active at :as_of (opened on or before it, closed after it or never),
    -- by their own community; on the map when their building (or their room's) is
    SELECT o.community_code,
           count(*) AS organizations,
           count(m.id) AS organizations_on_map
    FROM organization o
    LEFT JOIN room ON room.id = o.room_id
    LEFT JOIN on_map_building m ON m.id = coalesce(o.building_id, room.building_id)
    WHERE (o.opened IS NULL OR o.opened <= :as_of)
      AND (o.closed IS NULL OR o.closed > :as_of)
    GROUP BY o.community_code
) g ON g.community_code = c.code
