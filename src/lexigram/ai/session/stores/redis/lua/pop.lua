
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
