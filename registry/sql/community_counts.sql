-- Per-community counts behind the four rates, read from the counters that triggers keep
-- (migration 0004; registry/counts.py). Every community has a row, even one with nothing
-- in it. community_recount.sql computes the same numbers from the definitions, slowly.
-- :as_of  the date at which residents are counted: active when moved out after it, or not.
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
       coalesce(r.residents_on_map, 0) AS residents_on_map
FROM community c
LEFT JOIN community_count k ON k.code = c.code
LEFT JOIN (
    SELECT code, sum(residents) AS residents, sum(residents_on_map) AS residents_on_map
    FROM community_resident_count
    WHERE moved_out IS NULL OR moved_out > :as_of
    GROUP BY code
) r ON r.code = c.code
