
-- A session script run for many sessions in one call (a single server: any slots).
-- KEYS: the sessions' keys, 11 per session in SESSION_KEY_NAMES order, then one key
-- recording this batch's reply. ARGV: as the session script's, shared by every
-- session. The reply is the sessions' replies joined by "\n" (cjson escapes every
-- newline, so none is inside a reply); a re-sent call answers the recorded reply.
local OPKEY = KEYS[#KEYS]
local prev = redis.call('GET', OPKEY)
if prev then return prev end
local out = {}
for j = 0, (#KEYS - 1) / 11 - 1 do
  -- the prelude's key variables now name this session's keys
  KH, KT, KR, KI, KA, KC, KD, KK, KB, KP, KX = unpack(KEYS, j * 11 + 1, j * 11 + 11)
  KO, FAILED, KEEP_FAST = nil, false, false
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
