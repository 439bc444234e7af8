-- Removes a worker and every key it owns; files a failure for the job it held,
-- or pushes that job back to the head of its queue.
-- Returns -1, changing nothing, when worker:ID is not what the caller read
-- (the caller reads again and retries), else 1.
-- KEYS[1] workers  KEYS[2] worker:ID  KEYS[3] worker:ID:started
-- KEYS[4] stat:processed:ID  KEYS[5] stat:failed:ID  KEYS[6] workers:heartbeat
-- KEYS[7] stat:processed  KEYS[8] stat:failed  KEYS[9] failed
-- KEYS[10] the job's queue  KEYS[11] queues
-- ARGV[1] worker id  ARGV[2] the worker:ID value read ('' = none)
-- ARGV[3] failure record for that job  ARGV[4] now  ARGV[5] status key ('' = none)
-- ARGV[6] the payload to requeue instead ('' = file the failure)  ARGV[7] queue name
local current = redis.call('GET', KEYS[2])
if ARGV[2] == '' then
  if current then return -1 end
else
  if current ~= ARGV[2] then return -1 end
  if ARGV[6] ~= '' then
    redis.call('LPUSH', KEYS[10], ARGV[6])
    redis.call('SADD', KEYS[11], ARGV[7])
    if ARGV[5] ~= '' then set_status(ARGV[5], 1, ARGV[4]) end
  else
    redis.call('RPUSH', KEYS[9], ARGV[3])
    redis.call('INCRBY', KEYS[7], 1)
    redis.call('INCRBY', KEYS[8], 1)
    if ARGV[5] ~= '' then set_status(ARGV[5], 3, ARGV[4]) end
  end
end
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
redis.call('HDEL', KEYS[6], ARGV[1])
return 1
