-- Moves due delayed items (resque-scheduler's keys, contract 11) onto their
-- queues, in one atomic step per batch: any number of pools on any number
-- of hosts promote each item exactly once, and a pool killed at any instant
-- loses nothing. "Now" is Redis's clock, not a host's.
-- KEYS[1] delayed_queue_schedule  KEYS[2] queues  KEYS[3] failed
-- KEYS[4] Ruby resque-scheduler's master lock
-- ARGV[1] key prefix  ARGV[2] most items to move  ARGV[3] failed_at text
-- ARGV[4] the promoting pool's name, for failure records
-- Returns {-1} while a Ruby scheduler holds its lock (its mover reads a batch
-- before it watches the bucket, so a second promoter beside it makes it
-- enqueue items twice), else {moved, filed as failures, 1 if more are due}.
if redis.call('EXISTS', KEYS[4]) == 1 then return {-1} end
local now = tonumber(redis.call('TIME')[1])
local limit = tonumber(ARGV[2])
local prefix = ARGV[1]

local moved, filed = 0, 0
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
for _, ts in ipairs(due) do
  local bucket = prefix .. 'delayed:' .. ts
  while moved + filed < limit do
    local item = redis.call('LPOP', bucket)
    if not item then break end
    redis.call('SREM', prefix .. 'timestamps:' .. item, 'delayed:' .. ts)
    local ok, job = pcall(cjson.decode, item)
    local queue = ok and type(job) == 'table' and job.queue
    if type(queue) == 'string' and queue ~= '' and type(job.class) == 'string' then
      redis.call('RPUSH', prefix .. 'queue:' .. queue, without_queue(item))
      redis.call('SADD', KEYS[2], queue)
      moved = moved + 1
    else
      -- Never a silent drop: the item, kept whole, in a failure record.
      local kept = '"raw":' .. cjson.encode(item)
      if not valid_utf8(item) then kept = '"raw_base64":"' .. base64(item) .. '"' end
      redis.call('RPUSH', KEYS[3], '{"failed_at":' .. cjson.encode(ARGV[3]) ..
        ',"payload":null,"exception":"ResqueFork::MalformedDelayedItem"' ..
        ',"error":"a delayed item due at ' .. ts .. ' is not a job with a class and a queue"' ..
        ',"backtrace":[],"worker":' .. cjson.encode(ARGV[4]) .. ',"queue":"",' .. kept .. '}')
      filed = filed + 1
    end
  end
  if redis.call('LLEN', bucket) == 0 then
    redis.call('DEL', bucket)
    redis.call('ZREM', KEYS[1], ts)
  end
  if moved + filed >= limit then break end
end
local more = #redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 1)
return {moved, filed, more}
