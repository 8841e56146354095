
-- Records a write's reply for a re-sent call (used by op_epilogue.lua) and indexes it
-- in KQ while the session is stored: deleting the session deletes it. A refusal
-- because the session is missing is not recorded (nothing was applied, and a key
-- named after the session would outlive it); the reply of a script that removed
-- the session is recorded unindexed, and the store deletes it once it has read it.
local function remember(rec)
  if MISSING then return end
  if not REMOVED then
    if redis.call('EXISTS', KH) == 0 then return end
    local ttl_us = OP_TTL_MS * 1000
    redis.call('ZADD', KQ, int(NOW + ttl_us), KO)
    -- the index outlives the last reply it names, not the session's other keys
    redis.call('PEXPIRE', KQ, 2 * OP_TTL_MS)
    -- a key past its expiry (by another OP_TTL, for clock skew) is gone from Redis
    redis.call('ZREMRANGEBYSCORE', KQ, '-inf', '(' .. int(NOW - ttl_us))
  end
  redis.call('SET', KO, rec, 'PX', OP_TTL_MS)
end

-- Sets the storage-level expiry of every key of the session (when GRACE is given):
-- used after a write by op_epilogue.lua and session_batch.lua. Without a GRACE
-- (session_ttl 0: keys never expire) it removes an expiry a write under a TTL set:
-- the header field "kp" says the keys carry none, so that is done once per session
-- (one HMGET otherwise); a write that sets an expiry removes "kp".
local function keep_keys()
  if not GRACE then
    local f = redis.pcall('HMGET', KH, 's', 'kp')
    if f.err or not f[1] or f[2] then return end
    for _, key in ipairs({KH, KT, KR, KI, KA, KC, KD, KK, KB, KP}) do
      redis.call('PERSIST', key)
    end
    redis.call('HSET', KH, 'kp', '1')
    return
  end
  local f = redis.pcall('HMGET', KH, 's', 'ex', 'kp')
  if f.err then return end
  local ms
  local ex = f[2] and tonumber(f[2])
  if LIVE[f[1]] and ex then
    ms = math.max(math.floor((ex - NOW) / 1000), 0) + GRACE
  elseif f[1] == 'closed' or f[1] == 'expired' then
    ms = GRACE
  else
    return
  end
  if KEEP_FAST then
    local cur = redis.call('PTTL', KH)
    if cur > 0 and cur <= ms and cur > ms - KEEP_SLACK_MS then return end
  end
  for _, key in ipairs({KH, KT, KR, KI, KA, KC, KD, KK, KB, KP}) do
    redis.call('PEXPIRE', key, ms)
  end
  if f[3] then redis.call('HDEL', KH, 'kp') end
end
