--[[
common.lua: code shared by every circuitry script. It is never loaded on its own:
scripts/build-lua.ts inlines it where a script says `-- @include common.lua`.

This is a port of src/core/reducer.ts, window.ts and policy.ts (the spec). Keep the two in step;
the conformance suite runs the same scenarios against both.

Every script receives the same leading ARGV (see read_policy):
  ARGV[1]   channel to PUBLISH transitions on (`<prefix>events`)
  ARGV[2]   the policy, one string of 16 fields joined by ':' (policy-fields.ts policyFields):
            trip kind (consecutive-failures | failures-in-window | failure-rate | custom),
            threshold, ratio, minimumCalls, windowMs, bucketMs, bucketCount, openMs,
            backoffMultiplier, maxOpenMs, jitterRatio, halfOpenMaxCalls, successThreshold,
            probeLeaseMs, maxConcurrent (0: no limit), concurrencyLeaseMs
  ARGV[3]   milliseconds added to the server's TIME (0; tests move the store's clock with it)
Script-specific ARGV start at ARGV[POLICY_ARGS + 1].

The code runs in one of two forms (scripts/build-lua.ts): as a Redis 7 FUNCTION library, loaded
once, whose top-level locals (the parsed-policy cache below) live as long as the library; or, on
servers without functions, as one EVALSHA script per operation, where they live for one call.

The record is one hash. Fields (all strings); a field at its default is left out (a closed
breaker with a failure is v, state, gen, cf and buckets), so a record costs little memory:
  v          schema version ('1')
  state      closed | open | half-open
  gen        generation
  override   forced-open | forced-closed | metrics-only (default: none)
  openedAt, openUntil, reopens, cf (consecutive failures), ps (probe successes) (default 0)
  seq        lease counter, so lease and slot ids are unique per breaker (default 0)
  ou         when a timed override lapses, in the server's ms (default 0: never)
  or         why the override was set, at most 200 bytes (default: none)
  ca         when callers last saw it close after rejecting (default 0: never): the ramp's anchor
  leases     '<id>=<expiresAt>,...' (default: none)
  slots      concurrency slots held (maxConcurrent), as leases (default: none; never written
             without a limit)
  buckets    '<index>:<successes>:<failures>:<slow>:<ignored>,...' oldest first (default: none)
  rp         who reported failures in the window (a quorum): '<reporter>=<bucket>,...' oldest
             first, at most MAX_REPORTERS (default: none; never written without a quorum)
  tr, ta     the adaptive-throttle rejection rate the last throttled breaker reported with its
             failures, in millionths, and when, in the server's ms (default 0: none reported)

Errors raised (as Redis error replies): CIRCUITRY_BADARG <what> when an argument is malformed.
A stored record that is not valid is never an error: it is reset, and the reply's corrupt flag is 1.
]]

local SCHEMA = '1'
-- reducer.ts MAX_REASON_LENGTH (bytes here; the JS side cuts by characters first).
local MAX_REASON = 800
local POLICY_ARGS = 3
-- reducer.ts MAX_REPORTERS.
local MAX_REPORTERS = 32
-- Added to every GC TTL, so a record outlives anything it still has to remember.
local GC_MARGIN_MS = 60000
local MAX_SAFE = 9007199254740991

local function bad_arg(what)
  error({ err = 'CIRCUITRY_BADARG ' .. what })
end

-- Integers are formatted with %d: tostring() would use %.14g and lose digits.
local function int(x)
  return string.format('%d', x)
end

local function arg_number(value, what)
  -- Most of a batch's numbers are 0 or 1: a comparison with an interned string, where tonumber
  -- (strtod) costs ~0.1 µs each.
  if value == '0' then
    return 0
  elseif value == '1' then
    return 1
  end
  local n = tonumber(value)
  if n == nil or n ~= n then
    bad_arg(what)
  end
  return n
end

local function now_ms(argv)
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + arg_number(argv[3], 'time offset')
end

local KINDS = {
  ['consecutive-failures'] = true, ['failures-in-window'] = true, ['failure-rate'] = true, custom = true,
}
local POLICY_FIELDS = {
  'threshold', 'ratio', 'minimumCalls', 'windowMs', 'bucketMs', 'bucketCount', 'openMs',
  'backoffMultiplier', 'maxOpenMs', 'jitterRatio', 'halfOpenMaxCalls', 'successThreshold', 'probeLeaseMs',
  'maxConcurrent', 'concurrencyLeaseMs',
}

local function parse_policy(text)
  if type(text) ~= 'string' then
    bad_arg('policy')
  end
  local parts = {}
  for part in string.gmatch(text, '[^:]+') do
    parts[#parts + 1] = part
  end
  if #parts ~= #POLICY_FIELDS + 1 or not KINDS[parts[1]] then
    bad_arg('policy')
  end
  local p = { kind = parts[1] }
  for i, name in ipairs(POLICY_FIELDS) do
    p[name] = arg_number(parts[i + 1], name)
  end
  if p.bucketMs < 1 or p.bucketCount < 1 then
    bad_arg('bucket shape')
  end
  return p
end

-- Parsed policies by their text. A process sends a handful of distinct policies; the cache is
-- dropped whole when it grows past POLICY_CACHE_MAX, so a caller minting policies cannot grow it.
local POLICY_CACHE_MAX = 256
local policy_cache = {}
local policy_cache_size = 0

-- The policy of ARGV, with the channel. The returned table is shared between calls: never modified.
local function read_policy(argv)
  local channel = argv[1]
  if type(channel) ~= 'string' then
    bad_arg('channel')
  end
  local text = argv[2]
  local p = policy_cache[text]
  if p == nil then
    p = parse_policy(text)
    if policy_cache_size >= POLICY_CACHE_MAX then
      policy_cache = {}
      policy_cache_size = 0
    end
    policy_cache[text] = p
    policy_cache_size = policy_cache_size + 1
  end
  return p, channel
end

-- A new record's generation is 100 per ms of the store's time (reducer.ts initialGeneration): a
-- record created again after the old one was lost starts above every generation the old one reached.
-- It is a multiple of 100, and next_gen never lands on one: such a record has not changed state.
local function empty_record(now)
  return {
    state = 'closed', override = '', gen = math.max(1, math.floor(now)) * 100, openedAt = 0, openUntil = 0,
    reopens = 0, cf = 0, ps = 0, seq = 0, leases = {}, slots = {}, buckets = {}, ou = 0, ovr = '', ca = 0, rp = {},
    tr = 0, ta = 0,
  }
end

-- reducer.ts nextGeneration: one more, skipping multiples of 100.
local function next_gen(gen)
  if gen % 100 == 99 then
    return gen + 2
  end
  return gen + 1
end

-- reducer.ts admittedUnder: outcomes of calls admitted under `generation` count in `r`. Generation 0
-- (reducer.ts NO_RECORD) is what acquire answers while there is no record; such calls count while
-- the record is closed, without an override, and has not changed state since it was created.
local function admitted_under(r, generation)
  return generation == r.gen
    or (generation == 0 and r.state == 'closed' and r.override == '' and r.gen % 100 == 0)
end

-- A non-negative safe integer from a stored string, or nil. (A field left out is `false`: see
-- count_or_zero.)
local function count(s)
  if type(s) ~= 'string' or #s > 16 or not string.find(s, '^%d+$') then
    return nil
  end
  local n = tonumber(s)
  if n > MAX_SAFE then
    return nil
  end
  return n
end

local function parse_leases(s)
  local leases = {}
  if s == '' then
    return leases
  end
  for entry in string.gmatch(s .. ',', '([^,]*),') do
    local id, at = string.match(entry, '^([%w%.%-]+)=(%d+)$')
    local expiresAt = count(at)
    if id == nil or expiresAt == nil then
      return nil
    end
    leases[#leases + 1] = { id = id, expiresAt = expiresAt }
  end
  return leases
end

-- Reporters of failures (quorum): '<id>=<bucket>,...', or nil when malformed.
local function parse_reporters(s)
  local reporters = {}
  if s == '' then
    return reporters
  end
  for entry in string.gmatch(s .. ',', '([^,]*),') do
    local id, bucket = string.match(entry, '^([%w_%.%-]+)=(%d+)$')
    local b = count(bucket)
    if id == nil or b == nil or #id > 64 then
      return nil
    end
    reporters[#reporters + 1] = { id = id, bucket = b }
  end
  if #reporters > MAX_REPORTERS then
    return nil
  end
  return reporters
end

local function encode_reporters(reporters)
  local parts = {}
  for i, x in ipairs(reporters) do
    parts[i] = x.id .. '=' .. int(x.bucket)
  end
  return table.concat(parts, ',')
end

-- Buckets '<index>:<s>:<f>:<slow>:<ignored>,...', or nil when malformed. One pattern pass for all
-- of them (patterns are what costs most in a script): each entry must start where the last one's
-- comma ended, and the last must end the string.
local function parse_buckets(s)
  local buckets = {}
  if s == '' then
    return buckets
  end
  local at = 1
  for first, i, a, b, c, d, after in string.gmatch(s, '()(%-?%d+):(%d+):(%d+):(%d+):(%d+)()') do
    if first ~= at or #i > 17 or #a > 16 or #b > 16 or #c > 16 or #d > 16 then
      return nil
    end
    -- (at: where its text starts in s, for op-record.lua's encode_counted.)
    local bucket = { index = tonumber(i), s = tonumber(a), f = tonumber(b), sl = tonumber(c), ig = tonumber(d), at = first }
    if bucket.s > MAX_SAFE or bucket.f > MAX_SAFE or bucket.sl > MAX_SAFE or bucket.ig > MAX_SAFE then
      return nil
    end
    buckets[#buckets + 1] = bucket
    if after > #s then
      return buckets
    end
    if string.byte(s, after) ~= 44 then -- ','
      return nil
    end
    at = after + 1
  end
  return nil
end

-- A field that may be left out at its default of 0.
local function count_or_zero(s)
  if s == nil or s == false then
    return 0
  end
  return count(s)
end

-- The record in hash fields `h`, or nil when a field is malformed, of another schema, or a
-- field that is never left out (v, state, gen) is missing.
local function parse_record(h)
  if h.v ~= SCHEMA then
    return nil
  end
  local state, override = h.state, h.override or ''
  if state ~= 'closed' and state ~= 'open' and state ~= 'half-open' then
    return nil
  end
  if override ~= '' and override ~= 'forced-open' and override ~= 'forced-closed'
    and override ~= 'metrics-only' then
    return nil
  end
  local r = {
    state = state, override = override, gen = count(h.gen), openedAt = count_or_zero(h.openedAt),
    openUntil = count_or_zero(h.openUntil), reopens = count_or_zero(h.reopens), cf = count_or_zero(h.cf),
    ps = count_or_zero(h.ps), seq = count_or_zero(h.seq), leases = parse_leases(h.leases or ''),
    slots = parse_leases(h.slots or ''), buckets = parse_buckets(h.buckets or ''), ou = count_or_zero(h.ou),
    ovr = h['or'] or '', ca = count_or_zero(h.ca), rp = parse_reporters(h.rp or ''),
    tr = count_or_zero(h.tr), ta = count_or_zero(h.ta),
  }
  if r.gen == nil or r.gen < 1 or r.openedAt == nil or r.openUntil == nil or r.reopens == nil
    or r.cf == nil or r.ps == nil or r.seq == nil or r.leases == nil or r.slots == nil or r.buckets == nil
    or r.ou == nil or #r.ovr > MAX_REASON or r.ca == nil or r.rp == nil or r.tr == nil or r.tr > 1000000
    or r.ta == nil then
    return nil
  end
  -- The fields the hash holds, so save() removes only those that went back to their default.
  r.stored = h
  return r
end

--[[ Loads the record at `key` (a fresh one is created at `now`). Returns record, existed, corrupt.
A missing key gives a fresh record (existed = false). A key of another type, or a hash that is not
a valid record, gives a fresh record marked `reset`, so save() deletes the old value first. ]]
local function load(key, now)
  local raw = redis.pcall('HGETALL', key)
  if raw.err then
    local fresh = empty_record(now)
    fresh.reset = true
    return fresh, true, true
  end
  if #raw == 0 then
    return empty_record(now), false, false
  end
  local h = {}
  for i = 1, #raw, 2 do
    h[raw[i]] = raw[i + 1]
  end
  local r = parse_record(h)
  if r == nil then
    r = empty_record(now)
    r.reset = true
    return r, true, true
  end
  return r, true, false
end

--[[ The GC TTL: longer than the window, plus the longest open period (with jitter), plus a probe
lease or concurrency slot, plus a margin, and never shorter than what is left of the current open
period (a jitter function can exceed the ratio). So expiry can only forget a breaker that has been
idle for longer than anything it remembers; it can never end an open period early (REFERENCE.md
H6), nor drop a slot a call still holds. ]]
local function gc_ttl_ms(p, r, now)
  local longestOpen = math.max(p.openMs, p.maxOpenMs) * (1 + math.max(0, p.jitterRatio))
  local lease = math.max(p.probeLeaseMs, p.concurrencyLeaseMs)
  local ttl = p.windowMs + longestOpen + lease
  local leftOpen = math.max(r.openUntil, r.ou or 0) - now + p.windowMs + lease
  if leftOpen > ttl then
    ttl = leftOpen
  end
  return math.ceil(ttl + GC_MARGIN_MS)
end

local function encode_leases(leases)
  local parts = {}
  for i, l in ipairs(leases) do
    parts[i] = l.id .. '=' .. int(l.expiresAt)
  end
  return table.concat(parts, ',')
end

local function encode_buckets(buckets)
  local parts = {}
  for i, b in ipairs(buckets) do
    -- One format per bucket: every string a script makes costs (interned), so fewer is faster.
    parts[i] = string.format('%d:%d:%d:%d:%d', b.index, b.s, b.f, b.sl, b.ig)
  end
  return table.concat(parts, ',')
end

--[[ Writes the whole record and refreshes its GC TTL. Fields at their default are left out (and
removed if the hash held them). A record with an operator override has no TTL: an override is an
operator's decision, bounded by operator actions rather than by traffic, and forgetting it would
silently re-enable a breaker someone forced open. ]]
local function save(key, p, r, now)
  if r.reset then
    redis.call('DEL', key)
  end
  local set = { 'v', SCHEMA, 'state', r.state, 'gen', int(r.gen) }
  local unset = {}
  local stored = (not r.reset and r.stored) or {}
  local function field(name, value, default)
    if value ~= default then
      set[#set + 1] = name
      set[#set + 1] = value
    elseif stored[name] then
      unset[#unset + 1] = name
    end
  end
  field('override', r.override, '')
  field('openedAt', int(r.openedAt), '0')
  field('openUntil', int(r.openUntil), '0')
  field('reopens', int(r.reopens), '0')
  field('cf', int(r.cf), '0')
  field('ps', int(r.ps), '0')
  field('seq', int(r.seq), '0')
  field('leases', encode_leases(r.leases), '')
  field('slots', encode_leases(r.slots), '')
  field('buckets', encode_buckets(r.buckets), '')
  field('ou', int(r.ou), '0')
  field('or', r.ovr, '')
  field('ca', int(r.ca), '0')
  field('rp', encode_reporters(r.rp), '')
  field('tr', int(r.tr), '0')
  field('ta', int(r.ta), '0')
  redis.call('HSET', key, unpack(set))
  if #unset > 0 then
    redis.call('HDEL', key, unpack(unset))
  end
  if r.override ~= '' and r.ou == 0 then
    -- (A timed override lapses on its own: that record keeps its TTL, past the lapse.)
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIRE', key, int(gc_ttl_ms(p, r, now)))
  end
end

local function unexpired(leases, now)
  local kept = {}
  for _, l in ipairs(leases) do
    if l.expiresAt > now then
      kept[#kept + 1] = l
    end
  end
  return kept
end

-- Drops probe leases and concurrency slots whose holder did not report in time. Not a change
-- worth a write on its own: every reader expires them again.
local function expire_leases(r, now)
  r.leases = unexpired(r.leases, now)
  r.slots = unexpired(r.slots, now)
end

-- How long until the first of `leases` expires (at least 1 ms), or `fallback` when there is none.
local function soonest_expiry(leases, now, fallback)
  local soonest = nil
  for _, l in ipairs(leases) do
    if soonest == nil or l.expiresAt < soonest then
      soonest = l.expiresAt
    end
  end
  if soonest == nil then
    return fallback
  end
  return math.max(1, soonest - now)
end

-- A lease or slot id, unique per breaker.
local function next_id(r, now)
  r.seq = r.seq + 1
  return int(now) .. '-' .. int(r.seq)
end

local function circuit_state(r)
  if r.override == 'forced-open' or r.override == 'forced-closed' then
    return r.override
  end
  return r.state
end

--[[ reducer.ts lapse: ends a timed override whose time is up, at a new generation. A forced-open
lapses to half-open (probes decide), any other to the computed state. Returns the circuit state
before, or nil when nothing lapsed. ]]
local function lapse(r, now)
  if r.override == '' or r.ou == 0 or now < r.ou then
    return nil
  end
  local from = circuit_state(r)
  local was = r.override
  r.override = ''
  r.ou = 0
  r.ovr = ''
  r.gen = next_gen(r.gen)
  if was == 'forced-open' then
    r.state = 'half-open'
    r.openUntil = 0
    r.ps = 0
    r.leases = {}
  end
  return from
end

-- reducer.ts noteClose: a close callers see (from a state that rejected) anchors the recovery ramp.
local function note_close(from, r, now)
  if from ~= 'closed' and from ~= 'forced-closed' and circuit_state(r) == 'closed' then
    r.ca = now
  end
end

local function open_period_ms(p, reopens, random, jitterMs)
  local base = math.min(p.maxOpenMs, p.openMs * (p.backoffMultiplier ^ reopens))
  -- Math.round for the non-negative values this sees.
  return math.floor(base + base * p.jitterRatio * random + jitterMs + 0.5)
end

local function open(r, p, now, random, jitterMs)
  if r.state == 'half-open' then
    r.reopens = r.reopens + 1
  else
    r.reopens = 0
  end
  r.state = 'open'
  r.gen = next_gen(r.gen)
  r.openedAt = now
  r.openUntil = now + open_period_ms(p, r.reopens, random, jitterMs)
  r.leases = {}
  r.ps = 0
end

local function close(r)
  r.state = 'closed'
  r.rp = {}
  r.gen = next_gen(r.gen)
  r.openUntil = 0
  r.reopens = 0
  r.cf = 0
  r.ps = 0
  r.leases = {}
  r.buckets = {}
end

local function to_half_open(r)
  r.state = 'half-open'
  r.gen = next_gen(r.gen)
  r.openUntil = 0
  r.ps = 0
  r.leases = {}
end

--[[ The bucket counting at `now` (window.ts currentBucket). Buckets are kept oldest first, only
those that counted something, at most bucketCount. If the clock stepped back, outcomes count in the
newest bucket rather than wiping newer counts. ]]
local function current_bucket(r, p, now)
  local index = math.floor(now / p.bucketMs)
  local newest = r.buckets[#r.buckets]
  if newest ~= nil and newest.index >= index then
    return newest
  end
  local oldest = index - p.bucketCount + 1
  while #r.buckets > 0 and (r.buckets[1].index < oldest or #r.buckets >= p.bucketCount) do
    table.remove(r.buckets, 1)
  end
  local b = { index = index, s = 0, f = 0, sl = 0, ig = 0 }
  r.buckets[#r.buckets + 1] = b
  return b
end

-- Sums the buckets still inside the window ending at `now`, or at the newest bucket if later
-- (window.ts windowCounts): outcomes counted while the clock is behind must be seen.
local function window_counts(r, p, now)
  local newest = math.floor(now / p.bucketMs)
  local latest = r.buckets[#r.buckets]
  if latest ~= nil and latest.index > newest then
    newest = latest.index
  end
  local oldest = newest - p.bucketCount + 1
  local c = { s = 0, f = 0, sl = 0, ig = 0 }
  for _, b in ipairs(r.buckets) do
    if b.index >= oldest then
      c.s = c.s + b.s
      c.f = c.f + b.f
      c.sl = c.sl + b.sl
      c.ig = c.ig + b.ig
    end
  end
  c.total = c.s + c.f
  return c
end

-- policy.ts shouldTrip. A custom policy never trips here.
local function should_trip(p, c, cf)
  if p.kind == 'consecutive-failures' then
    return cf >= p.threshold
  elseif p.kind == 'failures-in-window' then
    return c.f >= p.threshold
  elseif p.kind == 'failure-rate' then
    -- A quotient, as policy.ts: ratio * total is not exact (0.55 * 100 > 55).
    return c.total >= p.minimumCalls and c.total > 0 and c.f / c.total >= p.ratio
  end
  return false
end

-- A transition as a table, or nil when the caller-visible state did not change.
local function transition(from, r)
  local to = circuit_state(r)
  if from == to then
    return nil
  end
  return { from = from, to = to, gen = r.gen }
end

-- Tells every subscriber. The payload names the Redis key; the JS side maps it back to the name.
local function publish(channel, key, t, r, now)
  if t == nil then
    return
  end
  local payload = '{"key":' .. cjson.encode(key) .. ',"from":"' .. t.from .. '","to":"' .. t.to
    .. '","generation":' .. int(t.gen) .. ',"openUntil":' .. int(r.openUntil) .. ',"now":' .. int(now)
    .. ',"override":"' .. r.override .. '"}'
  redis.call('PUBLISH', channel, payload)
end

-- The transition's fields for a reply: from, to, generation ('', '', 0 when none).
local function transition_reply(t)
  if t == nil then
    return '', '', 0
  end
  return t.from, t.to, t.gen
end

--[[ A snapshot as reply fields, in this order:
state, override, generation, openUntil, successes, failures, slow, ignored, consecutiveFailures,
activeProbes, probeSuccesses, reopens, now, overrideUntil, overrideReason, closedAt, activeSlots.
The JS side derives circuitState, retryAfterMs, total and failureRate (floats do not survive a
Redis integer reply). ]]
local function snapshot_reply(out, r, p, now)
  local c = window_counts(r, p, now)
  local active = 0
  for _, l in ipairs(r.leases) do
    if l.expiresAt > now then
      active = active + 1
    end
  end
  local ou, why = 0, ''
  if r.override ~= '' then
    ou, why = r.ou, r.ovr
  end
  local slots = 0
  for _, l in ipairs(r.slots) do
    if l.expiresAt > now then
      slots = slots + 1
    end
  end
  local fields = { r.state, r.override, r.gen, r.openUntil, c.s, c.f, c.sl, c.ig, r.cf, active, r.ps, r.reopens, now,
    ou, why, r.ca, slots }
  for _, v in ipairs(fields) do
    out[#out + 1] = v
  end
  return out
end

--[[ The reply of an operation that may change the record (record, force, reset):
{ 'update', corrupt, stale, <snapshot as in snapshot_reply>, transitionFrom, transitionTo,
  transitionGeneration, belowQuorum (1: the policy tripped, but too few reporters) }. ]]
local function update_reply(corrupt, stale, r, p, now, moved, below)
  local out = { 'update', corrupt and 1 or 0, stale }
  snapshot_reply(out, r, p, now)
  local from, to, tgen = transition_reply(moved)
  out[#out + 1] = from
  out[#out + 1] = to
  out[#out + 1] = tgen
  out[#out + 1] = below and 1 or 0
  return out
end

-- reducer.ts noteReporter: `reporter` reported a failure now; those out of the window are forgotten.
local function note_reporter(r, p, now, reporter)
  local bucket = math.floor(now / p.bucketMs)
  local newest = r.rp[#r.rp]
  if newest ~= nil and newest.bucket > bucket then
    bucket = newest.bucket
  end
  local kept = {}
  for _, x in ipairs(r.rp) do
    if x.id ~= reporter and x.bucket > bucket - p.bucketCount then
      kept[#kept + 1] = x
    end
  end
  kept[#kept + 1] = { id = reporter, bucket = bucket }
  while #kept > MAX_REPORTERS do
    table.remove(kept, 1)
  end
  r.rp = kept
end

-- reducer.ts reportersInWindow.
local function reporters_in_window(r, p, now)
  local newest = math.floor(now / p.bucketMs)
  local latest = r.rp[#r.rp]
  if latest ~= nil and latest.bucket > newest then
    newest = latest.bucket
  end
  local n = 0
  for _, x in ipairs(r.rp) do
    if x.bucket > newest - p.bucketCount then
      n = n + 1
    end
  end
  return n
end
