--[[
reset.lua: starts a breaker afresh for an operator, keeping its override (reducer.ts reset).

KEYS[1]   the breaker's record (keys.ts breakerKey)
ARGV      the policy (common.lua read_policy); nothing else
Returns   { 'update', corrupt, 0, <snapshot as in record.lua>, transitionFrom, transitionTo,
            transitionGeneration }. When nothing is stored at KEYS[1], the snapshot of a fresh
          record at the server's time, with no transition.
Writes    only when a record exists: closed, no counts, consecutive failures, backoff, probe leases
          or probe successes, the generation moved on by one, the GC TTL refreshed (none with an
          override). Never creates a record. Publishes the transition it made (open or half-open
          to closed).
Errors    CIRCUITRY_BADARG <what>
]]

-- @include common.lua

local key = KEYS[1]
local p, channel = read_policy(ARGV)
local now = now_ms(ARGV)
local r, existed, corrupt = load(key, p, now)

local moved = nil
if existed then
  local from = lapse(r, now) or circuit_state(r)
  close(r)
  note_close(from, r, now)
  moved = transition(from, r)
  save(key, p, r, now)
  publish(channel, key, moved, r, now)
end

return update_reply(corrupt, 0, r, p, now, moved)
