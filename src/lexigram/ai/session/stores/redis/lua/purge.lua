-- only the fields the reply names: cheaper for Redis than the whole header (HGETALL)
local f = redis.pcall('HMGET', KH, 's', 'u', 'ps', 'o')
if f.err then return wrong_type() end
if f[1] ~= 'closed' and f[1] ~= 'expired' then return '{}' end
local cps = redis.call('ZRANGE', KC, 0, -1)
redis.call('DEL', KH, KT, KR, KI, KA, KC, KD, KK, KB, KP)
drop_replies()
REMOVED = true
redis.call('SET', KX, ARGV[2], 'EX', tonumber(ARGV[3]))
-- a missing field is false in Lua; opt_str wants nil
return '{"u":' .. opt_str(f[2] or nil) .. ',"ps":' .. opt_str(f[3] or nil)
  .. ',"o":' .. opt_str(f[4] or nil) .. ',"c":' .. str_list(cps) .. '}'
