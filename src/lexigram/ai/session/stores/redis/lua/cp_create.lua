
local h, err = header()
if not h then return err end
-- metadata sealed under a data key (ARGV[6]): refused when the session is under another
if ARGV[6] and ARGV[6] ~= '' and not string.find(h.m or '', '"' .. ARGV[6] .. '"', 1, true) then
  return fail('KEY')
end
local cpid = ARGV[2]
if redis.call('HEXISTS', KD, cpid) == 1 then return fail('CPEX') end
-- Never older than the checkpoint it follows: two writers' clocks are read before
-- their scripts run, and the listing (created_at, then the order stored) must keep
-- the chain's order, or retention would drop the newer one.
local ca_num, ca_text = NOW, NOW_S
if h.cp then
  local ok, head = pcall(cjson.decode, redis.call('HGET', KD, h.cp) or 'null')
  local before = ok and type(head) == 'table' and tonumber(head.ca)
  if before and before > NOW then ca_num, ca_text = before, tostring(head.ca) end
end
-- Retention drops the oldest by the listing's order (cp_list.lua): created_at, ties
-- by the order stored (the zset score), the new checkpoint (created now) included.
-- Chosen before any write, so that a damaged record refuses the whole operation.
local pruned = {}
if ARGV[4] ~= '' then
  local count = redis.call('ZCARD', KC)
  if redis.call('ZSCORE', KC, cpid) == false then count = count + 1 end
  local extra = count - tonumber(ARGV[4])
  if extra > 0 then
    local flat = redis.call('ZRANGE', KC, 0, -1, 'WITHSCORES')
    local entries = {}
    for j = 1, #flat, 2 do
      local id, ca = flat[j], nil
      if id ~= cpid then
        local raw = redis.call('HGET', KD, id)
        if raw then
          local ok, data = pcall(cjson.decode, raw)
          if not ok or type(data) ~= 'table' then return cp_bad(id, 'document', 'invalid JSON') end
          ca = tonumber(data.ca) or 0
        else
          ca = -math.huge  -- a listing entry without its record: first to go
        end
        entries[#entries + 1] = {id, ca, tonumber(flat[j + 1])}
      end
    end
    entries[#entries + 1] = {cpid, ca_num, math.huge}
    table.sort(entries, function(x, y)
      if x[2] ~= y[2] then return x[2] < y[2] end
      return x[3] < y[3]
    end)
    for j = 1, extra do pruned[j] = entries[j][1] end
  end
end
local rtext = ranges_text(live_ranges())
local snap = {}
for f, v in pairs(h) do snap[f] = v end
snap.s = effective(h)
snap.cp = cpid
snap.kp = nil  -- the keys' expiry is the session's, not the checkpoint's
local data = cjson.encode({sid = h.id, h = snap, ca = ca_text, p = h.cp, m = ARGV[3], r = rtext})
local ord = redis.call('HINCRBY', KH, 'cq', 1)
redis.call('ZADD', KC, ord, cpid)
redis.call('HSET', KD, cpid, data)
redis.call('HSET', KK, cpid, rtext)
redis.call('HSET', KH, 'cp', cpid)
if #pruned > 0 then
  push_all('ZREM', KC, pruned)
  push_all('HDEL', KD, pruned)
  push_all('HDEL', KK, pruned)
  gc_archive()
end
local turns = {}
if ARGV[5] == '1' then turns = redis.call('LRANGE', KT, 0, -1) end
return with_turns('{"d":' .. data .. ',"p":' .. str_list(pruned) .. '}', turns)
