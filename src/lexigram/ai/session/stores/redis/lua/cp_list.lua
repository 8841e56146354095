
-- ordered by creation time, ties by the order they were stored in
local flat = redis.call('ZRANGE', KC, 0, -1, 'WITHSCORES')
local entries = {}
for j = 1, #flat, 2 do
  local raw = redis.call('HGET', KD, flat[j])
  if raw then
    local data, refused = cp_doc(flat[j], raw)
    if not data then return refused end
    entries[#entries + 1] = {flat[j], raw, tonumber(data.ca) or 0, tonumber(flat[j + 1]), data}
  end
end
table.sort(entries, function(x, y)
  if x[3] ~= y[3] then return x[3] < y[3] end
  return x[4] < y[4]
end)
local parts, lists = {}, {}
local lm = nil
for _, e in ipairs(entries) do
  local cpid, raw = e[1], e[2]
  local turns = {}
  if ARGV[2] == '1' then
    lm = lm or live_map()
    local t, bad = checkpoint_turns(cpid, e[5], lm)
    if not t then return bad end
    turns = t
  end
  parts[#parts + 1] = '{"i":' .. cjson.encode(cpid) .. ',"d":' .. raw .. '}'
  lists[#lists + 1] = turns
end
-- {meta, turns of the 1st checkpoint (array), turns of the 2nd, ...}
return with_turns('{"l":' .. json_list(parts) .. '}', lists)
