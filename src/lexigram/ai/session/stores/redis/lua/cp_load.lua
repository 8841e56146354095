
local raw = redis.call('HGET', KD, ARGV[2])
if not raw then return '{}' end
local data, refused = cp_doc(ARGV[2], raw)
if not data then return refused end
local turns = {}
if ARGV[3] == '1' then
  local t, bad = checkpoint_turns(ARGV[2], data, live_map())
  if not t then return bad end
  turns = t
end
return with_turns('{"d":' .. raw .. '}', turns)
