
local raw = redis.call('HGET', KD, ARGV[2])
if not raw then return '{}' end
local turns = {}
if ARGV[3] == '1' then
  local t, bad = checkpoint_turns(ARGV[2], cjson.decode(raw), live_map())
  if not t then return fail('CORRUPT', 'turn log', int(bad)) end
  turns = t
end
return with_turns('{"d":' .. raw .. '}', turns)
