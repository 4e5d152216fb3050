--[[
acquire.lua: asks for a permit (reducer.ts acquire).

KEYS[1]   the breaker's hash (keys.ts breakerKey)
ARGV      the policy (common.lua read_policy); nothing else
Returns   { 'acquire', corrupt, now, admitted, reason, retryAfterMs, generation, lease, state,
            override, openUntil, transitionFrom, transitionTo, transitionGeneration,
            consecutiveFailures }
          corrupt and admitted are 0/1; reason, lease, override and the transition's from/to are
          '' when absent (transitionGeneration is then 0).
Writes    only when something changed (open -> half-open, a lease granted); a rejection or a
          closed admission writes nothing, and a breaker with no record gets none: it is admitted
          under generation 0 (reducer.ts NO_RECORD). Publishes the transition it made.
Errors    CIRCUITRY_BADARG <what>
]]

-- @include common.lua

local key = KEYS[1]
local now = now_ms(ARGV)

-- The hot path: a closed breaker with no override admits without reading or writing anything
-- else (closed implies no leases and openUntil 0).
-- The run of failures is answered so that a caller whose call succeeds knows whether there is a
-- run for its success to reset (if not, it need not write at all).
local quick = redis.pcall('HMGET', key, 'v', 'state', 'override', 'gen', 'cf')
if not quick.err then
  if quick[1] == SCHEMA and quick[2] == 'closed' and (not quick[3] or quick[3] == '') then
    local gen, cf = count(quick[4]), count_or_zero(quick[5])
    if gen ~= nil and gen >= 1 and cf ~= nil then
      return { 'acquire', 0, now, 1, '', 0, gen, '', 'closed', '', 0, '', '', 0, cf }
    end
  elseif not quick[1] and not quick[2] and not quick[3] and not quick[4] and not quick[5] then
    -- No record: closed, and admitted under generation 0 without creating one. The first outcome
    -- that needs a record (a failure, or any outcome under a failure rate) creates it, so a tenant
    -- that only succeeds costs no key.
    return { 'acquire', 0, now, 1, '', 0, 0, '', 'closed', '', 0, '', '', 0, 0 }
  end
end

local p, channel = read_policy(ARGV)
local r, existed, corrupt = load(key, now)
local dirty = corrupt or not existed
expire_leases(r, now)
local lapsed = lapse(r, now)
if lapsed ~= nil then
  dirty = true
end

local admitted, reason, retryAfterMs, lease = 1, '', 0, ''
local moved = nil

if r.override == 'forced-open' then
  admitted, reason, retryAfterMs = 0, 'forced-open', p.openMs
  if r.ou > 0 then
    retryAfterMs = math.max(1, r.ou - now)
  end
elseif r.override == 'forced-closed' or r.state == 'closed' then
  admitted = 1
elseif r.state == 'open' and now < r.openUntil then
  if r.override ~= 'metrics-only' then
    admitted, reason, retryAfterMs = 0, 'open', r.openUntil - now
  end
else
  if r.state == 'open' then
    local from = circuit_state(r)
    to_half_open(r)
    moved = transition(from, r)
    dirty = true
  end
  -- half-open
  if #r.leases < p.halfOpenMaxCalls then
    r.seq = r.seq + 1
    lease = int(now) .. '-' .. int(r.seq)
    r.leases[#r.leases + 1] = { id = lease, expiresAt = now + p.probeLeaseMs }
    dirty = true
  elseif r.override ~= 'metrics-only' then
    local soonest = nil
    for _, l in ipairs(r.leases) do
      if soonest == nil or l.expiresAt < soonest then
        soonest = l.expiresAt
      end
    end
    admitted, reason = 0, 'half-open-full'
    if soonest == nil then
      -- halfOpenMaxCalls < 1 leaves no lease to wait for (the reducer's Infinity); say "soon".
      retryAfterMs = p.probeLeaseMs
    else
      retryAfterMs = math.max(1, soonest - now)
    end
  end
end

if lapsed ~= nil then
  moved = transition(lapsed, r)
end
if dirty then
  save(key, p, r, now)
end
publish(channel, key, moved, r, now)

local from, to, tgen = transition_reply(moved)
return { 'acquire', corrupt and 1 or 0, now, admitted, reason, retryAfterMs, r.gen, lease, r.state, r.override,
  r.openUntil, from, to, tgen, r.cf }
