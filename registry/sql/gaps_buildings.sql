-- Buildings behind the on-map and labelling gaps, one row each: the complements of
-- buildings_on_map and buildings_labeled, by the views of migration 0002.
--   buildings_not_on_map   counted (not demolished) but not on the map
--   buildings_not_labeled  on the map but not labelled
-- No parameters and no ORDER BY: callers filter by community and order.
SELECT 'buildings_not_on_map' AS kind, b.community_code, b.id
FROM building b
WHERE b.status <> 'demolished'
  AND NOT EXISTS (SELECT 1 FROM on_map_building m WHERE m.id = b.id)
UNION ALL
SELECT 'buildings_not_labeled' AS kind, community_code, id
FROM building_label
WHERE NOT labeled
