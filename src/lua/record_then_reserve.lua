-- Records one job and reserves the next, atomically: the record script
-- (lua/record.lua) then the reserve script (lua/reserve.lua), each run as a
-- function over its own KEYS and ARGV. A busy worker so needs one round
-- trip per job instead of two.
-- ARGV[1] how many of KEYS are the record step's, ARGV[2] how many of the
-- remaining ARGV; the rest of each goes to the reserve step.
-- Returns {the record step's reply, the reserve step's reply}; when the
-- record step refuses (a failure record that cannot be filed), its error,
-- and nothing is reserved.
local nkeys, nargs = tonumber(ARGV[1]), tonumber(ARGV[2])
-- (unpack copies in C, and sizes each table once; it takes a few thousand
-- values at most, and a '*' worker's queue keys may be more.)
local function slice(t, from, to)
  if to - from < 4000 then return {unpack(t, from, to)} end
  local out = {}
  for i = from, to do out[#out + 1] = t[i] end
  return out
end
local record_keys, reserve_keys = slice(KEYS, 1, nkeys), slice(KEYS, nkeys + 1, #KEYS)
local record_args = slice(ARGV, 3, 2 + nargs)
local reserve_args = slice(ARGV, 3 + nargs, #ARGV)
-- A record step that recorded the job leaves worker:ID (the finished job's
-- record) to the reserve step, which replaces it with the next job's or,
-- when there is none, deletes it here.
local recorded = record_step(record_keys, record_args, true)
if recorded.err then return recorded end
local recorded_here = recorded[1] == 1
local reserved = reserve_step(reserve_keys, reserve_args, recorded_here)
if recorded_here and reserved[1] <= 0 then redis.call('DEL', reserve_keys[1]) end
return {recorded, reserved}
