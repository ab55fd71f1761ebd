-- Reference footprints of a community that are NOT covered: the work list behind
-- coverage_rate, the complement of footprints_covered (view footprint_cover, migration
-- 0002). One row per footprint and containing community. No parameters, no ORDER BY or
-- LIMIT: callers wrap it as a subquery and PostgreSQL pushes their filters down.
SELECT id,
       source,
       community_code,
       community_name,
       covered_area / nullif(area, 0) AS covered_share,
       geom
FROM footprint_cover
WHERE NOT covered
