
-- Sets the storage-level expiry of every key of the session (when GRACE is given):
-- used after a write by op_epilogue.lua and session_batch.lua.
local function keep_keys()
  if not GRACE then return end
  local f = redis.pcall('HMGET', KH, 's', 'ex')
  if f.err then return end
  local ms
  if LIVE[f[1]] and f[2] then
    ms = math.max(math.floor((tonumber(f[2]) - NOW) / 1000), 0) + GRACE
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
end
