-- Records one job outcome atomically: clear the in-flight record, count it,
-- file the failure, finish the php status. Skipped when worker:ID no longer
-- holds this job: someone else (a pruner) has accounted for it.
-- KEYS[1] worker:ID  KEYS[2] stat:processed  KEYS[3] stat:processed:ID
-- KEYS[4] stat:failed  KEYS[5] stat:failed:ID  KEYS[6] failed
-- ARGV[1] the worker:ID record written at reserve   ARGV[2] state (3 or 4)
-- ARGV[3] failure record ('' when the job succeeded)   ARGV[4] now (epoch s)
-- ARGV[5] status key ('' when the job has no id)   ARGV[6] pid key ('' likewise,
-- and when no started note wrote one)
-- ARGV[7] the pid written to the pid key
-- ARGV[8] the record with the job's process group (lua/started.lua), which
--         worker:ID holds instead when that write landed ('' when none was sent)
-- The job's figures (contract 14), '' when not passed: ARGV[9] the metrics
-- hash  ARGV[10] its outcome field  ARGV[11] its duration bucket field
-- ARGV[12] its duration sum field  ARGV[13] the duration in microseconds
-- ARGV[14] its latency bucket field ('' when unknown)  ARGV[15] the latency
-- sum field  ARGV[16] the latency in microseconds.
-- A retry (contract 13) passes more: ARGV[17] the delayed item that retries
-- the job ('' for none)  ARGV[18] its delay in seconds  ARGV[19] the job's
-- retry counter key ('' for none)  ARGV[20] the count to keep there ('' to
-- delete it)  ARGV[21] its TTL  ARGV[22] the key prefix. A retried job is
-- counted as processed and failed, gets no failure record, goes into the
-- delayed set (Redis's clock) and its php status back to 1, all in this
-- step; should the delayed keys be unusable, the failure record of ARGV[3]
-- is filed instead, so the job is never lost.
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
if held ~= ARGV[1] and (ARGV[8] == '' or held ~= ARGV[8]) then return {0} end
local failing = ARGV[3] ~= ''
local retry = ARGV[17] or ''
local bucket, stamps, schedule, due
if retry ~= '' then
  due = tonumber(redis.call('TIME')[1]) + tonumber(ARGV[18])
  bucket = ARGV[22] .. 'delayed:' .. due
  stamps = ARGV[22] .. 'timestamps:' .. retry
  schedule = ARGV[22] .. 'delayed_queue_schedule'
  if not (absent_or(bucket, 'list') and absent_or(stamps, 'set') and absent_or(schedule, 'zset')) then
    retry = ''
  end
end
if retry ~= '' then
  redis.call('RPUSH', bucket, retry)
  redis.call('SADD', stamps, 'delayed:' .. due)
  redis.call('ZADD', schedule, due, due)
elseif failing then
  local pushed = redis.pcall('RPUSH', KEYS[6], ARGV[3])
  if type(pushed) == 'table' and pushed.err then
    return wrong_type(KEYS[6], 'list', 'the failure record cannot be filed')
  end
end
-- (Left to the reserve step when this runs chained with one: the next job's
-- record then replaces this one, one write instead of two.)
if not leave_worker_key then redis.call('DEL', KEYS[1]) end
local counters = {KEYS[2], KEYS[3]}
if failing then counters[3] = KEYS[4] counters[4] = KEYS[5] end
local skipped = {}
for _, k in ipairs(counters) do
  local n = redis.pcall('INCRBY', k, 1)
  if type(n) == 'table' and n.err then skipped[#skipped + 1] = k end
end
local counter = ARGV[19] or ''
if counter ~= '' then
  if retry ~= '' and ARGV[20] ~= '' then
    redis.pcall('SET', counter, ARGV[20], 'EX', ARGV[21])
  else
    redis.call('DEL', counter)
  end
end
local figures = ARGV[9] or ''
if figures ~= '' then
  -- pcall: a metrics hash of the wrong type must not stop the record.
  redis.pcall('HINCRBY', figures, ARGV[10], 1)
  redis.pcall('HINCRBY', figures, ARGV[11], 1)
  redis.pcall('HINCRBY', figures, ARGV[12], ARGV[13])
  if ARGV[14] ~= '' then
    redis.pcall('HINCRBY', figures, ARGV[14], 1)
    redis.pcall('HINCRBY', figures, ARGV[15], ARGV[16])
  end
end
local state = tonumber(ARGV[2])
if retry ~= '' then state = 1 end
if ARGV[5] ~= '' then set_status(ARGV[5], state, ARGV[4]) end
return {1, unpack(skipped)}
