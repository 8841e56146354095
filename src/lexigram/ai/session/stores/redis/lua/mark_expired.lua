
local h, bad = hmap(KH)
if bad then return wrong_type() end
if h and not VALID[h.s] then return fail('CORRUPT', 'status', h.s) end
if h and h.ex and not tonumber(h.ex) then return fail('CORRUPT', 'expires_at', h.ex) end
if not h or not LIVE[h.s] or not h.ex or tonumber(h.ex) > NOW then return '{}' end
for _, f in ipairs({'m', 'v', 'ta', 'sk'}) do
  local v = h[f]
  -- '{}' and '[]' (the usual values) need no parse
  if v and v ~= '{}' and v ~= '[]' and not pcall(cjson.decode, v) then
    return fail('CORRUPT', f, 'invalid JSON')
  end
end
redis.call('HSET', KH, 's', 'expired')
redis.call('HDEL', KH, 'ex')
h.s = 'expired'
h.ex = nil
return reply_h(h)
