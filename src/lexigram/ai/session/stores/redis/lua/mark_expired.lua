
local h, bad = hmap(KH)
if bad then return wrong_type() end
if h and not VALID[h.s] then return fail('CORRUPT', 'status', h.s) end
if h and h.ex and not tonumber(h.ex) then return fail('CORRUPT', 'expires_at', h.ex) end
if not h or not LIVE[h.s] or not h.ex or tonumber(h.ex) > NOW then return '{}' end
-- any field the store could not decode refuses it before it is marked
local bad, why = header_damage(h)
if bad then return fail('CORRUPT', bad, why) end
redis.call('HSET', KH, 's', 'expired')
redis.call('HDEL', KH, 'ex')
h.s = 'expired'
h.ex = nil
return reply_h(h)
