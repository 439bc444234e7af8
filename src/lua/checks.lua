-- Redis does not undo a script's writes when a later command in it fails.
-- So every script checks, before its first write, whatever could make one
-- of its writes fail (a key of the wrong type, a counter that is not an
-- integer): a script either does all it should or changes nothing.

local function key_type(key)
  return redis.call('TYPE', key).ok
end

-- True when `key` is absent or of type `want`.
local function absent_or(key, want)
  local t = key_type(key)
  return t == 'none' or t == want
end

-- The string at `key`, or nil when it is absent or not a string (one GET:
-- this runs on every job's path).
local function string_at(key)
  local v = redis.pcall('GET', key)
  if type(v) == 'table' then return nil end
  return v
end

-- True when INCRBY can add to `key`: absent, or a plain integer well within
-- 64 bits.
local function counter_ok(key)
  local t = key_type(key)
  if t == 'none' then return true end
  if t ~= 'string' then return false end
  local v = redis.call('GET', key)
  return #v <= 18 and string.match(v, '^%-?%d+$') ~= nil
end

-- Splits `keys` into the counters INCRBY can add to and the others, which
-- are left as they are (and named in the script's reply, to be logged).
local function usable_counters(keys)
  local good, skipped = {}, {}
  for _, k in ipairs(keys) do
    if counter_ok(k) then good[#good + 1] = k else skipped[#skipped + 1] = k end
  end
  return good, skipped
end

-- An error reply for a key that blocks a write, checked before any write.
local function wrong_type(key, want, what)
  return redis.error_reply('WRONGTYPE ' .. key .. ' holds a ' .. key_type(key) ..
    ', not a ' .. want .. ': ' .. what .. '; nothing was changed')
end
