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
-- This runs for every job, so it does without the TYPE checks of
-- checks.lua: reads and counters go through redis.pcall (a failing INCRBY
-- changes nothing), and the one write that can fail and matters, the
-- failure record, is pushed before anything else is written.
-- The pid key goes only while it still names our job process: a job with
-- the same id running elsewhere may have written its own since.
if ARGV[6] ~= '' and string_at(ARGV[6]) == ARGV[7] then redis.call('DEL', ARGV[6]) end
local held = string_at(KEYS[1])
if held ~= ARGV[1] and held ~= ARGV[8] then return {0} end
local failing = ARGV[3] ~= ''
if failing then
  local pushed = redis.pcall('RPUSH', KEYS[6], ARGV[3])
  if type(pushed) == 'table' and pushed.err then
    return wrong_type(KEYS[6], 'list', 'the failure record cannot be filed')
  end
end
redis.call('DEL', KEYS[1])
local counters = {KEYS[2], KEYS[3]}
if failing then counters[3] = KEYS[4] counters[4] = KEYS[5] end
local skipped = {}
for _, k in ipairs(counters) do
  local n = redis.pcall('INCRBY', k, 1)
  if type(n) == 'table' and n.err then skipped[#skipped + 1] = k end
end
if ARGV[5] ~= '' then set_status(ARGV[5], tonumber(ARGV[2]), ARGV[4]) end
return {1, unpack(skipped)}
