
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
