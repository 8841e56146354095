
local function replay(prev)
  if string.sub(prev, 1, 5) ~= '{"h":' then return prev end
  local raw = redis.call('HGET', KD, ARGV[2])
  local data = raw and cp_doc(ARGV[2], raw)
  local turns = data and checkpoint_turns(ARGV[2], data, live_map()) or {}
  return with_turns(prev, turns)
end
