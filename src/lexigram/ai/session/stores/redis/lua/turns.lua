
if redis.call('EXISTS', KH) == 0 then return fail('NF') end
if ARGV[2] == 'last' then
  local want = tonumber(ARGV[3])
  if want <= 0 then return '{}' end
  return with_turns('{}', redis.call('LRANGE', KT, -want, -1))
end
local rs = live_ranges()
local idx = 0
if ARGV[3] ~= '' then
  local s = tonumber(ARGV[3])
  for _, r in ipairs(rs) do
    if s >= r[2] then
      idx = idx + r[2] - r[1] + 1
    else
      if s >= r[1] then idx = idx + s - r[1] + 1 end
      break
    end
  end
end
local stop = -1
if ARGV[4] ~= '' then
  local limit = tonumber(ARGV[4])
  if limit <= 0 then return '{"i":0,"r":""}' end
  stop = idx + limit - 1
end
local items = redis.call('LRANGE', KT, idx, stop)
return with_turns('{"i":' .. int(idx) .. ',"r":"' .. ranges_text(rs) .. '"}', items)
