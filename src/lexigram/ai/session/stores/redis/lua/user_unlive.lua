-- KEYS: a user's sessions and live sessions (one slot).
-- ARGV: mode, then pairs (session id, expected score). Takes the ids out of the live
-- set, each only while its entry is still the one the caller saw end:
--   mode 'o': the sessions index holds the id under the expected ordinal (or not at
--             all); a session deleted and created again under the id meanwhile (by
--             another process) has a new ordinal, and its live entry stays;
--   mode 'r': the live entry still has the expected reservation time; a create or
--             a resume after the caller read it wrote a new one.
-- An expected score that is empty (a header written before ordinals) or no number (a
-- damaged header's) is not checked.
local mode, n = ARGV[1], 0
for i = 2, #ARGV, 2 do
  local sid, want = ARGV[i], ARGV[i + 1]
  local expected, held = tonumber(want), nil
  if expected then held = redis.call('ZSCORE', mode == 'o' and KEYS[1] or KEYS[2], sid) end
  if not expected or not held or tonumber(held) == expected then
    n = n + redis.call('ZREM', KEYS[2], sid)
  end
end
return n
