-- Per-community counts behind the rates at a past time, from the history (migration 0010):
-- community_recount.sql's definitions applied to the versions valid at :valid as known at
-- :known (null: as known now), computed by registry_community_counts_at() as the owner,
-- like the counters, so that every role gets the counts whatever rows it may read.
-- Every community that existed at :valid has a row, even one with nothing in it.
-- :valid   the instant (timestamptz) at which the register is read
-- :known   the record time (timestamptz) up to which changes count, or null
-- :as_of   the date at which residents and organizations are active
-- :code_prefix  only the communities under this code ('' for all): counted alone, cheaper
SELECT code, name, street_code, street_name, district_code, district_name,
       buildings, buildings_on_map, footprints, footprints_covered, buildings_labeled,
       residents, residents_on_map, organizations, organizations_on_map
FROM registry_community_counts_at(:valid, :known, :as_of, :code_prefix)
