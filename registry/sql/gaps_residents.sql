-- Active residents not placed on the map, counted per community (never listed: they are
-- personal data): the complement of residents_on_map in community_counts.sql, active when
-- moved-out is empty or later than :as_of, placed when the residence's room is in a
-- building of the view on_map_building. A function that runs as the owner (migration
-- 0006), because roles that may not read residences may still see these counts.
SELECT community_code, residents_not_on_map
FROM registry_residents_not_on_map(CAST(:as_of AS date))
