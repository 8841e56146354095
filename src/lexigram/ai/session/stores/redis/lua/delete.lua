
local h, bad = hmap(KH)
if bad then h = {} elseif not h then return '{}' end
local cps = redis.call('ZRANGE', KC, 0, -1)
redis.call('DEL', KH, KT, KR, KI, KA, KC, KD, KK, KB, KP)
drop_replies()
REMOVED = true
return '{"u":' .. opt_str(h.u) .. ',"ps":' .. opt_str(h.ps) .. ',"o":' .. opt_str(h.o)
  .. ',"c":' .. str_list(cps) .. '}'
