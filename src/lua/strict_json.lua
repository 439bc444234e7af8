-- Checks that text cjson has decoded is also strict JSON (RFC 8259) in valid
-- UTF-8, as Ruby's, node's and serde's parsers demand. cjson checks the
-- grammar but lets through invalid UTF-8, raw control characters in strings,
-- and numbers such as 0x1F, NaN, Infinity, 007, +1, .5 or 1. ; those are
-- checked here, token by token, without decoding anything again.

-- Valid UTF-8 sequences (no overlongs, surrogates or code points past
-- U+10FFFF), each replaced by one ASCII byte; a byte >= 0x80 left over
-- means the text is not UTF-8. Continuation bytes never match a lead-byte
-- class, so no pattern can start inside another's sequence.
local UTF8_SEQUENCES = {
  '\240[\144-\191][\128-\191][\128-\191]',
  '[\241-\243][\128-\191][\128-\191][\128-\191]',
  '\244[\128-\143][\128-\191][\128-\191]',
  '\224[\160-\191][\128-\191]',
  '[\225-\236\238\239][\128-\191][\128-\191]',
  '\237[\128-\159][\128-\191]',
  '[\194-\223][\128-\191]',
}

local function valid_utf8(s)
  if not string.find(s, '[\128-\255]') then return true end
  for _, seq in ipairs(UTF8_SEQUENCES) do s = string.gsub(s, seq, '.') end
  return not string.find(s, '[\128-\255]')
end

local function strict_token(t)
  if t == 'true' or t == 'false' or t == 'null' then return true end
  local int, rest = string.match(t, '^%-?(%d+)(.*)$')
  if not int or (#int > 1 and string.sub(int, 1, 1) == '0') then return false end
  if string.sub(rest, 1, 1) == '.' then
    rest = string.match(rest, '^%.%d+(.*)$')
    if not rest then return false end
  end
  return rest == '' or string.match(rest, '^[eE][%+%-]?%d+$') ~= nil
end

local function strict_json(s)
  local t = s
  -- Most payloads are printable ASCII without a backslash: no UTF-8, escape
  -- or control character to check (one scan instead of three).
  -- (Bytes 93-126 then 32-91: all printable ASCII but the backslash; a ']'
  -- first in a set is taken literally. Anchored, the class is tried once per
  -- byte in one loop: a search for the bytes outside it costs several times
  -- more in Lua's matcher, on every job.)
  local plain = string.find(s, '^[\93-\126\32-\91]*$') ~= nil
  if not plain then
    if not valid_utf8(s) then return false end
    -- Escapes, left to right so that an escaped backslash pairs up first:
    -- a valid one becomes 'e', \uXXXX becomes 'e' once its four hex digits
    -- are seen, anything else leaves a \1 (itself a control character).
    t = string.gsub(t, '\\(.)', function(c)
      if c == 'u' then return '\1U' end
      if string.find('"\\/bfnrt', c, 1, true) then return 'e' end
      return '\1'
    end)
    t = string.gsub(t, '\1U%x%x%x%x', 'e')
  end
  -- With escapes gone a string holds no quote or backslash, so one without
  -- control characters matches whole; a quote left over means one had them.
  -- (Plain text has none: the shorter class is quicker to match.)
  t = string.gsub(t, plain and '"[^"]*"' or '"[^"%z\1-\31]*"', '#')
  if string.find(t, '"') or
    (not plain and string.find(t, '[\\%z\1-\8\11\12\14-\31]')) then
    return false
  end
  -- What is left is structure, whitespace and bare tokens.
  for token in string.gmatch(t, '[^ \t\n\r{}%[%],:#]+') do
    if not strict_token(token) then return false end
  end
  return true
end

-- Standard base64 (RFC 4648, padded), as the Rust side writes `raw_base64`.
local B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/'
local function base64(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = string.byte(s, i, i + 2)
    local n = a * 65536 + (b or 0) * 256 + (c or 0)
    local quad = {}
    for j = 3, 0, -1 do
      local v = math.floor(n / 64 ^ j) % 64
      quad[#quad + 1] = string.sub(B64, v + 1, v + 1)
    end
    if not b then quad[3] = '=' end
    if not c then quad[4] = '=' end
    out[#out + 1] = table.concat(quad)
  end
  return table.concat(out)
end
