
local h, err = header()
if not h then return err end
local st, err2 = writable(h)
if not st then return err2 end
local upd = {'ua', stamp(h)}
KEEP_FAST = true
apply_patch(h, upd, ARGV[3])
set_deadline(h, upd, ARGV[2], true)
commit(h, upd)
return reply_h(h)
