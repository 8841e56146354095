
-- ARGV[1] is "now" or "now|grace": grace (ms) is how long a session's keys outlive
-- its deadline (or its end) when the store has a TTL. KEYS[13], when given, is the
-- key recording this operation's reply (see _OP_EPILOGUE in scripts.py); KQ indexes
-- the session's reply keys, so that deleting the session deletes them too.
local NOW_TEXT, GRACE_TEXT = string.match(ARGV[1], '^(-?%d+)|(%d+)$')
local NOW_S = NOW_TEXT or ARGV[1]
local NOW = tonumber(NOW_S)
local GRACE = tonumber(GRACE_TEXT or '')
local KH, KT, KR, KI, KA, KC, KD, KK, KB, KP, KX, KQ = unpack(KEYS, 1, 12)
local KO = KEYS[13]
local MAX_SAFE = 9007199254740991
local FAILED = false
-- set by a refusal because the session is not stored: nothing to record (see
-- op_epilogue.lua); and by a script that removed the session with its reply keys
local MISSING = false
local REMOVED = false
-- set by a write that creates no key of its own when the session's keys already
-- have an expiry: then they are only refreshed once it drifted by KEEP_SLACK_MS
local KEEP_FAST = false
local KEEP_SLACK_MS = 60000
local LIVE = {active = true, suspended = true}
local VALID = {active = true, suspended = true, closed = true, expired = true}

local function int(x) return string.format('%d', x) end

local function num(x) return string.format('%.17g', x) end

local function fail(code, a, b)
  FAILED = true
  MISSING = code == 'NF'
  return cjson.encode({e = code, a = a, b = b})
end

-- a hash as a table; nil when missing; nil, true when the key is not a hash
local function hmap(key)
  local flat = redis.pcall('HGETALL', key)
  if flat.err then return nil, true end
  if #flat == 0 then return nil end
  local m = {}
  for j = 1, #flat, 2 do m[flat[j]] = flat[j + 1] end
  return m
end

local function effective(h)
  -- a deadline that is no number (a damaged header) is no deadline here: the write
  -- scripts refuse such a header first (header_check), and a whole-state save, the
  -- repair, replaces it
  local ex = h.ex and tonumber(h.ex)
  if LIVE[h.s] and ex and ex <= NOW then return 'expired' end
  return h.s
end

local function wrong_type()
  return fail('CORRUPT', 'header', 'not a hash')
end

local function header()
  local h, bad = hmap(KH)
  if bad then return nil, wrong_type() end
  if not h then return nil, fail('NF') end
  if not VALID[h.s] then return nil, fail('CORRUPT', 'status', h.s) end
  if not (tonumber(h.n) and tonumber(h.tt) and tonumber(h.tc)) then
    return nil, fail('CORRUPT', 'counters', '')
  end
  -- every script reading the header this way writes: a field the store could not
  -- decode refuses the write before anything is written (header_check.lua)
  local bad, why = header_damage(h)
  if bad then return nil, fail('CORRUPT', bad, why) end
  return h
end

-- set when this write gave a deadline to a live session that had none (created while
-- session_ttl was 0): the caller then enters it in the sweeper's deadline index
local NEW_DEADLINE = false

local function reply_h(h, extra)
  return '{"h":' .. cjson.encode(h) .. (extra or '') .. (NEW_DEADLINE and ',"nd":1' or '') .. '}'
end

local function push_all(cmd, key, values)
  local n = #values
  local j = 1
  while j <= n do
    local k = math.min(j + 499, n)
    redis.call(cmd, key, unpack(values, j, k))
    j = k + 1
  end
end

local function hset_pairs(key, flat)
  local n = #flat
  local j = 1
  while j <= n do
    local k = math.min(j + 999, n)
    redis.call('HSET', key, unpack(flat, j, k))
    j = k + 1
  end
end

local function apply_patch(h, upd, patch)
  if patch == '' then return end
  for f, v in pairs(cjson.decode(patch)) do
    if f == 'kg' or f == 'ow' then  -- guards (key_guard, owner), checked by the caller
    elseif v == false then
      if h[f] then redis.call('HDEL', KH, f); h[f] = nil end
    else
      upd[#upd + 1] = f
      upd[#upd + 1] = v
    end
  end
end

-- the new updated_at: "now", but never before the stored one (a writer whose clock
-- was read earlier, or runs behind, never moves it backwards)
local function stamp(h)
  local u = tonumber(h.ua)
  if u and u > NOW then return h.ua end
  return NOW_S
end

local function set_deadline(h, upd, deadline, live)
  if live and deadline ~= '' then
    if not h.ex then NEW_DEADLINE = true end
    -- nor the deadline
    if h.ex and tonumber(h.ex) > tonumber(deadline) then deadline = h.ex end
    upd[#upd + 1] = 'ex'
    upd[#upd + 1] = deadline
  elseif h.ex then
    redis.call('HDEL', KH, 'ex')
    h.ex = nil
  end
end

local function commit(h, upd)
  if #upd > 0 then redis.call('HSET', KH, unpack(upd)) end
  for j = 1, #upd, 2 do h[upd[j]] = upd[j + 1] end
end

local function writable(h)
  local st = effective(h)
  if st == 'closed' or st == 'expired' then return nil, fail('CHK', st, h.n) end
  return st
end

-- delete every reply key the session indexed, and the index
local function drop_replies()
  local ops = redis.call('ZRANGE', KQ, 0, -1)
  for j = 1, #ops, 500 do redis.call('UNLINK', unpack(ops, j, math.min(j + 499, #ops))) end
  redis.call('DEL', KQ)
end
