
-- Given an op, only that fork's own reservation is dropped (not a winner's of the id).
if ARGV[3] then
  local owner = string.match(redis.call('HGET', KP, ARGV[2]) or '', '^%d+|(.+)$')
  if owner ~= ARGV[3] then return '{}' end
end
redis.call('ZREM', KB, ARGV[2])
redis.call('HDEL', KP, ARGV[2])
return '{}'
