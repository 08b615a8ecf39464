-- A device's wipe state or clock offset, changed atomically (Devices.mark_wipe,
-- confirm_wipe, note_skew, note_drift).
--
-- ARGV[1]  the user's device hash (<prefix>:dev:<user>)
-- ARGV[2]  the device
-- ARGV[3]  'mark', 'confirm', 'skew' or 'drift'
-- ARGV[4]  the wipe id; for 'skew' the offset in ms (an integer within +-10^12,
--          which cjson's 14 digits keep exactly); for 'drift' the JSON
--          {type: [records, at ms]} to set (ms since the epoch: 13 digits)
-- ARGV[5]  the access control pub/sub channel (for 'mark')
-- ARGV[6]  the announcement of a 'mark' ('w <json>')
-- Returns the device's JSON as stored afterwards, or nil when it is unknown.
-- 'mark': wipe_pending with the id, announced (a wiped device stays wiped);
-- 'confirm': wiped, if the wipe pending has that id; 'skew': skew_ms set;
-- 'drift': those types' entries of drift set, the others kept.

local raw = redis.call('HGET', ARGV[1], ARGV[2])
if not raw then return nil end
local record = cjson.decode(raw)
if ARGV[3] == 'mark' then
  if record.state == 'wiped' then return raw end
  record.state, record.wipe_id = 'wipe_pending', ARGV[4]
  raw = cjson.encode(record)
  redis.call('HSET', ARGV[1], ARGV[2], raw)
  redis.call('PUBLISH', ARGV[5], ARGV[6])
elseif ARGV[3] == 'skew' then
  record.skew_ms = tonumber(ARGV[4])
  raw = cjson.encode(record)
  redis.call('HSET', ARGV[1], ARGV[2], raw)
elseif ARGV[3] == 'drift' then
  if type(record.drift) ~= 'table' then record.drift = {} end
  for name, pair in pairs(cjson.decode(ARGV[4])) do record.drift[name] = pair end
  raw = cjson.encode(record)
  redis.call('HSET', ARGV[1], ARGV[2], raw)
elseif ARGV[3] == 'confirm' and record.state == 'wipe_pending' and record.wipe_id == ARGV[4] then
  record.state = 'wiped'
  raw = cjson.encode(record)
  redis.call('HSET', ARGV[1], ARGV[2], raw)
end
return raw
