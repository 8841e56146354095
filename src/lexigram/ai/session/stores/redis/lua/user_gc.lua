-- KEYS: a user's sessions, live sessions and ordinal counter (one slot).
-- A user left with no session loses the ordinal counter, which was kept forever (one
-- key per user ever seen: per anonymous visitor). A create in progress is in the
-- sessions set already (reserve adds it there with the ordinal), so it is never cut.
if redis.call('EXISTS', KEYS[1]) == 0 and redis.call('EXISTS', KEYS[2]) == 0 then
  return redis.call('DEL', KEYS[3])
end
return 0
