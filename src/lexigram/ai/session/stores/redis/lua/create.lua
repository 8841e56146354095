
if redis.call('EXISTS', KH) == 1 then return fail('EXISTS') end
local tomb = redis.call('GET', KX)
if tomb then
  if tonumber(tomb) > NOW then return fail('EXISTS') end
  redis.call('DEL', KX)
end
local fields = cjson.decode(ARGV[2])
-- without a TTL the new keys carry no expiry: said in the header ("kp", keep_keys.lua)
if not GRACE then fields.kp = '1' end
-- Checkpoints saved for this id before it existed (an import) stay, numbered on.
local top = redis.call('ZRANGE', KC, -1, -1, 'WITHSCORES')
if top[2] then fields.cq = int(tonumber(top[2])) end
local flat = {}
for f, v in pairs(fields) do flat[#flat + 1] = f; flat[#flat + 1] = v end
local k = tonumber(ARGV[3])
local seqs, jsons, ids = {}, {}, {}
for j = 1, k do
  seqs[j] = j
  jsons[j] = ARGV[3 + 2 * j]
  ids[#ids + 1] = ARGV[2 + 2 * j]
  ids[#ids + 1] = int(j)
end
redis.call('DEL', KT, KR, KI, KA, KB, KP)
hset_pairs(KH, flat)
write_live(seqs, jsons, ids)
return reply_h(fields)
