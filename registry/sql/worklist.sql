-- The field work list of one community (:code): what an officer still has to visit,
-- check or draw, one row per task, nearest first when the officer's position is known.
--   :code        12-digit community code
--   :cycle_days  a verification older than this many days is due again
--   :lon, :lat   the officer's position (CGCS2000 = WGS 84 to 1 cm), or both null
--   :max_items   at most this many rows
-- Kinds, in priority order (kind_rank): not_on_map (registered, no outline: placed at a
-- door plate if it has one), never_verified, stale, disputed, not_found (awaiting a
-- second person), unlabeled (on the map, no door plate within 30 m: view building_label),
-- gap (a reference footprint not covered: the counters' footprint_cover_state).
-- Buildings and addresses are read through row-level security: the caller's own.
WITH here AS (
    SELECT CASE WHEN CAST(:lon AS float8) IS NOT NULL AND CAST(:lat AS float8) IS NOT NULL
                THEN ST_SetSRID(ST_MakePoint(CAST(:lon AS float8), CAST(:lat AS float8)),
                                4490)::geography
           END AS position
),
plate AS (
    SELECT DISTINCT ON (a.building_id)
           a.building_id,
           a.door_plate,
           concat_ws(' ', a.road, a.house_number, a.compound, a.building_no) AS label
    FROM address a
    WHERE a.community_code = :code AND a.status = 'active' AND a.building_id IS NOT NULL
    ORDER BY a.building_id, (a.door_plate IS NULL), a.code
),
building_task AS (
    SELECT CASE
               WHEN b.footprint IS NULL OR ST_IsEmpty(b.footprint) THEN 'not_on_map'
               WHEN b.verification = 'not_found' THEN 'not_found'
               WHEN b.verification = 'disputed' THEN 'disputed'
               WHEN b.verified_at IS NULL OR b.verification = 'unverified'
                   THEN 'never_verified'
               WHEN b.verified_at < now() - make_interval(days => CAST(:cycle_days AS int))
                   THEN 'stale'
           END AS kind,
           b.id,
           coalesce(p.label, b.name, b.id) AS label,
           coalesce(ST_PointOnSurface(b.footprint), p.door_plate) AS spot,
           b.verified_at
    FROM building b
    LEFT JOIN plate p ON p.building_id = b.id
    WHERE b.community_code = :code AND b.status <> 'demolished'
),
task AS (
    SELECT kind, id, label, spot, verified_at
    FROM building_task
    WHERE kind IS NOT NULL
    UNION ALL
    SELECT 'unlabeled', l.id, coalesce(p.label, b.name, b.id),
           ST_PointOnSurface(b.footprint), b.verified_at
    FROM building_label l
    JOIN building b ON b.id = l.id
    LEFT JOIN plate p ON p.building_id = l.id
    WHERE l.community_code = :code AND NOT l.labeled
    UNION ALL
    SELECT 'gap', f.id, coalesce(f.source || ' ', '') || f.id, f.anchor, NULL
    FROM footprint_cover_state s
    JOIN footprint f ON f.id = s.id
    WHERE s.community_code = :code AND NOT s.covered
)
SELECT t.kind,
       t.id,
       t.label,
       ST_X(t.spot) AS lon,
       ST_Y(t.spot) AS lat,
       ST_Distance(t.spot::geography, here.position) AS distance_m,
       t.verified_at
FROM task t
CROSS JOIN here
ORDER BY distance_m NULLS LAST,
         array_position(
             ARRAY['not_on_map', 'never_verified', 'stale', 'disputed', 'not_found',
                   'unlabeled', 'gap'],
             t.kind
         ),
         t.id
LIMIT :max_items
