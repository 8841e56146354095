
local h, err = header()
if not h then return err end
-- A reservation of this branch id: this call's own when re-sent (same op), another
-- fork's to the same id while it is young (refused: the id is being taken), or a
-- dead writer's (taken over, not counted against the cap).
local held = redis.call('ZSCORE', KB, ARGV[2])
local mine = false
if held then
  local at, owner = string.match(redis.call('HGET', KP, ARGV[2]) or '', '^(%d+)|(.+)$')
  if owner == ARGV[6] then
    mine = true
  elseif at and tonumber(ARGV[5]) - tonumber(at) < tonumber(ARGV[7]) then
    return fail('RESERVED')
  end
end
if ARGV[3] ~= '' and not mine then
  local count = redis.call('ZCARD', KB)
  if held then count = count - 1 end
  if count >= tonumber(ARGV[3]) then return fail('CAPB', int(count)) end
end
local point, turns = h, nil
if ARGV[4] ~= '' then
  local raw = redis.call('HGET', KD, ARGV[4])
  if not raw then return fail('CPNF') end
  local data, refused = cp_doc(ARGV[4], raw)
  if not data then return refused end
  point = data.h
  local bad, why = header_damage(point)
  if bad then return cp_bad(ARGV[4], bad, why) end
  turns, bad = checkpoint_turns(ARGV[4], data, live_map())
  if not turns then return bad end
else
  turns = redis.call('LRANGE', KT, 0, -1)
end
if not held then
  local top = redis.call('ZRANGE', KB, -1, -1, 'WITHSCORES')
  local ord = 1
  if top[2] then ord = tonumber(top[2]) + 1 end
  redis.call('ZADD', KB, ord, ARGV[2])
end
redis.call('HSET', KP, ARGV[2], ARGV[5] .. '|' .. ARGV[6])
return with_turns(reply_h(point), turns)
