
local raw = redis.call('HGET', KD, ARGV[2])
if not raw then return '{"ok":false}' end
local data = cjson.decode(raw)
redis.call('ZREM', KC, ARGV[2])
redis.call('HDEL', KD, ARGV[2])
redis.call('HDEL', KK, ARGV[2])
if redis.call('HGET', KH, 'cp') == ARGV[2] then
  if data.p then redis.call('HSET', KH, 'cp', data.p) else redis.call('HDEL', KH, 'cp') end
end
gc_archive()
return '{"ok":true}'
