-- Pops the first job in priority order AND records it as in flight, in one
-- atomic step: no instant exists at which a popped job is recorded nowhere.
-- KEYS[1] worker:ID   KEYS[2] pause-all-workers   KEYS[3..] queue lists
-- ARGV[1] run_at (JSON string)   ARGV[2] worker name host:pid (JSON string)
-- ARGV[3] key prefix   ARGV[4] now (epoch s)   ARGV[5] '1' = honour pause-all-workers
-- ARGV[6] this process's token (hex), the record's last field
-- Returns {0} when every queue is empty, {-1} when paused, {-2, record} when
-- worker:ID already holds a job under our token (an earlier reserve whose
-- reply was lost: the worker resumes it instead of overwriting it), {-3,
-- record} when it holds one under another process's token (never ours to
-- run), else {queue index (1-based), payload, the worker:ID record, 1 when
-- the job has a php status record (0: its record step need not look for one,
-- since enqueuers create it before the push, never later)}.
local token_field = ',"token":"' .. ARGV[6] .. '"}'
-- (Not read when it is known to hold only the job a chained record step just
-- recorded, which this reserve replaces.)
local held = not worker_key_recorded and redis.call('GET', KEYS[1])
if held then
  if string.sub(held, -#token_field) == token_field then return {-2, held} end
  return {-3, held}
end
if ARGV[5] == '1' then
  local pause = redis.call('GET', KEYS[2])
  if pause and string.match(string.lower(pause), '^%s*(.-)%s*$') == 'true' then
    return {-1}
  end
end
if #KEYS < 3 then return {0} end
-- The first non-empty queue, in the order given. LMPOP (Redis 7) finds it in
-- one call per chunk of keys: unpack can expand only a few thousand values,
-- and a '*' list may name tens of thousands of queues. Older servers take one
-- LPOP per queue.
local raw, index
if #KEYS == 3 then
  -- (One queue, the common case: LMPOP's argument list is not worth it.)
  raw = redis.call('LPOP', KEYS[3])
  if raw then index = 3 end
elseif redis.REDIS_VERSION_NUM and redis.REDIS_VERSION_NUM >= 0x070000 then
  local CHUNK = 1000
  for first = 3, #KEYS, CHUNK do
    local last = math.min(first + CHUNK - 1, #KEYS)
    -- (unpack expands fully only as the last argument, so build the list.)
    local args = {last - first + 1}
    for i = first, last do args[#args + 1] = KEYS[i] end
    args[#args + 1] = 'LEFT'
    local popped = redis.call('LMPOP', unpack(args))
    if popped then
      raw = popped[2][1]
      for i = first, last do
        if KEYS[i] == popped[1] then index = i break end
      end
      break
    end
  end
else
  for i = 3, #KEYS do
    raw = redis.call('LPOP', KEYS[i])
    if raw then index = i break end
  end
end
if raw then
  local queue = cjson.encode(string.sub(KEYS[index], #ARGV[3] + 7))
  -- Decode only to check the text is an object and to read id/prefix; a
  -- decode error must not abort the script after the LPOP, hence pcall.
  -- A payload that strict parsers would reject is written wrapped, so that
  -- every reader of worker:ID can parse it (contract 4).
  local ok, job = false, nil
  if string.find(raw, '^%s*{') then ok, job = pcall(cjson.decode, raw) end
  local payload = raw
  if not (ok and type(job) == 'table' and strict_json(raw)) then
    job = nil
    if valid_utf8(raw) then
      payload = '{"raw":' .. cjson.encode(raw) .. '}'
    else
      payload = '{"raw_base64":"' .. base64(raw) .. '"}'
    end
  end
  local record = '{"queue":' .. queue .. ',"run_at":' .. ARGV[1] ..
    ',"payload":' .. payload .. ',"worker":' .. ARGV[2] .. token_field
  redis.call('SET', KEYS[1], record)
  local tracked = 0
  if job and type(job.id) == 'string' and job.id ~= '' then
    local pfx = ''
    if type(job.prefix) == 'string' and job.prefix ~= '' then pfx = job.prefix .. '_' end
    if set_status(ARGV[3] .. 'job:' .. pfx .. job.id .. ':status', 2, ARGV[4]) then
      tracked = 1
    end
  end
  return {index - 2, raw, record, tracked}
end
return {0}
