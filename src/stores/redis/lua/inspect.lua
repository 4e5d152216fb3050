--[[
inspect.lua: reads a breaker's snapshot (reducer.ts snapshot). Never writes: no repair, no TTL
refresh, nothing published. A key that does not hold a record this version can read (another
type, a hash without the marker field v, another schema, a malformed field) is reported with the
reason, and left exactly as it was: repairing it is an operator's explicit `reset`.

KEYS[1]   the breaker's hash (keys.ts breakerKey)
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
local raw = redis.pcall('HGETALL', key)
if raw.err then
  local t = redis.call('TYPE', key)
  return { 'corrupt', 'the key holds a ' .. (t.ok or tostring(t)) .. ', not a circuitry record (a hash)' }
end
if #raw == 0 then
  return { 'none' }
end
local h = {}
for i = 1, #raw, 2 do
  h[raw[i]] = raw[i + 1]
end

-- Why parse_record refused `h`, checked in the same order; the value shown is cut short.
local function shown(v)
  return string.format('%q', string.sub(tostring(v), 1, 40))
end
local function why(h)
  if h.v == nil then
    return 'a hash without the marker field v: not a circuitry record'
  end
  if h.v ~= SCHEMA then
    return 'record schema v=' .. shown(h.v) .. '; this version reads v=' .. SCHEMA
  end
  if h.state ~= 'closed' and h.state ~= 'open' and h.state ~= 'half-open' then
    return 'field state is ' .. (h.state == nil and 'missing' or shown(h.state))
  end
  local o = h.override or ''
  if o ~= '' and o ~= 'forced-open' and o ~= 'forced-closed' and o ~= 'metrics-only' then
    return 'field override is ' .. shown(o)
  end
  local g = count_or_zero(h.gen)
  if h.gen == nil or g == nil or g < 1 then
    return 'field gen is ' .. (h.gen == nil and 'missing' or shown(h.gen))
  end
  for _, f in ipairs({ 'openedAt', 'openUntil', 'reopens', 'cf', 'ps', 'seq' }) do
    if count_or_zero(h[f]) == nil then
      return 'field ' .. f .. ' is ' .. shown(h[f])
    end
  end
  if parse_leases(h.leases or '') == nil then
    return 'field leases is ' .. shown(h.leases)
  end
  if parse_leases(h.slots or '') == nil then
    return 'field slots is ' .. shown(h.slots)
  end
  if parse_reporters(h.rp or '') == nil then
    return 'field rp is ' .. shown(h.rp)
  end
  for _, f in ipairs({ 'ca', 'ou', 'tr', 'ta' }) do
    if count_or_zero(h[f]) == nil or (f == 'tr' and count_or_zero(h[f]) > 1000000) then
      return 'field ' .. f .. ' is ' .. shown(h[f])
    end
  end
  return 'field buckets is ' .. shown(h.buckets)
end

local r = parse_record(h)
if r == nil then
  return { 'corrupt', why(h) }
end
expire_leases(r, now)
lapse(r, now) -- a timed override whose time is up reads as lapsed (nothing is written)
local out = snapshot_reply({ 'snapshot' }, r, p, now)
out[#out + 1] = r.tr
out[#out + 1] = r.ta
return out
