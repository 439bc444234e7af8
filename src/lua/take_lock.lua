-- Takes Ruby's pruning lock (SET NX EX, the value is the pruner's id), or
-- says who holds it and for how long, so a caller can judge whether the
-- holder is still alive and when to look again.
-- KEYS[1] pruning_dead_workers_in_progress   ARGV[1] our id   ARGV[2] TTL (s)
-- Returns {1, '', 0} when taken, else {0, holder, PTTL in ms}.
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  return {1, '', 0}
end
return {0, redis.call('GET', KEYS[1]) or '', redis.call('PTTL', KEYS[1])}
