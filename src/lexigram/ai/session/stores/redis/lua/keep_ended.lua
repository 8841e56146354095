
-- The storage-level expiry of an ended (CLOSED/EXPIRED) session's keys moved to at
-- least its end + ARGV[2] ms, when the sweeper keeps ended sessions longer than the
-- expiry they were given (purge_after_s raised, a sweep's own --purge-after). Keys
-- without an expiry (session_ttl 0) and a later expiry are left as they are; live
-- and damaged sessions are left to their writes. Answers 1 when it moved them.
local f = redis.pcall('HMGET', KH, 's', 'ua')
if f.err or (f[1] ~= 'closed' and f[1] ~= 'expired') then return 0 end
local ua = tonumber(f[2])
if not ua then return 0 end
local cur = redis.call('PTTL', KH)
if cur < 0 then return 0 end
local ms = math.floor((ua - NOW) / 1000) + tonumber(ARGV[2])
if ms <= cur then return 0 end
for _, key in ipairs({KH, KT, KR, KI, KA, KC, KD, KK, KB, KP}) do
  redis.call('PEXPIRE', key, ms)
end
return 1
