"""Lua scripts of the Redis session store.

Each session script receives the session's keys in :data:`keys.SESSION_KEY_NAMES`
order (all in one hash slot) and ``ARGV[1]`` = the store's "now" in microseconds,
so tests can move the clock. A script first checks everything, then writes: it
never leaves a half-done change behind, and Redis runs it as one indivisible step
whatever other clients do. Replies are one JSON string (cheap to parse in Python):
``{"e": code, "a": ..., "b": ...}`` for a refused operation, otherwise an object
whose ``"h"`` is the header hash and ``"t"`` the turns' JSON documents.

Every value that travels through ``cjson`` is a string, so no number is ever
re-formatted by Lua (cjson keeps only 14 significant digits). Arithmetic on
totals uses Lua's doubles and ``%.17g``, which round-trips exactly as Python floats;
token totals are refused past 2**53-1, below which doubles hold integers exactly.

Write scripts (:data:`WRITE_SCRIPTS`) are wrapped by ``_OP_EPILOGUE``: given an
operation-id key as ``KEYS[12]`` they run their body once per operation id and
answer a re-sent call with the recorded reply, then set the session keys' Redis
expiry when ``ARGV[1]`` carries a grace (``"now|grace_ms"``).
"""

from __future__ import annotations

__all__ = ["OP_TTL_MS", "SCRIPTS", "SESSION_PRELUDE", "WRITE_SCRIPTS"]

SESSION_PRELUDE = r"""
-- ARGV[1] is "now" or "now|grace": grace (ms) is how long a session's keys outlive
-- its deadline (or its end) when the store has a TTL. KEYS[12], when given, is the
-- key recording this operation's reply (see _OP_EPILOGUE in scripts.py).
local NOW_TEXT, GRACE_TEXT = string.match(ARGV[1], '^(-?%d+)|(%d+)$')
local NOW_S = NOW_TEXT or ARGV[1]
local NOW = tonumber(NOW_S)
local GRACE = tonumber(GRACE_TEXT or '')
local KH, KT, KR, KI, KA, KC, KD, KK, KB, KP, KX = unpack(KEYS, 1, 11)
local KO = KEYS[12]
local MAX_SAFE = 9007199254740991
local FAILED = false
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
  return cjson.encode({e = code, a = a, b = b})
end

local function json_list(items)
  return '[' .. table.concat(items, ',') .. ']'
end

-- a reply carrying turns: {meta JSON, turn JSON, turn JSON, ...} (an array reply,
-- much cheaper for Redis than concatenating the documents into one string)
local function with_turns(meta, turns)
  table.insert(turns, 1, meta)
  return turns
end

local function str_list(items)
  local out = {}
  for j, v in ipairs(items) do out[j] = cjson.encode(v) end
  return json_list(out)
end

local function opt_str(v)
  if v == nil then return 'null' end
  return cjson.encode(v)
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
  if LIVE[h.s] and h.ex and tonumber(h.ex) <= NOW then return 'expired' end
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
  return h
end

local function reply_h(h, extra)
  return '{"h":' .. cjson.encode(h) .. (extra or '') .. '}'
end

local function parse_ranges(text)
  local out = {}
  if text then
    for a, b in string.gmatch(text, '(%d+):(%d+)') do out[#out + 1] = {tonumber(a), tonumber(b)} end
  end
  return out
end

local function live_ranges()
  local out = {}
  for _, v in ipairs(redis.call('LRANGE', KR, 0, -1)) do
    local a, b = string.match(v, '^(%d+):(%d+)$')
    out[#out + 1] = {tonumber(a), tonumber(b)}
  end
  return out
end

local function ranges_text(rs)
  local parts = {}
  for j, r in ipairs(rs) do parts[j] = int(r[1]) .. ':' .. int(r[2]) end
  return table.concat(parts, ',')
end

local function expand(rs)
  local out = {}
  for _, r in ipairs(rs) do for s = r[1], r[2] do out[#out + 1] = s end end
  return out
end

local function compress(seqs)
  local out = {}
  for _, s in ipairs(seqs) do
    local last = out[#out]
    if last and last[2] + 1 == s then last[2] = s else out[#out + 1] = {s, s} end
  end
  return out
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

local function live_turns()
  local seqs = expand(live_ranges())
  local jsons = redis.call('LRANGE', KT, 0, -1)
  return seqs, jsons
end

-- merged, sorted intervals of every seq some checkpoint names
local function coverage()
  local iv = {}
  for _, text in ipairs(redis.call('HVALS', KK)) do
    for a, b in string.gmatch(text, '(%d+):(%d+)') do iv[#iv + 1] = {tonumber(a), tonumber(b)} end
  end
  table.sort(iv, function(x, y) return x[1] < y[1] end)
  local merged = {}
  for _, r in ipairs(iv) do
    local last = merged[#merged]
    if last and r[1] <= last[2] + 1 then
      if r[2] > last[2] then last[2] = r[2] end
    else
      merged[#merged + 1] = {r[1], r[2]}
    end
  end
  return merged
end

local function covered(iv, s)
  local lo, hi = 1, #iv
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    local r = iv[mid]
    if s < r[1] then hi = mid - 1 elseif s > r[2] then lo = mid + 1 else return true end
  end
  return false
end

-- turns that stop being live: keep in the archive those a checkpoint names
local function retire(seqs, jsons, iv)
  local flat = {}
  for j, s in ipairs(seqs) do
    if covered(iv, s) then
      flat[#flat + 1] = int(s)
      flat[#flat + 1] = jsons[j]
    end
  end
  if #flat > 0 then hset_pairs(KA, flat) end
end

-- drop archived turns no checkpoint names any more
local function gc_archive()
  local iv = coverage()
  local drop = {}
  for _, f in ipairs(redis.call('HKEYS', KA)) do
    if not covered(iv, tonumber(f)) then drop[#drop + 1] = f end
  end
  if #drop > 0 then push_all('HDEL', KA, drop) end
end

local function turn_id(js)
  local id = string.match(js, '^{"turn_id":"([^"\\]*)"')
  if id then return id end
  local ok, obj = pcall(cjson.decode, js)
  if ok and type(obj) == 'table' and type(obj.turn_id) == 'string' then return obj.turn_id end
  return nil
end

-- a stored turn's cost. Turns are written with "cost" after every field that can
-- hold an object (only model and provider, plain strings, follow it), so the last
-- unescaped "cost" key is the turn's own: a pattern, ~50x cheaper than decoding.
local function turn_cost(js)
  local c = tonumber(string.match(js, '.*,"cost":([^,}]+)'))
  if c then return c end
  local ok, obj = pcall(cjson.decode, js)
  if ok and type(obj) == 'table' then return tonumber(obj.cost) end
  return nil
end

-- turn_id/seq pairs of jsons; nil and the bad seq when a document has no id
local function id_pairs(seqs, jsons)
  local flat = {}
  for j, js in ipairs(jsons) do
    local id = turn_id(js)
    if not id then return nil, seqs[j] end
    flat[#flat + 1] = id
    flat[#flat + 1] = int(seqs[j])
  end
  return flat
end

-- replace the live structures (seqs ascending, aligned with jsons)
local function write_live(seqs, jsons, ids)
  redis.call('DEL', KT, KR, KI)
  if #jsons == 0 then return end
  push_all('RPUSH', KT, jsons)
  local texts = {}
  for j, r in ipairs(compress(seqs)) do texts[j] = int(r[1]) .. ':' .. int(r[2]) end
  push_all('RPUSH', KR, texts)
  hset_pairs(KI, ids)
end

-- the turns a checkpoint names, with their seqs (nil seqs for inline turns);
-- returns nil, bad_seq when a named turn is missing from the log
local function checkpoint_turns(cpid, data, live_map)
  local text = redis.call('HGET', KK, cpid)
  if not text then return data.it or {}, nil end
  local seqs = expand(parse_ranges(text))
  local out = {}
  for j, s in ipairs(seqs) do
    local js = live_map[s] or redis.call('HGET', KA, int(s))
    if not js then return nil, s end
    out[j] = js
  end
  return out, seqs
end

local function live_map()
  local seqs, jsons = live_turns()
  local m = {}
  for j, s in ipairs(seqs) do m[s] = jsons[j] end
  return m
end

local function apply_patch(h, upd, patch)
  if patch == '' then return end
  for f, v in pairs(cjson.decode(patch)) do
    if v == false then
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
"""

# ARGV: now, header-json, k, then k (turn_id, json) pairs. Refuses an existing or
# tombstoned id.
_CREATE = r"""
if redis.call('EXISTS', KH) == 1 then return fail('EXISTS') end
local tomb = redis.call('GET', KX)
if tomb then
  if tonumber(tomb) > NOW then return fail('EXISTS') end
  redis.call('DEL', KX)
end
local fields = cjson.decode(ARGV[2])
local flat = {}
for f, v in pairs(fields) do flat[#flat + 1] = f; flat[#flat + 1] = v end
local k = tonumber(ARGV[3])
local seqs, jsons, ids = {}, {}, {}
for j = 1, k do
  seqs[j] = j
  jsons[j] = ARGV[3 + 2 * j]
  ids[#ids + 1] = ARGV[2 + 2 * j]
  ids[#ids + 1] = int(j)
end
redis.call('DEL', KT, KR, KI, KA, KC, KD, KK, KB, KP)
hset_pairs(KH, flat)
write_live(seqs, jsons, ids)
return reply_h(fields)
"""

# ARGV: now, header-json, k, pairs. Insert or replace a whole session (compat path).
_SAVE = r"""
local tomb = redis.call('GET', KX)
if tomb then
  if tonumber(tomb) > NOW then return fail('NF') end
  redis.call('DEL', KX)
end
local old, bad = hmap(KH)
if bad then return wrong_type() end
local fields = cjson.decode(ARGV[2])
local k = tonumber(ARGV[3])
local base = 0
if old then
  base = tonumber(old.ls or '0') or 0
  fields.o = old.o
  fields.cq = old.cq
  fields.fs = old.fs
end
fields.ls = int(base + k)
local seqs, jsons, ids = {}, {}, {}
for j = 1, k do
  seqs[j] = base + j
  jsons[j] = ARGV[3 + 2 * j]
  ids[#ids + 1] = ARGV[2 + 2 * j]
  ids[#ids + 1] = int(base + j)
end
if old then
  local oseqs, ojsons = live_turns()
  retire(oseqs, ojsons, coverage())
else
  redis.call('DEL', KT, KR, KI, KA, KC, KD, KK, KB, KP)
end
redis.call('DEL', KH)
local flat = {}
for f, v in pairs(fields) do flat[#flat + 1] = f; flat[#flat + 1] = v end
hset_pairs(KH, flat)
write_live(seqs, jsons, ids)
if old then gc_archive() end
return cjson.encode({new = (old == nil), u = old and old.u or nil, ps = old and old.ps or nil})
"""

# ARGV: now, deadline|'', max_turns|'', k, tokens, costs "c1,c2,...", patch|'', then k pairs.
_APPEND = r"""
local h, err = header()
if not h then return err end
local n = tonumber(h.n)
local k = tonumber(ARGV[4])
local st = effective(h)
local cap = nil
if ARGV[3] ~= '' then
  cap = tonumber(ARGV[3])
  if n >= cap or n + k > cap then return fail('CHK', st, h.n) end
end
if st ~= 'active' then return fail('CHK', st, h.n) end
local seen = {}
for j = 0, k - 1 do
  local tid = ARGV[8 + 2 * j]
  if seen[tid] or redis.call('HEXISTS', KI, tid) == 1 then return fail('DUP', tid) end
  seen[tid] = true
end
-- exact while below 2**53 (a double sum past it is >= 2**53: refused, never rounded)
local tokens = tonumber(h.tt) + tonumber(ARGV[5])
if tokens > MAX_SAFE then return fail('VAL', 'total_tokens', 'exceeds 2**53-1') end
-- costs added one turn at a time, oldest first (the total is a sum over the live turns)
local cost = tonumber(h.tc)
for c in string.gmatch(ARGV[6], '[^,]+') do cost = cost + tonumber(c) end
if cost ~= cost or cost >= math.huge or cost < 0 then
  return fail('VAL', 'total_cost', 'not a finite number >= 0')
end
local first = (tonumber(h.ls or '0') or 0) + 1
local last = first + k - 1
local count = n + k
KEEP_FAST = n > 0 or k == 0
local upd = {'n', int(count), 'tt', int(tokens), 'tc', num(cost), 'ua', stamp(h),
             'ls', int(last)}
apply_patch(h, upd, ARGV[7])
local closed = cap ~= nil and count >= cap
if closed then
  upd[#upd + 1] = 's'
  upd[#upd + 1] = 'closed'
end
set_deadline(h, upd, ARGV[2], not closed)
if k > 0 then
  local jsons, ids = {}, {}
  for j = 0, k - 1 do
    jsons[j + 1] = ARGV[9 + 2 * j]
    ids[#ids + 1] = ARGV[8 + 2 * j]
    ids[#ids + 1] = int(first + j)
  end
  push_all('RPUSH', KT, jsons)
  hset_pairs(KI, ids)
  local tail = redis.call('LINDEX', KR, -1)
  local a, b = nil, nil
  if tail then a, b = string.match(tail, '^(%d+):(%d+)$') end
  if b and tonumber(b) == first - 1 then
    redis.call('LSET', KR, -1, a .. ':' .. int(last))
  else
    redis.call('RPUSH', KR, int(first) .. ':' .. int(last))
  end
end
commit(h, upd)
return reply_h(h, ',"f":' .. int(first) .. ',"c":' .. (closed and 'true' or 'false'))
"""

# ARGV: now, deadline|'', patch.
_UPDATE = r"""
local h, err = header()
if not h then return err end
local st, err2 = writable(h)
if not st then return err2 end
local upd = {'ua', stamp(h)}
KEEP_FAST = true
apply_patch(h, upd, ARGV[3])
set_deadline(h, upd, ARGV[2], true)
commit(h, upd)
return reply_h(h)
"""

# ARGV: now, deadline|'', to_status, allowed (comma separated).
_TRANSITION = r"""
local h, err = header()
if not h then return err end
local cur = effective(h)
local to = ARGV[3]
if cur == 'expired' and to ~= 'expired' then return fail('CHK', cur, h.n) end
local ok = false
for s in string.gmatch(ARGV[4], '[^,]+') do if s == cur then ok = true end end
if not ok then return fail('TR', cur, to) end
local upd = {'s', to, 'ua', stamp(h)}
set_deadline(h, upd, ARGV[2], LIVE[to])
commit(h, upd)
return reply_h(h)
"""

# ARGV: now, deadline|''. Ends the newest live turn's liveness.
_POP = r"""
local h, err = header()
if not h then return err end
local st, err2 = writable(h)
if not st then return err2 end
if st == 'suspended' then return fail('TR', 'suspended', 'active') end
local js = redis.call('LINDEX', KT, -1)
if not js then return '{"t":null}' end
local ok, obj = pcall(cjson.decode, js)
if not ok or type(obj) ~= 'table' or type(obj.turn_id) ~= 'string' then
  return fail('CORRUPT', 'turn', 'last')
end
local tail = redis.call('LINDEX', KR, -1)
local a, b = nil, nil
if tail then a, b = string.match(tail, '^(%d+):(%d+)$') end
if not b then return fail('CORRUPT', 'ranges', '') end
local seq = tonumber(b)
-- the cost total again as the sum over the turns still live, oldest first (as
-- appends built it), so it stays exactly that sum; tokens are exact integers
local cost = 0.0
for _, rest in ipairs(redis.call('LRANGE', KT, 0, -2)) do
  local c = turn_cost(rest)
  if not c then return fail('CORRUPT', 'turn', 'no cost') end
  cost = cost + c
end
redis.call('RPOP', KT)
if tonumber(a) == seq then
  redis.call('RPOP', KR)
else
  redis.call('LSET', KR, -1, a .. ':' .. int(seq - 1))
end
redis.call('HDEL', KI, obj.turn_id)
local tokens = math.max(tonumber(h.tt) - (tonumber(obj.tokens_used) or 0), 0)
local upd = {'n', int(tonumber(h.n) - 1), 'tt', int(tokens), 'tc', num(cost), 'ua', stamp(h)}
set_deadline(h, upd, ARGV[2], true)
commit(h, upd)
retire({seq}, {js}, coverage())
return reply_h(h, ',"t":' .. js)
"""

# ARGV: now, deadline|''. Ends every live turn's liveness.
_CLEAR = r"""
local h, err = header()
if not h then return err end
local st, err2 = writable(h)
if not st then return err2 end
if st == 'suspended' then return fail('TR', 'suspended', 'active') end
local seqs, jsons = live_turns()
retire(seqs, jsons, coverage())
redis.call('DEL', KT, KR, KI)
local upd = {'n', '0', 'tt', '0', 'tc', '0.0', 'ua', stamp(h)}
set_deadline(h, upd, ARGV[2], true)
commit(h, upd)
return reply_h(h, ',"n":' .. int(#jsons))
"""

# ARGV: now.
_RECORD = r"""
local h, bad = hmap(KH)
if bad then return wrong_type() end
if not h then return '{}' end
return reply_h(h)
"""

# ARGV: now, mode ('last'|'after'), K or S ('' = none), limit|''.
_TURNS = r"""
if redis.call('EXISTS', KH) == 0 then return fail('NF') end
if ARGV[2] == 'last' then
  local want = tonumber(ARGV[3])
  if want <= 0 then return '{}' end
  return with_turns('{}', redis.call('LRANGE', KT, -want, -1))
end
local rs = live_ranges()
local idx = 0
if ARGV[3] ~= '' then
  local s = tonumber(ARGV[3])
  for _, r in ipairs(rs) do
    if s >= r[2] then
      idx = idx + r[2] - r[1] + 1
    else
      if s >= r[1] then idx = idx + s - r[1] + 1 end
      break
    end
  end
end
local stop = -1
if ARGV[4] ~= '' then
  local limit = tonumber(ARGV[4])
  if limit <= 0 then return '{"i":0,"r":""}' end
  stop = idx + limit - 1
end
local items = redis.call('LRANGE', KT, idx, stop)
return with_turns('{"i":' .. int(idx) .. ',"r":"' .. ranges_text(rs) .. '"}', items)
"""

# ARGV: now, checkpoint id, metadata-json, max|'', include_turns ('1'|'0').
_CP_CREATE = r"""
local h, err = header()
if not h then return err end
local cpid = ARGV[2]
if redis.call('HEXISTS', KD, cpid) == 1 then return fail('CPEX') end
local rtext = ranges_text(live_ranges())
local snap = {}
for f, v in pairs(h) do snap[f] = v end
snap.s = effective(h)
snap.cp = cpid
local data = cjson.encode({sid = h.id, h = snap, ca = NOW_S, p = h.cp, m = ARGV[3], r = rtext})
local ord = redis.call('HINCRBY', KH, 'cq', 1)
redis.call('ZADD', KC, ord, cpid)
redis.call('HSET', KD, cpid, data)
redis.call('HSET', KK, cpid, rtext)
redis.call('HSET', KH, 'cp', cpid)
local pruned = {}
if ARGV[4] ~= '' then
  local extra = redis.call('ZCARD', KC) - tonumber(ARGV[4])
  if extra > 0 then
    pruned = redis.call('ZRANGE', KC, 0, extra - 1)
    push_all('ZREM', KC, pruned)
    push_all('HDEL', KD, pruned)
    push_all('HDEL', KK, pruned)
    gc_archive()
  end
end
local turns = {}
if ARGV[5] == '1' then turns = redis.call('LRANGE', KT, 0, -1) end
return with_turns('{"d":' .. data .. ',"p":' .. str_list(pruned) .. '}', turns)
"""

# ARGV: now, session-id, checkpoint-json, checkpoint-id. Store a whole checkpoint (compat).
_CP_SAVE = r"""
local cpid = ARGV[4]
if redis.call('ZSCORE', KC, cpid) == false then
  local top = redis.call('ZRANGE', KC, -1, -1, 'WITHSCORES')
  local ord = 1
  if top[2] then ord = tonumber(top[2]) + 1 end
  local cq = tonumber(redis.call('HGET', KH, 'cq') or '0') or 0
  if cq >= ord then ord = cq + 1 end
  if redis.call('EXISTS', KH) == 1 then redis.call('HSET', KH, 'cq', int(ord)) end
  redis.call('ZADD', KC, ord, cpid)
end
redis.call('HSET', KD, cpid, ARGV[3])
redis.call('HDEL', KK, cpid)
gc_archive()
return '{}'
"""

# ARGV: now, checkpoint id, include_turns.
_CP_LOAD = r"""
local raw = redis.call('HGET', KD, ARGV[2])
if not raw then return '{}' end
local turns = {}
if ARGV[3] == '1' then
  local t, bad = checkpoint_turns(ARGV[2], cjson.decode(raw), live_map())
  if not t then return fail('CORRUPT', 'turn log', int(bad)) end
  turns = t
end
return with_turns('{"d":' .. raw .. '}', turns)
"""

# ARGV: now, include_turns.
_CP_LIST = r"""
-- ordered by creation time, ties by the order they were stored in
local flat = redis.call('ZRANGE', KC, 0, -1, 'WITHSCORES')
local entries = {}
for j = 1, #flat, 2 do
  local raw = redis.call('HGET', KD, flat[j])
  if raw then
    local ok, data = pcall(cjson.decode, raw)
    if not ok or type(data) ~= 'table' then return fail('CORRUPT', 'checkpoint', flat[j]) end
    entries[#entries + 1] = {flat[j], raw, tonumber(data.ca) or 0, tonumber(flat[j + 1]), data}
  end
end
table.sort(entries, function(x, y)
  if x[3] ~= y[3] then return x[3] < y[3] end
  return x[4] < y[4]
end)
local parts, lists = {}, {}
local lm = nil
for _, e in ipairs(entries) do
  local cpid, raw = e[1], e[2]
  local turns = {}
  if ARGV[2] == '1' then
    lm = lm or live_map()
    local t, bad = checkpoint_turns(cpid, e[5], lm)
    if not t then return fail('CORRUPT', 'turn log', int(bad)) end
    turns = t
  end
  parts[#parts + 1] = '{"i":' .. cjson.encode(cpid) .. ',"d":' .. raw .. '}'
  lists[#lists + 1] = turns
end
-- {meta, turns of the 1st checkpoint (array), turns of the 2nd, ...}
return with_turns('{"l":' .. json_list(parts) .. '}', lists)
"""

# ARGV: now, checkpoint id.
_CP_DELETE = r"""
local raw = redis.call('HGET', KD, ARGV[2])
if not raw then return '{"ok":false}' end
local data = cjson.decode(raw)
redis.call('ZREM', KC, ARGV[2])
redis.call('HDEL', KD, ARGV[2])
redis.call('HDEL', KK, ARGV[2])
if redis.call('HGET', KH, 'cp') == ARGV[2] then
  if data.p then redis.call('HSET', KH, 'cp', data.p) else redis.call('HDEL', KH, 'cp') end
end
gc_archive()
return '{"ok":true}'
"""

# ARGV: now, checkpoint id, deadline|''.
_CP_RESTORE = r"""
local cpid = ARGV[2]
local raw = redis.call('HGET', KD, cpid)
if not raw then return fail('CPNF') end
local h, err = header()
if not h then return err end
local st, err2 = writable(h)
if not st then return err2 end
local data = cjson.decode(raw)
local cseqs, cjsons = live_turns()
local lm = {}
for j, s in ipairs(cseqs) do lm[s] = cjsons[j] end
local jsons, seqs = checkpoint_turns(cpid, data, lm)
if not jsons then return fail('CORRUPT', 'turn log', int(seqs)) end
local ls = tonumber(h.ls or '0') or 0
local from_archive = {}
if seqs then
  for _, s in ipairs(seqs) do if not lm[s] then from_archive[#from_archive + 1] = int(s) end end
else
  seqs = {}
  for j = 1, #jsons do seqs[j] = ls + j end
  ls = ls + #jsons
end
local ids, bad = id_pairs(seqs, jsons)
if not ids then return fail('CORRUPT', 'turn', int(bad)) end
local keep = {}
for _, s in ipairs(seqs) do keep[s] = true end
local gone_s, gone_j = {}, {}
for j, s in ipairs(cseqs) do
  if not keep[s] then gone_s[#gone_s + 1] = s; gone_j[#gone_j + 1] = cjsons[j] end
end
retire(gone_s, gone_j, coverage())
if #from_archive > 0 then push_all('HDEL', KA, from_archive) end
write_live(seqs, jsons, ids)
local src = data.h or {}
local upd = {'s', 'active', 'cp', cpid, 'n', int(#jsons), 'ua', stamp(h), 'ls', int(ls)}
for _, f in ipairs({'m', 'ta', 'sk', 'v', 'tt', 'tc'}) do
  if src[f] then upd[#upd + 1] = f; upd[#upd + 1] = src[f] end
end
if src.sp then
  upd[#upd + 1] = 'sp'; upd[#upd + 1] = src.sp
elseif h.sp then
  redis.call('HDEL', KH, 'sp'); h.sp = nil
end
set_deadline(h, upd, ARGV[3], true)
commit(h, upd)
return with_turns(reply_h(h), jsons)
"""

# ARGV: now, branch id, max_branches|'', checkpoint id|'', wall-clock µs.
# Reserves the branch slot and reads the fork point in one step.
_FORK_SOURCE = r"""
local h, err = header()
if not h then return err end
local mine = redis.call('ZSCORE', KB, ARGV[2])
if ARGV[3] ~= '' and not mine then
  local count = redis.call('ZCARD', KB)
  if count >= tonumber(ARGV[3]) then return fail('CAPB', int(count)) end
end
local point, turns = h, nil
if ARGV[4] ~= '' then
  local raw = redis.call('HGET', KD, ARGV[4])
  if not raw then return fail('CPNF') end
  local data = cjson.decode(raw)
  point = data.h or {}
  local bad
  turns, bad = checkpoint_turns(ARGV[4], data, live_map())
  if not turns then return fail('CORRUPT', 'turn log', int(bad)) end
else
  turns = redis.call('LRANGE', KT, 0, -1)
end
if not mine then
  local top = redis.call('ZRANGE', KB, -1, -1, 'WITHSCORES')
  local ord = 1
  if top[2] then ord = tonumber(top[2]) + 1 end
  redis.call('ZADD', KB, ord, ARGV[2])
end
redis.call('HSET', KP, ARGV[2], ARGV[5])
return with_turns(reply_h(point), turns)
"""

# ARGV: now, branch id, wall-clock µs. Index a branch under its parent (no limit).
_BRANCH_ADD = r"""
if not redis.call('ZSCORE', KB, ARGV[2]) then
  local top = redis.call('ZRANGE', KB, -1, -1, 'WITHSCORES')
  local ord = 1
  if top[2] then ord = tonumber(top[2]) + 1 end
  redis.call('ZADD', KB, ord, ARGV[2])
end
redis.call('HSET', KP, ARGV[2], ARGV[3])
return '{}'
"""

# ARGV: now, branch id. Forget a branch (reservation released or branch removed).
_BRANCH_DROP = r"""
redis.call('ZREM', KB, ARGV[2])
redis.call('HDEL', KP, ARGV[2])
return '{}'
"""

# ARGV: now. Delete every key of the session; report what the indexes must forget.
_DELETE = r"""
local h, bad = hmap(KH)
if bad then h = {} elseif not h then return '{}' end
local cps = redis.call('ZRANGE', KC, 0, -1)
redis.call('DEL', KH, KT, KR, KI, KA, KC, KD, KK, KB, KP)
return '{"u":' .. opt_str(h.u) .. ',"ps":' .. opt_str(h.ps) .. ',"c":' .. str_list(cps) .. '}'
"""

# ARGV: now, tombstone-until µs, safety expiry seconds.
_PURGE = r"""
local h, bad = hmap(KH)
if bad then return wrong_type() end
if not h or (h.s ~= 'closed' and h.s ~= 'expired') then return '{}' end
local cps = redis.call('ZRANGE', KC, 0, -1)
redis.call('DEL', KH, KT, KR, KI, KA, KC, KD, KK, KB, KP)
redis.call('SET', KX, ARGV[2], 'EX', tonumber(ARGV[3]))
return '{"u":' .. opt_str(h.u) .. ',"ps":' .. opt_str(h.ps) .. ',"c":' .. str_list(cps) .. '}'
"""

# ARGV: now. Store EXPIRED when the session is still stored live and past its deadline.
_MARK_EXPIRED = r"""
local h, bad = hmap(KH)
if bad then return wrong_type() end
if h and not VALID[h.s] then return fail('CORRUPT', 'status', h.s) end
if h and h.ex and not tonumber(h.ex) then return fail('CORRUPT', 'expires_at', h.ex) end
if not h or not LIVE[h.s] or not h.ex or tonumber(h.ex) > NOW then return '{}' end
for _, f in ipairs({'m', 'v', 'ta', 'sk'}) do
  if h[f] and not pcall(cjson.decode, h[f]) then return fail('CORRUPT', f, 'invalid JSON') end
end
redis.call('HSET', KH, 's', 'expired')
redis.call('HDEL', KH, 'ex')
h.s = 'expired'
h.ex = nil
return reply_h(h)
"""

# User slot. KEYS: sessions zset, live zset, ordinal counter.
# ARGV: wall µs, session id, cap|'', live ('1'|'0'). Reserve a place for a new session.
# KEYS[4], when given, records the ordinal of this operation (a re-sent reserve
# answers it again instead of 'DUP').
_RESERVE = r"""
if KEYS[4] then
  local prev = redis.call('GET', KEYS[4])
  if prev then return prev end
end
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 'DUP' end
if ARGV[3] ~= '' and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 'CAP' end
local o = redis.call('INCR', KEYS[3])
redis.call('ZADD', KEYS[1], o, ARGV[2])
if ARGV[4] == '1' then redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2]) end
if KEYS[4] then redis.call('SET', KEYS[4], tostring(o), 'PX', OP_TTL_MS) end
return tostring(o)
"""

# Replays of scripts whose reply carries turns: the record holds the reply's
# first element (the JSON meta); the turns are read again from the checkpoint.
_CP_CREATE_REPLAY = r"""
local function replay(prev)
  if ARGV[5] ~= '1' or string.sub(prev, 1, 5) ~= '{"d":' then return with_turns(prev, {}) end
  local raw = redis.call('HGET', KD, ARGV[2])
  local turns = raw and checkpoint_turns(ARGV[2], cjson.decode(raw), live_map()) or {}
  return with_turns(prev, turns)
end
"""

_CP_RESTORE_REPLAY = r"""
local function replay(prev)
  if string.sub(prev, 1, 5) ~= '{"h":' then return prev end
  local raw = redis.call('HGET', KD, ARGV[2])
  local turns = raw and checkpoint_turns(ARGV[2], cjson.decode(raw), live_map()) or {}
  return with_turns(prev, turns)
end
"""

_DEFAULT_REPLAY = r"""
local function replay(prev) return prev end
"""

# Runs a write script's body exactly once per operation id: KO (KEYS[12]) holds
# the reply of the first run for OP_TTL_MS; a re-sent call answers it again. Then
# every key of the session gets the storage-level expiry (when GRACE is given).
_OP_EPILOGUE = r"""
local function keep_keys()
  if not GRACE then return end
  local f = redis.pcall('HMGET', KH, 's', 'ex')
  if f.err then return end
  local ms
  if LIVE[f[1]] and f[2] then
    ms = math.max(math.floor((tonumber(f[2]) - NOW) / 1000), 0) + GRACE
  elseif f[1] == 'closed' or f[1] == 'expired' then
    ms = GRACE
  else
    return
  end
  if KEEP_FAST then
    local cur = redis.call('PTTL', KH)
    if cur > 0 and cur <= ms and cur > ms - KEEP_SLACK_MS then return end
  end
  for _, key in ipairs({KH, KT, KR, KI, KA, KC, KD, KK, KB, KP}) do
    redis.call('PEXPIRE', key, ms)
  end
end

if KO then
  local prev = redis.call('GET', KO)
  if prev then return replay(prev) end
end
local r = body()
if KO then
  local rec = r
  if type(r) == 'table' then rec = r[1] end
  redis.call('SET', KO, rec, 'PX', OP_TTL_MS)
end
if not FAILED then keep_keys() end
return r
"""

_SESSION_SCRIPTS = {
    "create": _CREATE,
    "save": _SAVE,
    "append": _APPEND,
    "update": _UPDATE,
    "transition": _TRANSITION,
    "pop": _POP,
    "clear": _CLEAR,
    "record": _RECORD,
    "turns": _TURNS,
    "cp_create": _CP_CREATE,
    "cp_save": _CP_SAVE,
    "cp_load": _CP_LOAD,
    "cp_list": _CP_LIST,
    "cp_delete": _CP_DELETE,
    "cp_restore": _CP_RESTORE,
    "fork_source": _FORK_SOURCE,
    "branch_add": _BRANCH_ADD,
    "branch_drop": _BRANCH_DROP,
    "delete": _DELETE,
    "purge": _PURGE,
    "mark_expired": _MARK_EXPIRED,
}

#: Scripts that write: run once per operation id (see ``_OP_EPILOGUE``).
WRITE_SCRIPTS = frozenset(
    {
        "create",
        "save",
        "append",
        "update",
        "transition",
        "pop",
        "clear",
        "cp_create",
        "cp_save",
        "cp_delete",
        "cp_restore",
        "fork_source",
        "branch_add",
        "branch_drop",
        "delete",
        "purge",
        "mark_expired",
    }
)

#: How long the reply of a write stays recorded for a re-sent call (ms).
OP_TTL_MS = 300_000

_REPLAYS = {"cp_create": _CP_CREATE_REPLAY, "cp_restore": _CP_RESTORE_REPLAY}
_OP_TTL = f"local OP_TTL_MS = {OP_TTL_MS}\n"


def _session_script(name: str, body: str) -> str:
    if name not in WRITE_SCRIPTS:
        return SESSION_PRELUDE + body
    replay = _REPLAYS.get(name, _DEFAULT_REPLAY)
    return (
        SESSION_PRELUDE
        + _OP_TTL
        + replay
        + "local function body()\n"
        + body
        + "\nend\n"
        + _OP_EPILOGUE
    )


#: Every script's full source by name (session scripts carry the shared prelude).
SCRIPTS: dict[str, str] = {
    **{name: _session_script(name, body) for name, body in _SESSION_SCRIPTS.items()},
    "reserve": _OP_TTL + _RESERVE,
}
