-- KEYS: session headers (a single server: any slots). ARGV: the fields to read.
-- One reply per header: its HMGET (nil for a missing field), or 0 when the key is
-- not a hash (one damaged key never fails the others).
local out = {}
for j, key in ipairs(KEYS) do
  local r = redis.pcall('HMGET', key, unpack(ARGV))
  if r.err then out[j] = 0 else out[j] = r end
end
return out
