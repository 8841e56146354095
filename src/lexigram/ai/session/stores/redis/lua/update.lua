
local h, err = header()
if not h then return err end
-- a patch for one user's session ("ow"): refused as missing when the id holds another's
local OW = ARGV[3] ~= '' and string.find(ARGV[3], '"ow"', 1, true) and cjson.decode(ARGV[3]).ow
if OW and h.u ~= OW then return fail('NF') end
-- a patch sealed under a data key ("kg"): refused when the session is under another
local KG = ARGV[3] ~= '' and string.find(ARGV[3], '"kg"', 1, true) and cjson.decode(ARGV[3]).kg
if KG and not string.find(h.m or '', '"' .. KG .. '"', 1, true) then return fail('KEY') end
local st, err2 = writable(h)
if not st then return err2 end
local upd = {'ua', stamp(h)}
KEEP_FAST = true
apply_patch(h, upd, ARGV[3])
set_deadline(h, upd, ARGV[2], true)
commit(h, upd)
return reply_h(h)
