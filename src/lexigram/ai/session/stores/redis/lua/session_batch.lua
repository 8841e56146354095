
-- A session script run for many sessions in one call (a single server: any slots).
-- KEYS: the sessions' keys, 12 per session in SESSION_KEY_NAMES order, then one key
-- recording this batch's reply (the store deletes it once it has read it: it names
-- many sessions, so no session's erasure would find it). ARGV: as the session
-- script's, shared by every session. The reply is the sessions' replies joined by
-- "\n" (cjson escapes every newline, so none is inside a reply); a re-sent call
-- answers the recorded reply.
local OPKEY = KEYS[#KEYS]
local prev = redis.call('GET', OPKEY)
if prev then return prev end
local out = {}
for j = 0, (#KEYS - 1) / 12 - 1 do
  -- the prelude's key variables now name this session's keys
  KH, KT, KR, KI, KA, KC, KD, KK, KB, KP, KX, KQ = unpack(KEYS, j * 12 + 1, j * 12 + 12)
  KO, FAILED, KEEP_FAST, MISSING, REMOVED = nil, false, false, false, false
  local ok, r = pcall(body)
  if not ok then
    -- a command the server refused: this session fails alone, as its own call would
    r = cjson.encode({e = 'ERR', a = type(r) == 'table' and r.err or tostring(r)})
  elseif not FAILED and r ~= '{}' then
    keep_keys()  -- '{}': nothing changed, no expiry to refresh
  end
  out[j + 1] = r
end
local reply = table.concat(out, '\n')
redis.call('SET', OPKEY, reply, 'PX', OP_TTL_MS)
return reply
