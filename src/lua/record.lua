-- Records one job outcome atomically: clear the in-flight record, count it,
-- file the failure, finish the php status. Skipped when worker:ID no longer
-- holds this job: someone else (a pruner) has accounted for it.
-- KEYS[1] worker:ID  KEYS[2] stat:processed  KEYS[3] stat:processed:ID
-- KEYS[4] stat:failed  KEYS[5] stat:failed:ID  KEYS[6] failed
-- ARGV[1] the worker:ID record written at reserve   ARGV[2] state (3 or 4)
-- ARGV[3] failure record ('' when the job succeeded)   ARGV[4] now (epoch s)
-- ARGV[5] status key ('' when the job has no id)   ARGV[6] pid key ('' likewise)
-- ARGV[7] the pid written to the pid key
-- ARGV[8] the record with the job's process group (lua/started.lua), which
--         worker:ID holds instead when that write landed
-- Returns {0} when skipped, else {1, counters left alone because they were
-- not integers...}.
-- The pid key goes only while it still names our job process: a job with
-- the same id running elsewhere may have written its own since.
if ARGV[6] ~= '' and string_at(ARGV[6]) == ARGV[7] then redis.call('DEL', ARGV[6]) end
local held = string_at(KEYS[1])
if held ~= ARGV[1] and held ~= ARGV[8] then return {0} end
local failing = ARGV[3] ~= ''
if failing and not absent_or(KEYS[6], 'list') then
  return wrong_type(KEYS[6], 'list', 'the failure record cannot be filed')
end
local counters = {KEYS[2], KEYS[3]}
if failing then counters[3] = KEYS[4] counters[4] = KEYS[5] end
local good, skipped = usable_counters(counters)
-- No write below can fail.
redis.call('DEL', KEYS[1])
for _, k in ipairs(good) do redis.call('INCRBY', k, 1) end
if failing then redis.call('RPUSH', KEYS[6], ARGV[3]) end
if ARGV[5] ~= '' then set_status(ARGV[5], tonumber(ARGV[2]), ARGV[4]) end
return {1, unpack(skipped)}
