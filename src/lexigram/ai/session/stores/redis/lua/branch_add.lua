
-- a missing parent gets no index (a session created later starts with no branches)
if redis.call('EXISTS', KH) == 0 then return '{}' end
if not redis.call('ZSCORE', KB, ARGV[2]) then
  local top = redis.call('ZRANGE', KB, -1, -1, 'WITHSCORES')
  local ord = 1
  if top[2] then ord = tonumber(top[2]) + 1 end
  redis.call('ZADD', KB, ord, ARGV[2])
end
redis.call('HSET', KP, ARGV[2], ARGV[3])
return '{}'
