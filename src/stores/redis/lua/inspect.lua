--[[
inspect.lua: reads a breaker's snapshot (reducer.ts snapshot). Never writes: no repair, no TTL
refresh, nothing published. A key that does not hold a record this version can read (another
type, the hash of an earlier version, a string that is not a packed record) is reported with the
reason, and left exactly as it was: repairing it is an operator's explicit `reset`.

KEYS[1]   the breaker's record (keys.ts breakerKey)
ARGV      the policy (common.lua read_policy); nothing else
Returns   { 'none' } when nothing is stored at KEYS[1],
          { 'corrupt', <reason> } when what is stored is not a readable record, else
          { 'snapshot', <snapshot as in common.lua snapshot_reply>, throttle rate (millionths),
            when it was reported (0: never) }
Errors    CIRCUITRY_BADARG <what>
]]

-- @include common.lua

local key = KEYS[1]
local p = read_policy(ARGV)
local now = now_ms(ARGV)
local raw = redis.pcall('GET', key)
if type(raw) == 'table' then
  local t = redis.call('TYPE', key)
  local kind = t.ok or tostring(t)
  if kind == 'hash' and redis.call('HEXISTS', key, 'v') == 1 then
    return { 'corrupt', 'a record of circuitry before 0.2 (a hash): this version reads a packed string; '
      .. '`reset` replaces it' }
  end
  return { 'corrupt', 'the key holds a ' .. kind .. ', not a circuitry record (a string)' }
end
if not raw then
  return { 'none' }
end
local r, why = decode(raw, p, now)
if r == nil then
  return { 'corrupt', why }
end
expire_leases(r, now)
lapse(r, now) -- a timed override whose time is up reads as lapsed (nothing is written)
local out = snapshot_reply({ 'snapshot' }, r, p, now)
out[#out + 1] = r.tr
out[#out + 1] = r.ta
return out
