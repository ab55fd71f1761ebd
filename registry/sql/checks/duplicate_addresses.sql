-- duplicate_addresses: the candidates -- every active address with a house number, with
-- its components. registry.checks groups them by the address keys of
-- registry/address/keys.py (road, house number, compound, building number, normalized)
-- within a community: two or more with the same key are one finding.
SELECT a.community_code, a.code AS target_id,
       a.road, a.house_number, a.compound, a.building_no,
       a.door_plate AS geom
FROM address a
WHERE a.status = 'active'
  AND nullif(btrim(a.house_number), '') IS NOT NULL
