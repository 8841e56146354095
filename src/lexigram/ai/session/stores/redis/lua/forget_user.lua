-- Forget a user whose sessions were all erased: delete the user's index keys (all
-- sessions, live sessions and reservations, ordinal counter) and the replies of their
-- create operations, but only while both index sets still hold exactly the members the
-- caller found dead (ARGV: how many of the first set, then the members of the first,
-- then of the second). A session created for the user meanwhile (a new member) keeps
-- every key: the caller looks again. KEYS: the two sets, the counter, the replies (all
-- in the user's slot). Returns 1 when the keys were deleted, 0 when something changed.
local n = tonumber(ARGV[1])
local function same(key, first, last)
  local members = redis.call('ZRANGE', key, 0, -1)
  if #members ~= last - first + 1 then return false end
  local expected = {}
  for j = first, last do expected[ARGV[j]] = true end
  for _, m in ipairs(members) do
    if not expected[m] then return false end
  end
  return true
end
if not (same(KEYS[1], 2, n + 1) and same(KEYS[2], n + 2, #ARGV)) then return 0 end
for j = 1, #KEYS, 500 do
  redis.call('UNLINK', unpack(KEYS, j, math.min(j + 499, #KEYS)))
end
return 1
