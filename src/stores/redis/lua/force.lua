--[[
force.lua: sets or clears an operator override (reducer.ts force).

KEYS[1]   the breaker's record (keys.ts breakerKey)
ARGV      the policy (common.lua read_policy), then from ARGV[POLICY_ARGS + 1]: the override
          (forced-open | forced-closed | metrics-only, or '' to clear it), forMs (0: no time),
          the reason ('' for none), and yield ('1': only open for a while, yielding to an
          operator's override: reducer.ts ForceOptions.yieldToOperator)
Returns   { 'update', corrupt, 0, <snapshot as in record.lua>, transitionFrom, transitionTo,
            transitionGeneration }
Writes    when something changed or the record is new. A record with an override that has no
          time has no GC TTL. Publishes the transition it made.
Errors    CIRCUITRY_BADARG override | forMs | reason
]]

-- @include common.lua

local key = KEYS[1]
local p, channel = read_policy(ARGV)
local b = POLICY_ARGS
local override = ARGV[b + 1]
if override ~= '' and override ~= 'forced-open' and override ~= 'forced-closed' and override ~= 'metrics-only' then
  bad_arg('override')
end
local forMs = arg_number(ARGV[b + 2], 'forMs')
local reason = ARGV[b + 3]
if type(reason) ~= 'string' or #reason > MAX_REASON then
  bad_arg('reason')
end
local yield = ARGV[b + 4] == '1'

local now = now_ms(ARGV)
local r, existed, corrupt = load(key, p, now)
local dirty = corrupt or not existed
expire_leases(r, now)
local lapsed = lapse(r, now)
if lapsed ~= nil then
  dirty = true
end
local from = lapsed or circuit_state(r)
local untilMs = 0
if override ~= '' and forMs > 0 then
  untilMs = now + math.ceil(forMs)
end

local skip = false
if yield and override == 'forced-open' and r.override ~= '' then
  -- An override with no time is an operator's; a timed forced-open only ever gets longer.
  skip = r.override ~= 'forced-open' or r.ou == 0 or untilMs <= r.ou
end

if not skip then
  if r.override ~= override then
    r.override = override
    r.gen = next_gen(r.gen)
    r.leases = {}
    r.ps = 0
    dirty = true
  end
  local ou, why = untilMs, reason
  if override == '' then
    ou, why = 0, ''
  end
  if r.ou ~= ou or r.ovr ~= why then
    r.ou, r.ovr = ou, why
    dirty = true
  end
end
note_close(from, r, now)
local moved = transition(from, r)

if dirty then
  save(key, p, r, now)
end
publish(channel, key, moved, r, now)

return update_reply(corrupt, 0, r, p, now, moved)
