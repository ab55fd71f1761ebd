-- buildings_overlap: two buildings that count (status <> 'demolished') with outlines
-- overlap by more than 50% of the smaller outline's area (areas on the spheroid). One
-- finding per pair, on the building with the smaller id; the geometry is the overlap.
-- The && box test uses the spatial index (also under row-level security: it is LEAKPROOF).
SELECT a.community_code, a.id AS target_id,
       'overlaps building ' || b.id || ' by '
           || round(100 * o.shared / least(o.area_a, o.area_b))::text
           || '% of the smaller outline (' || round(o.shared)::text || ' m²)' AS detail,
       o.overlap AS geom
FROM building a
JOIN building b
  ON a.id < b.id
 AND a.footprint && b.footprint
 AND ST_Intersects(a.footprint, b.footprint)
CROSS JOIN LATERAL (
    SELECT i.overlap,
           ST_Area(i.overlap::geography) AS shared,
           ST_Area(a.footprint::geography) AS area_a,
           ST_Area(b.footprint::geography) AS area_b
    FROM (SELECT ST_Multi(ST_CollectionExtract(ST_Intersection(a.footprint, b.footprint), 3))
                 AS overlap) i
) o
WHERE a.status <> 'demolished'
  AND b.status <> 'demolished'
  AND NOT ST_IsEmpty(a.footprint)
  AND NOT ST_IsEmpty(b.footprint)
  AND o.shared > 0.5 * least(o.area_a, o.area_b)
