-- Retries one failure record, found by its content (never by an index that
-- may have shifted): marks it retried and pushes its payload back to the
-- tail of its queue, atomically. Returns 0 when the record is gone.
-- KEYS[1] failed  KEYS[2] the queue  KEYS[3] queues
-- ARGV[1] the record as read  ARGV[2] the record with retried_at
-- ARGV[3] the payload  ARGV[4] queue name  ARGV[5] status key ('' = none)  ARGV[6] now
if not absent_or(KEYS[1], 'list') then return 0 end
local i = redis.call('LPOS', KEYS[1], ARGV[1])
if not i then return 0 end
if not absent_or(KEYS[2], 'list') then
  return wrong_type(KEYS[2], 'list', 'the job cannot go back on its queue')
end
if not absent_or(KEYS[3], 'set') then
  return wrong_type(KEYS[3], 'set', 'the queue cannot be listed')
end
redis.call('LSET', KEYS[1], i, ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('SADD', KEYS[3], ARGV[4])
if ARGV[5] ~= '' then set_status(ARGV[5], 1, ARGV[6]) end
return 1
