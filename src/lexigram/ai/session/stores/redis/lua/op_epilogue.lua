
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

if KO then
  local prev = redis.call('GET', KO)
  if prev then return replay(prev) end
end
local r = body()
if KO then
  local rec = r
  if type(r) == 'table' then rec = r[1] end
  redis.call('SET', KO, rec, 'PX', OP_TTL_MS)
end
if not FAILED then keep_keys() end
return r
