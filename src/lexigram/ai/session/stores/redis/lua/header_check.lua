-- The header fields the store's decoder (wire.decode_header) rejects, checked by a
-- write script before it writes (shared by append.lua and session_base.lua), so that
-- a damaged header refuses the write instead of having it applied and then failing
-- to decode its reply. Names are the decoder's (CorruptRecordError names the field).
-- The status and the counters are checked by the callers themselves.

-- the first microsecond count past year 9999 (datetime's range)
local HC_MAX_US = 253402300800000000

-- the text fields (the others are checked with their kind)
local HC_TEXT = {id = 'session_id', u = 'user_id', s = 'status', sp = 'system_prompt',
                 cp = 'checkpoint_id', ps = 'parent_session_id', bn = 'branch_name',
                 tc = 'total_cost'}

-- nil when v is a count the decoder takes (digits only; a time also in range), else
-- the problem; a missing v is 'missing' when required
local function hc_count(v, required, time)
  if v == nil then return required and 'missing' or nil end
  if type(v) ~= 'string' then return 'not a string' end
  local x = tonumber(v)
  if not x or x < 0 or x % 1 ~= 0 or string.find(v, '%D') then
    return 'not an integer >= 0'
  end
  if time and x >= HC_MAX_US then return 'out of range' end
  return nil
end

-- nil when v (a JSON container field) may be what the decoder takes, else the problem:
-- a look at its first and last byte (the store writes compact JSON: what the append
-- checks), with FULL a decoding of it too
local function hc_json(v, empty, open, close, full)
  if v == nil or v == empty then return nil end
  local kind = open == 123 and 'object' or 'array'
  if type(v) ~= 'string' then return 'not a string' end
  if string.byte(v, 1) ~= open or string.byte(v, -1) ~= close then
    -- (JSON may have white space around the value; the store writes none)
    local o, c = string.sub(empty, 1, 1), string.sub(empty, 2, 2)
    if not (string.find(v, '^%s*%' .. o) and string.find(v, '%' .. c .. '%s*$')) then
      return 'expected a JSON ' .. kind
    end
  end
  if not full then return nil end
  local ok, doc = pcall(cjson.decode, v)
  if not ok or type(doc) ~= 'table' then return 'invalid JSON' end
  if kind == 'array' then
    for _, x in ipairs(doc) do
      if type(x) ~= 'string' then return 'expected a list of strings' end
    end
  end
  return nil
end

-- The first damaged field of header h as (name, problem), or nil: what the decoder
-- checks, the JSON containers decoded. For the writes other than the append (a few
-- microseconds, more for large containers); the append, the chat path, makes the
-- cheap part of these checks inline, on the numbers it parses anyway (append.lua).
local function header_damage(h)
  local full = true
  local p
  if h.id == nil or h.id == '' then return 'session_id', h.id and 'empty' or 'missing' end
  if h.u == nil or h.u == '' then return 'user_id', h.u and 'empty' or 'missing' end
  -- (a header hash holds only strings; a checkpoint's header is JSON, and may not)
  for f, name in pairs(HC_TEXT) do
    if h[f] ~= nil and type(h[f]) ~= 'string' then return name, 'not a string' end
  end
  p = hc_count(h.ca, true, true) if p then return 'created_at', p end
  p = hc_count(h.ua, true, true) if p then return 'updated_at', p end
  p = hc_count(h.tt, true) if p then return 'total_tokens', p end
  p = hc_count(h.n, true) if p then return 'turn_count', p end
  p = hc_count(h.ex, false, true) if p then return 'expires_at', p end
  p = hc_count(h.fs) if p then return 'fork_seq', p end
  p = hc_count(h.ls) if p then return 'last_seq', p end
  local c = h.tc
  local cost = c and not string.find(c, '[^%d.eE+-]') and tonumber(c)
  if not cost or cost ~= cost or cost >= math.huge or cost <= -math.huge then
    return 'total_cost', c and 'not a finite number' or 'missing'
  end
  if cost < 0 then return 'total_cost', 'not a number >= 0' end
  p = hc_json(h.m, '{}', 123, 125, full) if p then return 'metadata', p end
  p = hc_json(h.ta, '[]', 91, 93, full) if p then return 'active_tools', p end
  p = hc_json(h.sk, '[]', 91, 93, full) if p then return 'active_skills', p end
  p = hc_json(h.v, '{}', 123, 125, full) if p then return 'variables', p end
  return nil
end
