
if KO then
  local prev = redis.call('GET', KO)
  if prev then return replay(prev) end
end
local r = body()
if KO then
  local rec = r
  if type(r) == 'table' then rec = r[1] end
  remember(rec)
end
if not FAILED then keep_keys() end
return r
