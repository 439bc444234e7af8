-- Shared by the scripts that move delayed items onto queues (contract 11).

-- The payload is the item without its `queue` member, cut out of the text
-- (never decoded and encoded again): Ruby and php write it last, node-resque
-- second, after `class`. Another layout keeps its `queue` field, which
-- workers ignore.
local function without_queue(item)
  local out, n = string.gsub(item, ',%s*"queue"%s*:%s*"[^"\\]*"(%s*}%s*)$', '%1')
  if n == 1 then return out end
  out, n = string.gsub(item, '^(%s*{%s*"class"%s*:%s*"[^"\\]*"%s*),%s*"queue"%s*:%s*"[^"\\]*"', '%1')
  if n == 1 then return out end
  return item
end
