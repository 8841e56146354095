
if KEYS[4] then
  local prev = redis.call('GET', KEYS[4])
  if prev then return prev end
end
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 'DUP' end
if ARGV[3] ~= '' and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 'CAP' end
-- A user's first counter starts at the reservation time in units of 100 µs, not at
-- 1: the counter goes when the user has no session left (user_gc.lua), and ordinals
-- that started over would name a session created again under an ended one's id like
-- the old one (user_unlive.lua tells them apart by ordinal). 14 digits, so that
-- tostring (of older versions of this script) still gives them whole.
local o
if redis.call('EXISTS', KEYS[3]) == 1 then
  o = string.format('%d', redis.call('INCR', KEYS[3]))
else
  o = string.format('%d', math.floor(tonumber(ARGV[1]) / 100))
  redis.call('SET', KEYS[3], o)
end
redis.call('ZADD', KEYS[1], o, ARGV[2])
if ARGV[4] == '1' then redis.call('ZADD', KEYS[2], ARGV[1], ARGV[2]) end
if KEYS[4] then redis.call('SET', KEYS[4], o, 'PX', OP_TTL_MS) end
return o
