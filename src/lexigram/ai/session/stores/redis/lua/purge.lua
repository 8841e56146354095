
local h, bad = hmap(KH)
if bad then return wrong_type() end
if not h or (h.s ~= 'closed' and h.s ~= 'expired') then return '{}' end
local cps = redis.call('ZRANGE', KC, 0, -1)
redis.call('DEL', KH, KT, KR, KI, KA, KC, KD, KK, KB, KP)
redis.call('SET', KX, ARGV[2], 'EX', tonumber(ARGV[3]))
return '{"u":' .. opt_str(h.u) .. ',"ps":' .. opt_str(h.ps) .. ',"c":' .. str_list(cps) .. '}'
