-- Index commands as one call (a single server: any slots), one reply for them all.
-- ARGV: groups "command, key number (in KEYS), argument count, arguments...".
-- Every group runs, as in a pipeline; the reply holds each group's result in order
-- (an error in its place when Redis refused it).
local out = {}
local j = 1
while j <= #ARGV do
  local n = tonumber(ARGV[j + 2])
  out[#out + 1] = redis.pcall(ARGV[j], KEYS[tonumber(ARGV[j + 1])], unpack(ARGV, j + 3, j + 2 + n))
  j = j + 3 + n
end
return out
