-- community_without_boundary: a community has no boundary (or an empty one), so its
-- reference footprints cannot be assigned to it and its coverage rate stays null.
SELECT c.code AS community_code, c.code AS target_id,
       'community ' || c.name || ' has no boundary' AS detail,
       NULL::geometry AS geom
FROM community c
WHERE c.boundary IS NULL OR ST_IsEmpty(c.boundary)
