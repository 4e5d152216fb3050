--[[
op-acquire.lua: acquire_op asks for a permit (reducer.ts acquire): the body of acquire.lua, and the
second half of carry.lua.

KEYS[1]   the breaker's record (keys.ts breakerKey)
ARGV      the policy (common.lua read_policy); nothing else
Returns   { 'acquire', corrupt, now, admitted, reason, retryAfterMs, generation, lease, state,
            override, openUntil, transitionFrom, transitionTo, transitionGeneration,
            consecutiveFailures, closedAt, slot }
          corrupt and admitted are 0/1; reason, lease, slot, override and the transition's
          from/to are '' when absent (transitionGeneration is then 0).
Writes    only when something changed (open -> half-open, a lease or a concurrency slot granted);
          a rejection or a closed admission without a concurrency limit writes nothing, and a
          breaker with no record then gets none: it is admitted under generation 0 (reducer.ts
          NO_RECORD). With a limit (policy maxConcurrent > 0) every admission without an override
          takes a slot (field slots), made with the record if there is none; a call that finds
          them all taken is rejected with reason concurrency-limit. Publishes the transition it made.
Errors    CIRCUITRY_BADARG <what>
]]
local function acquire_op(KEYS, ARGV)
  local key = KEYS[1]
  local now = now_ms(ARGV)
  local p, channel = read_policy(ARGV)
  local limit = p.maxConcurrent

  -- One read of the record serves the hot paths and, when they do not apply, the general path.
  local raw = redis.pcall('GET', key)
  if limit == 0 and not raw then
    -- No record: closed, and admitted under generation 0 without creating one. The first outcome
    -- that needs a record (a failure, or any outcome under a failure rate) creates it, so a tenant
    -- that only succeeds costs no key.
    return { 'acquire', 0, now, 1, '', 0, 0, '', 'closed', '', 0, '', '', 0, 0, 0, '' }
  end
  local r, existed, corrupt
  if type(raw) == 'table' then
    r, existed, corrupt = fresh_reset(now)
  elseif not raw then
    r, existed, corrupt = empty_record(now), false, false
  else
    r = read_record(key, raw, p, now)
    if r == nil then
      r, existed, corrupt = fresh_reset(now)
    else
      existed, corrupt = true, false
      if r.state == 'closed' and r.override == '' then
        if limit == 0 then
          keep_record(key, raw, r, p) -- (unchanged: kept for the next call)
          -- The hot path: a closed breaker with no override admits without writing anything
          -- (closed implies no leases and openUntil 0). The run of failures is answered for
          -- information (AcquireResult.consecutiveFailures): a caller still writes every outcome
          -- (a success skipped on an empty run let other processes' failures land between and
          -- trip on a run that was not consecutive).
          return { 'acquire', 0, now, 1, '', 0, r.gen, '', 'closed', '', 0, '', '', 0, r.cf, r.ca, '' }
        end
        -- The hot path with a concurrency limit: a closed breaker with no override takes a slot
        -- (or finds them all taken).
        local slots = unexpired(r.slots, now)
        if #slots >= limit then
          return { 'acquire', 0, now, 0, 'concurrency-limit', soonest_expiry(slots, now, p.concurrencyLeaseMs), r.gen,
            '', 'closed', '', 0, '', '', 0, r.cf, r.ca, '' }
        end
        local slot = next_id(r, now)
        slots[#slots + 1] = { id = slot, expiresAt = now + p.concurrencyLeaseMs }
        r.slots = slots
        keep_record(key, save(key, p, r, now), r, p)
        return { 'acquire', 0, now, 1, '', 0, r.gen, '', 'closed', '', 0, '', '', 0, r.cf, r.ca, slot }
      end
    end
  end

  local dirty = corrupt or not existed
  expire_leases(r, now)
  local lapsed = lapse(r, now)
  if lapsed ~= nil then
    dirty = true
  end

  local admitted, reason, retryAfterMs, lease, slot = 1, '', 0, '', ''
  local moved = nil
  -- A breaker with an override does not limit (reducer.ts acquire).
  local limited = limit > 0 and r.override == ''
  local full = limited and #r.slots >= limit

  if r.override == 'forced-open' then
    admitted, reason, retryAfterMs = 0, 'forced-open', p.openMs
    if r.ou > 0 then
      retryAfterMs = math.max(1, r.ou - now)
    end
  elseif r.override == 'forced-closed' or r.state == 'closed' then
    if full then
      admitted, reason, retryAfterMs = 0, 'concurrency-limit', soonest_expiry(r.slots, now, p.concurrencyLeaseMs)
    end
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
      if full then
        admitted, reason, retryAfterMs = 0, 'concurrency-limit', soonest_expiry(r.slots, now, p.concurrencyLeaseMs)
      else
        lease = next_id(r, now)
        r.leases[#r.leases + 1] = { id = lease, expiresAt = now + p.probeLeaseMs }
        dirty = true
      end
    elseif r.override ~= 'metrics-only' then
      admitted, reason = 0, 'half-open-full'
      -- halfOpenMaxCalls < 1 leaves no lease to wait for (the reducer's Infinity); say "soon".
      retryAfterMs = soonest_expiry(r.leases, now, p.probeLeaseMs)
    end
  end

  if admitted == 1 and limited then
    -- The probe's lease id names its slot too (they are kept apart).
    slot = lease ~= '' and lease or next_id(r, now)
    r.slots[#r.slots + 1] = { id = slot, expiresAt = now + p.concurrencyLeaseMs }
    dirty = true
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
    r.openUntil, from, to, tgen, r.cf, r.ca, slot }
end
