
local function replay(prev)
  if string.sub(prev, 1, 5) ~= '{"h":' then return prev end
  local raw = redis.call('HGET', KD, ARGV[2])
  local turns = raw and checkpoint_turns(ARGV[2], cjson.decode(raw), live_map()) or {}
  return with_turns(prev, turns)
end
