
local h, err = header()
if not h then return err end
local st, err2 = writable(h)
if not st then return err2 end
if st == 'suspended' then return fail('TR', 'suspended', 'active') end
local seqs, jsons = live_turns()
retire(seqs, jsons, coverage())
redis.call('DEL', KT, KR, KI)
local upd = {'n', '0', 'tt', '0', 'tc', '0.0', 'ua', stamp(h)}
set_deadline(h, upd, ARGV[2], true)
commit(h, upd)
return reply_h(h, ',"n":' .. int(#jsons))
