-- Records one job outcome atomically: clear the in-flight record, count it,
-- file the failure, finish the php status. Skipped (returns 0) when worker:ID
-- no longer holds this job: someone else (a pruner) has accounted for it.
-- KEYS[1] worker:ID  KEYS[2] stat:processed  KEYS[3] stat:processed:ID
-- KEYS[4] stat:failed  KEYS[5] stat:failed:ID  KEYS[6] failed
-- ARGV[1] the worker:ID record written at reserve   ARGV[2] state (3 or 4)
-- ARGV[3] failure record ('' when the job succeeded)   ARGV[4] now (epoch s)
-- ARGV[5] status key ('' when the job has no id)   ARGV[6] pid key ('' likewise)
if ARGV[6] ~= '' then redis.call('DEL', ARGV[6]) end
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
redis.call('INCRBY', KEYS[2], 1)
redis.call('INCRBY', KEYS[3], 1)
if ARGV[3] ~= '' then
  redis.call('RPUSH', KEYS[6], ARGV[3])
  redis.call('INCRBY', KEYS[4], 1)
  redis.call('INCRBY', KEYS[5], 1)
end
if ARGV[5] ~= '' then set_status(ARGV[5], tonumber(ARGV[2]), ARGV[4]) end
return 1
