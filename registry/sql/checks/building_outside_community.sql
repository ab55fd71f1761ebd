-- building_outside_community: the point-on-surface of a building's outline is not inside
-- its community's boundary (the same test that assigns reference footprints to
-- communities). Only when both the outline and the boundary exist.
SELECT b.community_code, b.id AS target_id,
       'outline outside community ' || c.code AS detail,
       b.footprint AS geom
FROM building b
JOIN community c ON c.code = b.community_code
WHERE b.footprint IS NOT NULL
  AND NOT ST_IsEmpty(b.footprint)
  AND c.boundary IS NOT NULL
  AND NOT ST_Contains(c.boundary, ST_PointOnSurface(b.footprint))
