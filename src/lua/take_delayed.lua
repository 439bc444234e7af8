-- Takes given delayed items out of their buckets (`delayed remove`), or
-- moves them onto their queues at once (`delayed run-now`), atomically with
-- their `timestamps:` entries and the schedule (contract 11). An item a
-- promoter moved meanwhile is no longer in its bucket and is not counted.
-- KEYS[1] delayed_queue_schedule  KEYS[2] queues
-- ARGV[1] key prefix  ARGV[2] "run" to enqueue, else remove
-- ARGV[3] the items' queue  ARGV[4..] pairs: timestamp, item text
local prefix = ARGV[1]
local n = 0
for i = 4, #ARGV - 1, 2 do
  local ts, item = ARGV[i], ARGV[i + 1]
  local bucket = prefix .. 'delayed:' .. ts
  if redis.call('LREM', bucket, 1, item) == 1 then
    n = n + 1
    redis.call('SREM', prefix .. 'timestamps:' .. item, 'delayed:' .. ts)
    if ARGV[2] == 'run' then
      redis.call('RPUSH', prefix .. 'queue:' .. ARGV[3], without_queue(item))
      redis.call('SADD', KEYS[2], ARGV[3])
    end
    if redis.call('LLEN', bucket) == 0 then
      redis.call('DEL', bucket)
      redis.call('ZREM', KEYS[1], ts)
    end
  end
end
return n
