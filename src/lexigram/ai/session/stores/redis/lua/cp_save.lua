
-- A purged session's id is refused while its tombstone lasts: a late copy of one of
-- its checkpoints would bring its turns back.
local tomb = redis.call('GET', KX)
if tomb then
  if tonumber(tomb) > NOW then return fail('NF') end
  redis.call('DEL', KX)
end
local cpid = ARGV[4]
if redis.call('ZSCORE', KC, cpid) == false then
  local top = redis.call('ZRANGE', KC, -1, -1, 'WITHSCORES')
  local ord = 1
  if top[2] then ord = tonumber(top[2]) + 1 end
  local cq = tonumber(redis.call('HGET', KH, 'cq') or '0') or 0
  if cq >= ord then ord = cq + 1 end
  if redis.call('EXISTS', KH) == 1 then redis.call('HSET', KH, 'cq', int(ord)) end
  redis.call('ZADD', KC, ord, cpid)
end
redis.call('HSET', KD, cpid, ARGV[3])
redis.call('HDEL', KK, cpid)
gc_archive()
return '{}'
