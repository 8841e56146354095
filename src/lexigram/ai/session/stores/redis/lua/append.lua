
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
-- duplicates: one HMGET per 1,000 ids (not one HEXISTS each), reported in batch order
local tids, stored, seen = {}, {}, {}
for j = 1, k do tids[j] = ARGV[6 + 2 * j] end
for j = 1, k, 1000 do
  local part = redis.call('HMGET', KI, unpack(tids, j, math.min(j + 999, k)))
  for x = 1, #part do stored[j + x - 1] = part[x] end
end
for j = 1, k do
  local tid = tids[j]
  if seen[tid] or stored[j] then return fail('DUP', tid) end
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
