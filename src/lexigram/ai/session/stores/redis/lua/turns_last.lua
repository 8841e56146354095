-- KEYS: the session's header, its live turns list. ARGV: how many of the newest.
-- The newest live turns as {meta, turn, turn, ...}; no shared prelude (a chat
-- request's read: only an existence check and one LRANGE).
if redis.call('EXISTS', KEYS[1]) == 0 then return '{"e":"NF"}' end
local want = tonumber(ARGV[1])
if want <= 0 then return '{}' end
local items = redis.call('LRANGE', KEYS[2], -want, -1)
table.insert(items, 1, '{}')
return items
