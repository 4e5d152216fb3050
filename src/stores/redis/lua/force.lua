--[[
force.lua: sets or clears an operator override (reducer.ts force).

KEYS[1]   the breaker's hash (keys.ts breakerKey)
ARGV      the policy (common.lua read_policy), then ARGV[POLICY_ARGS + 1]: the override
          (forced-open | forced-closed | metrics-only), or '' to clear it
Returns   { 'update', corrupt, 0, <snapshot as in record.lua>, transitionFrom, transitionTo,
            transitionGeneration }
Writes    when the override changed or the record is new. A record with an override has no GC TTL.
          Publishes the transition it made.
Errors    CIRCUITRY_BADARG override
]]

-- @include common.lua

local key = KEYS[1]
local p, channel = read_policy(ARGV)
local override = ARGV[POLICY_ARGS + 1]
if override ~= '' and override ~= 'forced-open' and override ~= 'forced-closed' and override ~= 'metrics-only' then
  bad_arg('override')
end

local now = now_ms(ARGV)
local r, existed, corrupt = load(key, now)
local dirty = corrupt or not existed
expire_leases(r, now)

local from = circuit_state(r)
if r.override ~= override then
  r.override = override
  r.gen = next_gen(r.gen)
  r.leases = {}
  r.ps = 0
  dirty = true
end
local moved = transition(from, r)

if dirty then
  save(key, p, r, now)
end
publish(channel, key, moved, r, now)

return update_reply(corrupt, 0, r, p, now, moved)
