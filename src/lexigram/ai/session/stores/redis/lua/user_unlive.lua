-- KEYS: a user's sessions and live sessions (one slot).
-- ARGV: mode, forget ('1': out of the sessions index too, a deleted session), then
-- pairs (session id, expected score). Takes each id out of the live set, each only
-- while its entries are still the ones the caller saw:
--   mode 'o': the sessions index holds the id under the expected ordinal (or, for the
--             live set alone, not at all); a session deleted and created or saved again
--             under the id meanwhile (by another process) has a new ordinal, and its
--             entries stay;
--   mode 'r': the live entry still has the expected reservation time; a create or
--             a resume after the caller read it wrote a new one.
-- An expected score that is empty (a header written before ordinals) or no number (a
-- damaged header's) is not checked.
local mode, forget, n = ARGV[1], ARGV[2] == '1', 0
for i = 3, #ARGV, 2 do
  local sid, expected = ARGV[i], tonumber(ARGV[i + 1])
  local ok = true
  if expected then
    local held = redis.call('ZSCORE', mode == 'o' and KEYS[1] or KEYS[2], sid)
    if mode == 'o' then
      ok = not held or tonumber(held) == expected
    else
      ok = held and tonumber(held) == expected
    end
  end
  if ok then
    n = n + redis.call('ZREM', KEYS[2], sid)
    if forget then redis.call('ZREM', KEYS[1], sid) end
  end
end
return n
