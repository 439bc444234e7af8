-- php-resque's status record, written only where the key exists (the enqueuer
-- creates it when tracking was asked for), keeping `started` as php does. A
-- key of another type is not a status record: it is left alone. Returns
-- true when there was a status record.
local function set_status(key, state, now)
  local old = string_at(key)
  if not old then return false end
  local started = 'null'
  local ok, decoded = pcall(cjson.decode, old)
  if ok and type(decoded) == 'table' and type(decoded.started) == 'number' then
    started = string.format('%d', decoded.started)
  end
  redis.call('SET', key, '{"status":' .. state .. ',"updated":' .. now ..
    ',"started":' .. started .. ',"result":null}')
  if state == 3 or state == 4 then redis.call('EXPIRE', key, 86400) end
  return true
end
