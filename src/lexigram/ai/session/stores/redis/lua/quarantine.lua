
-- Marks a session the store could not decode so that every write refuses it, as the
-- SQL stores do: its status gets the prefix 'quarantined:' ('quarantined:active'),
-- which no script and no decoder takes for a status, and its deadline goes. Nothing
-- else is read or changed (an operator repairs or deletes it). Idempotent. Replies
-- the user id and ordinal stored in the header (to leave the user's live set), each
-- nil when missing.
local f = redis.pcall('HMGET', KH, 's', 'u', 'o')
if f.err then return nil end  -- not a hash: every script refuses it already
if VALID[f[1]] then
  redis.call('HSET', KH, 's', 'quarantined:' .. f[1])
  redis.call('HDEL', KH, 'ex')
end
return {f[2], f[3]}
