--[[
inspect.lua: reads a breaker's snapshot (reducer.ts snapshot). Changes nothing, except that a
corrupt record is reset (as every script does), so it cannot be reported again and again.

KEYS[1]   the breaker's hash (keys.ts breakerKey)
ARGV      the policy (common.lua read_policy); nothing else
Returns   { 'none' } when nothing is stored at KEYS[1], else
          { 'snapshot', corrupt, <snapshot as in record.lua> }
Errors    CIRCUITRY_BADARG <what>
]]

-- @include common.lua

local key = KEYS[1]
local p = read_policy(ARGV)
local now = now_ms(ARGV)
local r, existed, corrupt = load(key, now)
if not existed then
  return { 'none' }
end
if corrupt then
  save(key, p, r, now)
end
expire_leases(r, now)

local out = { 'snapshot', corrupt and 1 or 0 }
return snapshot_reply(out, r, p, now)
