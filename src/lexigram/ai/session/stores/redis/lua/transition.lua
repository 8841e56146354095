
local h, err = header()
if not h then return err end
local cur = effective(h)
local to = ARGV[3]
if cur == 'expired' and to ~= 'expired' then return fail('CHK', cur, h.n) end
local ok = false
for s in string.gmatch(ARGV[4], '[^,]+') do if s == cur then ok = true end end
if not ok then return fail('TR', cur, to) end
local upd = {'s', to, 'ua', stamp(h)}
set_deadline(h, upd, ARGV[2], LIVE[to])
commit(h, upd)
return reply_h(h)
