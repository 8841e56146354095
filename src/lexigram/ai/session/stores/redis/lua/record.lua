
local h, bad = hmap(KH)
if bad then return wrong_type() end
if not h then return '{}' end
return reply_h(h)
