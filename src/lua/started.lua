-- A job's process has started: its process group goes into the in-flight
-- record (so a pruner of this host can stop what the job left running), and
-- php's pid key names the process. Sent without waiting for the reply.
-- KEYS[1] worker:ID  KEYS[2] the php pid key (only when the job has an id)
-- ARGV[1] the record written at reserve  ARGV[2] the record with its pgid
-- ARGV[3] the job process's pid
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[3]) end
return 1
