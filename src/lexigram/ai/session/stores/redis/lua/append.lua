-- The chat path's append, standalone: it runs on every exchange, so it loads none of
-- the shared helpers (session_base.lua) nor the once-per-operation wrapper
-- (op_epilogue.lua, keep_keys.lua) but does what they do for it, with the same
-- checks, refusals, replies and key expiry, and no more Redis calls than it needs.
-- KEYS: header, turns, ranges, ids, reply index, this operation's reply record, then
-- archive, checkpoints, checkpoint docs, checkpoint ranges, branches, reservations,
-- whose expiry it moves with the others: with a grace (ARGV[1] = "now|grace_ms") it
-- sets it; without one (session_ttl 0) it removes one a write under a TTL set, once
-- (the header's "kp" says the keys carry none, as keep_keys.lua).
local NOW_TEXT, GRACE_TEXT = string.match(ARGV[1], '^(-?%d+)|(%d+)$')
local NOW_S = NOW_TEXT or ARGV[1]
local NOW = tonumber(NOW_S)
local KH, KT, KR, KI, KQ, KO = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local fmt = string.format

local prev = redis.call('GET', KO)
if prev then return prev end

-- the reply, recorded for a re-sent call and indexed in KQ (as keep_keys.lua's
-- remember: deleting the session deletes it). KQ outlives the session's last reply
-- (not its other keys), and is pruned when asked.
local function remember(r, prune)
  local ttl_us = OP_TTL_MS * 1000
  redis.call('SET', KO, r, 'PX', OP_TTL_MS)
  redis.call('ZADD', KQ, fmt('%d', NOW + ttl_us), KO)
  redis.call('PEXPIRE', KQ, 2 * OP_TTL_MS)
  if prune then redis.call('ZREMRANGEBYSCORE', KQ, '-inf', fmt('(%d', NOW - ttl_us)) end
end

-- a refusal is recorded like any reply (a re-sent call answers it again), but for a
-- missing session: nothing was applied, and no key may outlive a session it names
local function refuse(code, a, b)
  local r = cjson.encode({e = code, a = a, b = b})
  if code ~= 'NF' then remember(r, true) end
  return r
end

local flat = redis.pcall('HGETALL', KH)
if flat.err then return refuse('CORRUPT', 'header', 'not a hash') end
if #flat == 0 then return refuse('NF') end
local h = {}
for j = 1, #flat, 2 do h[flat[j]] = flat[j + 1] end
-- a write for one user's session ("ow"): the id may now hold another user's session,
-- which is "missing" to this writer (judged first, as on the other backends)
local OW = ARGV[7] ~= '' and string.find(ARGV[7], '"ow"', 1, true) and cjson.decode(ARGV[7]).ow
if OW and h.u ~= OW then return refuse('NF') end
-- a write sealed under a data key ("kg" in the patch): refused, with nothing written,
-- when the session is stored under another one (deleted and created again)
local KG = ARGV[7] ~= '' and string.find(ARGV[7], '"kg"', 1, true) and cjson.decode(ARGV[7]).kg
if KG and not string.find(h.m or '', '"' .. KG .. '"', 1, true) then return refuse('KEY') end
local live = h.s == 'active' or h.s == 'suspended'
if not (live or h.s == 'closed' or h.s == 'expired') then
  return refuse('CORRUPT', 'status', h.s)
end
local n, tt, tc = tonumber(h.n), tonumber(h.tt), tonumber(h.tc)
if not (n and tt and tc) then return refuse('CORRUPT', 'counters', '') end
-- A field the store's decoder rejects refuses the append before it writes (the other
-- writes call header_damage, header_check.lua): the numbers this script parses anyway
-- and a look at the ends of the JSON fields, well under a microsecond; damage only a
-- decoder finds ('{bad}', bytes that are not UTF-8) is found in the reply, after the
-- write, and the store's error says that the append was applied.
local ua_n, ex_n, ca_n = tonumber(h.ua), h.ex and tonumber(h.ex), tonumber(h.ca)
local bad
if h.id == nil or h.id == '' then bad = 'session_id'
elseif h.u == nil or h.u == '' then bad = 'user_id'
elseif not ca_n or ca_n < 0 or ca_n % 1 ~= 0 or ca_n >= HC_MAX_US then bad = 'created_at'
elseif not ua_n or ua_n < 0 or ua_n % 1 ~= 0 or ua_n >= HC_MAX_US then bad = 'updated_at'
elseif tt < 0 or tt % 1 ~= 0 then bad = 'total_tokens'
elseif n < 0 or n % 1 ~= 0 then bad = 'turn_count'
elseif h.ex and (not ex_n or ex_n < 0 or ex_n % 1 ~= 0 or ex_n >= HC_MAX_US) then
  bad = 'expires_at'
elseif tc ~= tc or tc >= math.huge or tc < 0 then bad = 'total_cost'
end
if bad then return refuse('CORRUPT', bad, 'not a number the store can read') end
local why = hc_json(h.m, '{}', 123, 125) if why then return refuse('CORRUPT', 'metadata', why) end
why = hc_json(h.ta, '[]', 91, 93) if why then return refuse('CORRUPT', 'active_tools', why) end
why = hc_json(h.sk, '[]', 91, 93) if why then return refuse('CORRUPT', 'active_skills', why) end
why = hc_json(h.v, '{}', 123, 125) if why then return refuse('CORRUPT', 'variables', why) end
local st = h.s
if live and h.ex and ex_n <= NOW then st = 'expired' end
local k = tonumber(ARGV[4])
local cap = nil
if ARGV[3] ~= '' then
  cap = tonumber(ARGV[3])
  if n >= cap or n + k > cap then return refuse('CHK', st, h.n) end
end
if st ~= 'active' then return refuse('CHK', st, h.n) end
-- duplicates: one HMGET per 1,000 ids (not one HEXISTS each), reported in batch order
local tids, seen = {}, {}
for j = 1, k do tids[j] = ARGV[6 + 2 * j] end
for j = 1, k, 1000 do
  local part = redis.call('HMGET', KI, unpack(tids, j, math.min(j + 999, k)))
  for x = 1, #part do
    local tid = tids[j + x - 1]
    if part[x] or seen[tid] then return refuse('DUP', tid) end
    seen[tid] = true
  end
end
-- exact while below 2**53 (a double sum past it is >= 2**53: refused, never rounded)
-- ('TOT': the store words the refusal from the stored totals, as the other backends)
local tokens = tt + tonumber(ARGV[5])
if tokens > 9007199254740991 then return refuse('TOT', h.tt, h.tc) end
-- costs added one turn at a time, oldest first (the total is a sum over the live turns)
local cost = tc
for c in string.gmatch(ARGV[6], '[^,]+') do cost = cost + tonumber(c) end
if cost ~= cost or cost >= math.huge or cost < 0 then
  return refuse('TOT', h.tt, h.tc)
end
local ls = tonumber(h.ls or '0') or 0
local count = n + k
local last = fmt('%d', ls + k)
-- updated_at is "now", but never before the stored one
local ua = NOW_S
if ua_n > NOW then ua = h.ua end
local upd = {'n', fmt('%d', count), 'tt', fmt('%d', tokens), 'tc', fmt('%.17g', cost), 'ua', ua,
             'ls', last}
if ARGV[7] ~= '' then
  for f, v in pairs(cjson.decode(ARGV[7])) do
    if f == 'kg' or f == 'ow' then  -- the guards, checked above
    elseif v == false then
      if h[f] then redis.call('HDEL', KH, f); h[f] = nil end
    else
      upd[#upd + 1] = f
      upd[#upd + 1] = v
    end
  end
end
local closed = cap ~= nil and count >= cap
if closed then
  upd[#upd + 1] = 's'
  upd[#upd + 1] = 'closed'
end
local deadline = ARGV[2]
-- a live session that had no deadline (created while session_ttl was 0) gets one: the
-- caller enters it in the sweeper's deadline index ("nd")
local nd = false
if not closed and deadline ~= '' then
  nd = not h.ex
  -- nor the deadline
  if h.ex and ex_n > tonumber(deadline) then deadline = h.ex end
  upd[#upd + 1] = 'ex'
  upd[#upd + 1] = deadline
elseif h.ex then
  redis.call('HDEL', KH, 'ex')
  h.ex = nil
end
if k > 0 then
  local jsons, ids = {}, {}
  for j = 1, k do
    jsons[j] = ARGV[7 + 2 * j]
    ids[2 * j - 1] = tids[j]
    ids[2 * j] = fmt('%d', ls + j)
  end
  for j = 1, k, 500 do redis.call('RPUSH', KT, unpack(jsons, j, math.min(j + 499, k))) end
  for j = 1, 2 * k, 1000 do redis.call('HSET', KI, unpack(ids, j, math.min(j + 999, 2 * k))) end
  -- the live seq ranges: the last one grows when it ends where this batch starts
  local tail = redis.call('LINDEX', KR, -1)
  local a, b = nil, nil
  if tail then a, b = string.match(tail, '^(%d+):(%d+)$') end
  if b and tonumber(b) == ls then
    redis.call('LSET', KR, -1, a .. ':' .. last)
  else
    redis.call('RPUSH', KR, fmt('%d', ls + 1) .. ':' .. last)
  end
end
redis.call('HSET', KH, unpack(upd))
for j = 1, #upd, 2 do h[upd[j]] = upd[j + 1] end
local r = '{"h":' .. cjson.encode(h) .. ',"f":' .. fmt('%d', ls + 1) .. ',"c":'
  .. (closed and 'true' or 'false') .. (nd and ',"nd":1' or '') .. '}'
-- the index is pruned about once per 32 turns (k = 0: a patch, rare)
remember(r, k == 0 or math.floor(ls / 32) ~= math.floor((ls + k) / 32))
if not GRACE_TEXT then
  if not h.kp then
    for j = 1, #KEYS do
      if j ~= 5 and j ~= 6 then redis.call('PERSIST', KEYS[j]) end
    end
    redis.call('HSET', KH, 'kp', '1')
  end
  return r
end
-- the storage-level expiry of every key of the session (as keep_keys.lua); when this
-- append created no key (the session had turns, or none were added) it is only
-- moved once it drifted by a minute
local ms = tonumber(GRACE_TEXT)
if h.s ~= 'closed' then
  if not h.ex then return r end
  ms = math.max(math.floor((tonumber(h.ex) - NOW) / 1000), 0) + ms
end
if n > 0 or k == 0 then
  local cur = redis.call('PTTL', KH)
  if cur > 0 and cur <= ms and cur > ms - 60000 then return r end
end
for j = 1, #KEYS do
  if j ~= 5 and j ~= 6 then redis.call('PEXPIRE', KEYS[j], ms) end
end
if h.kp then redis.call('HDEL', KH, 'kp') end
return r
