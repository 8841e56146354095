
local raw = redis.call('HGET', KD, ARGV[2])
if not raw then return '{"ok":false}' end
-- a damaged document is deleted too (its parent is then unknown)
local ok, data = pcall(cjson.decode, raw)
if not ok or type(data) ~= 'table' then data = {} end
redis.call('ZREM', KC, ARGV[2])
redis.call('HDEL', KD, ARGV[2])
redis.call('HDEL', KK, ARGV[2])
if redis.call('HGET', KH, 'cp') == ARGV[2] then
  if data.p then redis.call('HSET', KH, 'cp', data.p) else redis.call('HDEL', KH, 'cp') end
end
gc_archive()
return '{"ok":true}'
