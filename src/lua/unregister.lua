-- Removes a worker and every key it owns; files a failure for the job it held,
-- or pushes that job back to the head of its queue.
-- KEYS[1] workers  KEYS[2] worker:ID  KEYS[3] worker:ID:started
-- KEYS[4] stat:processed:ID  KEYS[5] stat:failed:ID  KEYS[6] workers:heartbeat
-- KEYS[7] stat:processed  KEYS[8] stat:failed  KEYS[9] failed
-- KEYS[10] the job's queue  KEYS[11] queues
-- ARGV[1] worker id  ARGV[2] the worker:ID value read ('' = none)
-- ARGV[3] failure record for that job  ARGV[4] now  ARGV[5] status key ('' = none)
-- ARGV[6] the payload to requeue instead ('' = file the failure)  ARGV[7] queue name
-- ARGV[8] the job's php pid key ('' = none): its process is gone with the worker
-- Returns {-1}, changing nothing, when worker:ID is not what the caller read
-- (the caller reads again and retries), else {1, counters left alone...}.
for _, check in ipairs({{KEYS[2], 'string', 'the in-flight record cannot be read'},
    {KEYS[1], 'set', 'the worker cannot be removed'},
    {KEYS[6], 'hash', 'the heartbeat cannot be removed'}}) do
  if not absent_or(check[1], check[2]) then return wrong_type(check[1], check[2], check[3]) end
end
local current = redis.call('GET', KEYS[2])
local skipped = {}
if ARGV[2] == '' then
  if current then return {-1} end
else
  if current ~= ARGV[2] then return {-1} end
  local requeue = ARGV[6] ~= ''
  if requeue then
    if not absent_or(KEYS[10], 'list') then
      return wrong_type(KEYS[10], 'list', 'the job cannot go back on its queue')
    end
    if not absent_or(KEYS[11], 'set') then
      return wrong_type(KEYS[11], 'set', 'the queue cannot be listed')
    end
  elseif not absent_or(KEYS[9], 'list') then
    return wrong_type(KEYS[9], 'list', 'the failure record cannot be filed')
  end
  -- No write below can fail.
  if requeue then
    redis.call('LPUSH', KEYS[10], ARGV[6])
    redis.call('SADD', KEYS[11], ARGV[7])
    if ARGV[5] ~= '' then set_status(ARGV[5], 1, ARGV[4]) end
  else
    local good
    good, skipped = usable_counters({KEYS[7], KEYS[8]})
    redis.call('RPUSH', KEYS[9], ARGV[3])
    for _, k in ipairs(good) do redis.call('INCRBY', k, 1) end
    if ARGV[5] ~= '' then set_status(ARGV[5], 3, ARGV[4]) end
  end
  if ARGV[8] ~= '' then redis.call('DEL', ARGV[8]) end
end
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('HDEL', KEYS[6], ARGV[1])
return {1, unpack(skipped)}
