
local tomb = redis.call('GET', KX)
if tomb then
  if tonumber(tomb) > NOW then return fail('NF') end
  redis.call('DEL', KX)
end
local old, bad = hmap(KH)
if bad then return wrong_type() end
local fields = cjson.decode(ARGV[2])
-- A live copy saved over a session that ended meanwhile would make it live again.
if old and LIVE[fields.s] then
  local st, refused = writable(old)
  if not st then return refused end
end
-- Saved over a session the caller found indexed (no new ordinal), deleted since: the
-- caller indexes it again and retries, so the new session is listed.
if not old and not fields.o then return fail('GONE') end
-- Moved to another user whose index holds the id already (the caller found it there,
-- so reserved no ordinal): the header would name an ordinal that index does not hold.
if old and old.u ~= fields.u and not fields.o then return fail('HELD') end
local k = tonumber(ARGV[3])
local base = 0
if old then
  base = tonumber(old.ls or '0') or 0
  -- the ordinal the user's index holds: a new one when the caller reserved one (the
  -- session changed user, or its entry was missing), else the stored one
  fields.o = fields.o or old.o
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
  -- Checkpoints saved for this id before it existed (an import) stay, numbered on.
  redis.call('DEL', KT, KR, KI, KA, KB, KP)
  local top = redis.call('ZRANGE', KC, -1, -1, 'WITHSCORES')
  if top[2] then fields.cq = int(tonumber(top[2])) end
end
redis.call('DEL', KH)
local flat = {}
for f, v in pairs(fields) do flat[#flat + 1] = f; flat[#flat + 1] = v end
hset_pairs(KH, flat)
write_live(seqs, jsons, ids)
if old then gc_archive() end
return cjson.encode({new = (old == nil), u = old and old.u or nil, ps = old and old.ps or nil,
  o = fields.o, oo = old and old.o or nil})
