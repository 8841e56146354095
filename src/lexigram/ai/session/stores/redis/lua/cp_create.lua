
local h, err = header()
if not h then return err end
-- metadata sealed under a data key (ARGV[6]): refused when the session is under another
if ARGV[6] and ARGV[6] ~= '' and not string.find(h.m or '', '"' .. ARGV[6] .. '"', 1, true) then
  return fail('KEY')
end
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
