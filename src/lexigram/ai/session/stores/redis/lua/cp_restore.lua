
local cpid = ARGV[2]
local raw = redis.call('HGET', KD, cpid)
if not raw then return fail('CPNF') end
local h, err = header()
if not h then return err end
local st, err2 = writable(h)
if not st then return err2 end
local data, refused = cp_doc(cpid, raw)
if not data then return refused end
-- the fields restored from the checkpoint's header are checked as the session's are
local bad, why = header_damage(data.h)
if bad then return cp_bad(cpid, bad, why) end
local cseqs, cjsons = live_turns()
local lm = {}
for j, s in ipairs(cseqs) do lm[s] = cjsons[j] end
local jsons, seqs = checkpoint_turns(cpid, data, lm)
if not jsons then return seqs end
local ls = tonumber(h.ls or '0') or 0
local from_archive = {}
if seqs then
  for _, s in ipairs(seqs) do if not lm[s] then from_archive[#from_archive + 1] = int(s) end end
else
  seqs = {}
  for j = 1, #jsons do seqs[j] = ls + j end
  ls = ls + #jsons
end
local ids, bad = id_pairs(seqs, jsons)
if not ids then return fail('CORRUPT', 'turn', int(bad)) end
local keep = {}
for _, s in ipairs(seqs) do keep[s] = true end
local gone_s, gone_j = {}, {}
for j, s in ipairs(cseqs) do
  if not keep[s] then gone_s[#gone_s + 1] = s; gone_j[#gone_j + 1] = cjsons[j] end
end
retire(gone_s, gone_j, coverage())
if #from_archive > 0 then push_all('HDEL', KA, from_archive) end
write_live(seqs, jsons, ids)
local src = data.h
local upd = {'s', 'active', 'cp', cpid, 'n', int(#jsons), 'ua', stamp(h), 'ls', int(ls)}
for _, f in ipairs({'m', 'ta', 'sk', 'v', 'tt', 'tc'}) do
  if src[f] then upd[#upd + 1] = f; upd[#upd + 1] = src[f] end
end
if src.sp then
  upd[#upd + 1] = 'sp'; upd[#upd + 1] = src.sp
elseif h.sp then
  redis.call('HDEL', KH, 'sp'); h.sp = nil
end
set_deadline(h, upd, ARGV[3], true)
commit(h, upd)
return with_turns(reply_h(h), jsons)
