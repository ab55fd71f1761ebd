-- Per-community counts behind the rates, read from the counters that triggers keep
-- (migration 0004; registry/counts.py); organizations, few, are counted live. Every community has a row, even one with nothing
-- in it. community_recount.sql computes the same numbers from the definitions, slowly.
-- :as_of  the date at which residents and organizations are counted (active or not).
SELECT c.code,
       c.name,
       c.street_code,
       c.street_name,
       c.district_code,
       c.district_name,
       coalesce(k.buildings, 0) AS buildings,
       coalesce(k.buildings_on_map, 0) AS buildings_on_map,
       coalesce(k.footprints, 0) AS footprints,
       coalesce(k.footprints_covered, 0) AS footprints_covered,
       coalesce(k.buildings_labeled, 0) AS buildings_labeled,
       coalesce(r.residents, 0) AS residents,
       coalesce(r.residents_on_map, 0) AS residents_on_map,
       coalesce(g.organizations, 0) AS organizations,
       coalesce(g.organizations_on_map, 0) AS organizations_on_map
FROM community c
LEFT JOIN community_count k ON k.code = c.code
LEFT JOIN (
    SELECT code, sum(residents) AS residents, sum(residents_on_map) AS residents_on_map
    FROM community_resident_count
    WHERE moved_out IS NULL OR moved_out > :as_of
    GROUP BY code
) r ON r.code = c.code
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
