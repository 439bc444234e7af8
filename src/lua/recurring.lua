-- Enqueues the due ticks of one recurring entry, each exactly once across
-- every pool sharing this Redis (contract 12): the entry's latest enqueued
-- tick is kept in a hash, and a tick is enqueued only when it is later, in
-- the same atomic step that records it. A pool killed at any instant has
-- either enqueued a tick and recorded it, or neither.
-- KEYS[1] schedule ticks hash  KEYS[2] queue:<queue>  KEYS[3] queues
-- KEYS[4] delayed:last_enqueued_at  KEYS[5] Ruby resque-scheduler's master lock
-- ARGV[1] entry name  ARGV[2] payload  ARGV[3] queue name
-- ARGV[4] last_enqueued_at text  ARGV[5] where an entry seen for the first
-- time starts: its ticks after this are enqueued (so a new entry does not
-- replay a catch-up window), and it is recorded at once, due tick or not,
-- so its first tick is not missed by a late turn  ARGV[6..] the ticks,
-- earliest first
-- Returns {-1, 0} while a Ruby scheduler runs (it runs its own schedule),
-- else {ticks enqueued, the entry's latest tick}.
if redis.call('EXISTS', KEYS[5]) == 1 then return {-1, 0} end
local mark = tonumber(redis.call('HGET', KEYS[1], ARGV[1]))
local floor = mark or tonumber(ARGV[5])
local latest = floor
local n = 0
for i = 6, #ARGV do
  local tick = tonumber(ARGV[i])
  if tick > floor then
    redis.call('RPUSH', KEYS[2], ARGV[2])
    n = n + 1
  end
  if tick > latest then latest = tick end
end
if latest ~= mark then redis.call('HSET', KEYS[1], ARGV[1], latest) end
if n > 0 then
  redis.call('SADD', KEYS[3], ARGV[3])
  redis.call('HSET', KEYS[4], ARGV[1], ARGV[4])
end
return {n, latest}
