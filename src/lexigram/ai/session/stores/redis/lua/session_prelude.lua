-- The shared helpers beyond session_base.lua (lists, seq ranges, checkpoints, the
-- archive): loaded after it by every session script except the lean ones.

local function json_list(items)
  return '[' .. table.concat(items, ',') .. ']'
end

-- a reply carrying turns: {meta JSON, turn JSON, turn JSON, ...} (an array reply,
-- much cheaper for Redis than concatenating the documents into one string)
local function with_turns(meta, turns)
  table.insert(turns, 1, meta)
  return turns
end

local function str_list(items)
  local out = {}
  for j, v in ipairs(items) do out[j] = cjson.encode(v) end
  return json_list(out)
end

local function opt_str(v)
  if v == nil then return 'null' end
  return cjson.encode(v)
end

local function parse_ranges(text)
  local out = {}
  if text then
    for a, b in string.gmatch(text, '(%d+):(%d+)') do out[#out + 1] = {tonumber(a), tonumber(b)} end
  end
  return out
end

local function live_ranges()
  local out = {}
  for _, v in ipairs(redis.call('LRANGE', KR, 0, -1)) do
    local a, b = string.match(v, '^(%d+):(%d+)$')
    out[#out + 1] = {tonumber(a), tonumber(b)}
  end
  return out
end

local function ranges_text(rs)
  local parts = {}
  for j, r in ipairs(rs) do parts[j] = int(r[1]) .. ':' .. int(r[2]) end
  return table.concat(parts, ',')
end

local function expand(rs)
  local out = {}
  for _, r in ipairs(rs) do for s = r[1], r[2] do out[#out + 1] = s end end
  return out
end

local function compress(seqs)
  local out = {}
  for _, s in ipairs(seqs) do
    local last = out[#out]
    if last and last[2] + 1 == s then last[2] = s else out[#out + 1] = {s, s} end
  end
  return out
end

local function live_turns()
  local seqs = expand(live_ranges())
  local jsons = redis.call('LRANGE', KT, 0, -1)
  return seqs, jsons
end

-- merged, sorted intervals of every seq some checkpoint names
local function coverage()
  local iv = {}
  for _, text in ipairs(redis.call('HVALS', KK)) do
    for a, b in string.gmatch(text, '(%d+):(%d+)') do iv[#iv + 1] = {tonumber(a), tonumber(b)} end
  end
  table.sort(iv, function(x, y) return x[1] < y[1] end)
  local merged = {}
  for _, r in ipairs(iv) do
    local last = merged[#merged]
    if last and r[1] <= last[2] + 1 then
      if r[2] > last[2] then last[2] = r[2] end
    else
      merged[#merged + 1] = {r[1], r[2]}
    end
  end
  return merged
end

local function covered(iv, s)
  local lo, hi = 1, #iv
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    local r = iv[mid]
    if s < r[1] then hi = mid - 1 elseif s > r[2] then lo = mid + 1 else return true end
  end
  return false
end

-- turns that stop being live: keep in the archive those a checkpoint names
local function retire(seqs, jsons, iv)
  local flat = {}
  for j, s in ipairs(seqs) do
    if covered(iv, s) then
      flat[#flat + 1] = int(s)
      flat[#flat + 1] = jsons[j]
    end
  end
  if #flat > 0 then hset_pairs(KA, flat) end
end

-- drop archived turns no checkpoint names any more
local function gc_archive()
  local iv = coverage()
  local drop = {}
  for _, f in ipairs(redis.call('HKEYS', KA)) do
    if not covered(iv, tonumber(f)) then drop[#drop + 1] = f end
  end
  if #drop > 0 then push_all('HDEL', KA, drop) end
end

local function turn_id(js)
  local id = string.match(js, '^{"turn_id":"([^"\\]*)"')
  if id then return id end
  local ok, obj = pcall(cjson.decode, js)
  if ok and type(obj) == 'table' and type(obj.turn_id) == 'string' then return obj.turn_id end
  return nil
end

-- a stored turn's cost. Turns are written with "cost" after every field that can
-- hold an object (only model and provider, plain strings, follow it), so the last
-- unescaped "cost" key is the turn's own: a pattern, ~50x cheaper than decoding.
local function turn_cost(js)
  local c = tonumber(string.match(js, '.*,"cost":([^,}]+)'))
  if c then return c end
  local ok, obj = pcall(cjson.decode, js)
  if ok and type(obj) == 'table' then return tonumber(obj.cost) end
  return nil
end

-- turn_id/seq pairs of jsons; nil and the bad seq when a document has no id
local function id_pairs(seqs, jsons)
  local flat = {}
  for j, js in ipairs(jsons) do
    local id = turn_id(js)
    if not id then return nil, seqs[j] end
    flat[#flat + 1] = id
    flat[#flat + 1] = int(seqs[j])
  end
  return flat
end

-- replace the live structures (seqs ascending, aligned with jsons)
local function write_live(seqs, jsons, ids)
  redis.call('DEL', KT, KR, KI)
  if #jsons == 0 then return end
  push_all('RPUSH', KT, jsons)
  local texts = {}
  for j, r in ipairs(compress(seqs)) do texts[j] = int(r[1]) .. ':' .. int(r[2]) end
  push_all('RPUSH', KR, texts)
  hset_pairs(KI, ids)
end

-- a refusal naming a damaged checkpoint (the store raises CorruptRecordError for
-- "checkpoint '<id>'" and the field, as the SQL stores do)
local function cp_bad(cpid, field, problem)
  FAILED = true
  return cjson.encode({e = 'CPBAD', a = field, b = problem, c = cpid})
end

-- a checkpoint's stored document decoded, with its header; nil and the refusal when
-- either is damaged (never a Lua error: cjson.decode is called under pcall)
local function cp_doc(cpid, raw)
  local ok, data = pcall(cjson.decode, raw)
  if not ok or type(data) ~= 'table' then
    return nil, cp_bad(cpid, 'document', 'invalid JSON')
  end
  if type(data.h) ~= 'table' then return nil, cp_bad(cpid, 'header', 'missing') end
  return data
end

-- the turns a checkpoint names, with their seqs (nil seqs for inline turns); nil and
-- the refusal when its seq ranges are damaged or a named turn is missing from the log
local function checkpoint_turns(cpid, data, live_map)
  local text = redis.call('HGET', KK, cpid)
  if not text then
    if data.it ~= nil and type(data.it) ~= 'table' then
      return nil, cp_bad(cpid, 'turns', 'expected a list')
    end
    return data.it or {}, nil
  end
  -- "first:last,first:last" (empty for a checkpoint of no turns), ascending, each
  -- first <= last: anything else is damage (a damaged text used to read as no turns,
  -- and restore emptied the session)
  local rs = parse_ranges(text)
  local ok = text == ranges_text(rs)
  for j, r in ipairs(rs) do
    if r[1] < 1 or r[1] > r[2] or (j > 1 and r[1] <= rs[j - 1][2]) then ok = false end
  end
  if not ok then
    return nil, cp_bad(cpid, 'ranges', 'expected ascending first:last,...')
  end
  local seqs = expand(rs)
  local out = {}
  for j, s in ipairs(seqs) do
    local js = live_map[s] or redis.call('HGET', KA, int(s))
    if not js then return nil, fail('CORRUPT', 'turn log', int(s)) end
    out[j] = js
  end
  return out, seqs
end

local function live_map()
  local seqs, jsons = live_turns()
  local m = {}
  for j, s in ipairs(seqs) do m[s] = jsons[j] end
  return m
end
