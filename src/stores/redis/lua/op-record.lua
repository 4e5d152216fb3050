--[[
op-record.lua: record_op records the outcomes of calls admitted under one generation (reducer.ts
record): the body of record.lua, and the first half of carry.lua.

KEYS[1]   the breaker's record (keys.ts breakerKey)
ARGV      the policy (common.lua read_policy), then, from ARGV[POLICY_ARGS + 1]: the batch, one
          string of 15 fields joined by ':' (redis-store.ts recordArgs; one argument, not 15:
          each costs on every call): generation, successes, failures, trailingFailures, slow,
          ignored, trip (1 to ask a custom policy to open, else 0), random ([0, 1), for jitter),
          jitterMs, writer ('' for a batch without an id), n, floor (the batch's id as its writer
          and number, and the lowest number the writer may still send: see field w below),
          reporter ('' for none: a quorum's reporter of the batch's failures), quorum (distinct
          reporters in the window needed to open; 1: any), throttle (the sender's
          adaptive-throttle rejection rate in millionths, '' for none); then
          n, then n concurrency slot ids to give back, then pairs
          of (lease id, outcome: success | failure | ignored) for probes
Returns   { 'update', corrupt, stale, <snapshot: state, override, generation, openUntil,
            successes, failures, slow, ignored, consecutiveFailures, activeProbes,
            probeSuccesses, reopens, now>, transitionFrom, transitionTo, transitionGeneration,
            belowQuorum }. With `short` (carry.lua), when the breaker now admits a call without
          reading or writing anything more: nil and carry.lua's reply in short (see there). Both
          come from the two paths a healthy tenant's call takes: the record counted in a closed
          breaker with no override at its generation, without tripping it (and there is no
          concurrency limit): { 'closed', successes, failures, slow, ignored, consecutiveFailures,
          generation, closedAt, now, activeSlots }; or a success found no record to reset a run
          in (and there is no concurrency limit): { 'none', stale, now }
Writes    only when something changed, and then the batch's number (field w). Publishes the
          transition it made. A batch its writer's entry says was applied changes nothing
          (stale = 1): it was a re-send of a write whose reply was lost. The slots it names are
          given back first, whatever else it does (a stale batch, a re-send, a success with no run to reset); a batch
          that only gives back slots makes no record.
Errors    CIRCUITRY_BADARG <what>
]]
--[[ Field w: what the record remembers of the batches written to it, per writer (a breaker
instance in one process: the part of OutcomeBatch.id before its last '.'), so that a batch re-sent
after a lost reply is counted once. Each entry (common.lua get_writer) holds floor, the lowest
number the writer said it may still send (OutcomeBatch.idFloor: below it, nothing of the writer's
comes again), untilS, when the entry may be forgotten (the server's seconds, DEDUP_MS after the
writer's last batch), and the numbers at or above the floor of the writer's batches that changed
the record. A writer sending one batch at a time keeps one number, its floor. A batch with an
opaque id (no idFloor) is a writer of its own, with number and floor 0. At most MAX_WRITERS entries
(the oldest go first). ]]

-- Whether the writer's batch numbered n changed the record already (or is below its floor).
local function was_applied(e, n)
  if n < e.floor then
    return true
  end
  for _, x in ipairs(e.numbers) do
    if x == n then
      return true
    end
  end
  return false
end

-- Writers `w` with batch n of `writer` (floor `floor`) remembered at `now`: the writer's entry
-- moves last, its numbers below its floor are forgotten, and past MAX_WRITERS the oldest entries are.
local function remember_writer(w, writer, n, floor, now)
  local untilS = math.floor((now + DEDUP_MS) / 1000) + 1
  local e = w.by[writer]
  if e ~= nil and #w.list == 1 and #e.numbers == 1 and e.floor <= floor and e.numbers[1] < floor then
    -- The common entry: this writer alone, its last number below the new floor (a breaker sending
    -- one batch at a time). Changed in place (the record is the caller's to change): what the
    -- general code below makes of it, without a table made.
    e.floor = floor
    e.untilS = untilS
    e.numbers[1] = n
    return w
  end
  local numbers = {}
  if e ~= nil then
    if e.floor > floor then
      floor = e.floor
    end
    for _, x in ipairs(e.numbers) do
      if x >= floor then
        numbers[#numbers + 1] = x
      end
    end
  end
  numbers[#numbers + 1] = n
  local entry = { id = writer, floor = floor, untilS = untilS, numbers = numbers }
  local list = {}
  for _, other in ipairs(w.list) do
    if other.id ~= writer then
      list[#list + 1] = other
    end
  end
  list[#list + 1] = entry
  local first = math.max(1, #list - MAX_WRITERS + 1)
  local kept = { list = {}, by = {} }
  for i = first, #list do
    kept.list[#kept.list + 1] = list[i]
    kept.by[list[i].id] = list[i]
  end
  return kept
end

-- The batch's numbers and id, one argument: 15 fields joined by ':' (see the header). (Written
-- out: a function library may not call `string` while it loads.)
local BATCH_PATTERN = '^([^:]*):([^:]*):([^:]*):([^:]*):([^:]*):([^:]*):([^:]*):([^:]*):([^:]*):([^:]*):([^:]*):([^:]*):([^:]*):([^:]*):([^:]*)$'

local function record_op(KEYS, ARGV, short)
  local key = KEYS[1]
  local p, channel = read_policy(ARGV)
  local b = POLICY_ARGS
  local g, su, fa, tf, sl, ig, tp, rnd, jit, writer, nb, fl, reporter, qu, th = string.match(
    type(ARGV[b + 1]) == 'string' and ARGV[b + 1] or '', BATCH_PATTERN)
  if g == nil then
    bad_arg('batch')
  end
  local generation = arg_number(g, 'generation')
  local successes = arg_number(su, 'successes')
  local failures = arg_number(fa, 'failures')
  local trailing = arg_number(tf, 'trailingFailures')
  local slow = arg_number(sl, 'slow')
  local ignored = arg_number(ig, 'ignored')
  local trip = tp == '1'
  local random = arg_number(rnd, 'random')
  local jitterMs = arg_number(jit, 'jitterMs')
  local number = arg_number(nb, 'n')
  local floor = arg_number(fl, 'floor')
  local quorum = arg_number(qu, 'quorum')
  local throttle = nil
  if th ~= '' then
    throttle = arg_number(th, 'throttle')
    if throttle < 0 or throttle > 1000000 or throttle % 1 ~= 0 then
      bad_arg('throttle')
    end
  end
  local slotCount = arg_number(ARGV[b + 2], 'slots')
  local firstSlot = b + 3
  local firstProbe = firstSlot + slotCount
  if type(reporter) ~= 'string' or (reporter ~= '' and (#reporter > 64 or not string.find(reporter, '^[%w_%.%-]+$'))) then
    bad_arg('reporter')
  end
  -- Failures under a quorum are counted on the general path: who reported them is remembered.
  local reporting = reporter ~= '' and failures > 0
  if type(writer) ~= 'string' or (writer ~= '' and (#writer > 65 or not string.find(writer, '^[%w_%.%-]+$')))
    or number < 0 or number % 1 ~= 0 or number > MAX_SAFE or floor < 0 or floor % 1 ~= 0 or floor > number then
    bad_arg('batch id')
  end
  if slotCount < 0 or slotCount % 1 ~= 0 or #ARGV < firstProbe - 1
    or (#ARGV - firstProbe + 1) % 2 ~= 0 then
    bad_arg('probes')
  end

  local now = now_ms(ARGV)

  --[[ Concurrency slots go back first, whatever the rest of the batch does or is (stale, a re-send,
  a success that resets nothing): a slot is a call that ended, in any generation. Only a record of
  ours is touched (expired slots are dropped with them). ]]
  local only_slots = slotCount > 0 and successes + failures + slow + ignored == 0 and not trip
    and #ARGV < firstProbe

  --[[ Under a count policy (consecutive-failures, failures-in-window) a batch without failures only
  resets the run of failures: it changes nothing, and writes nothing, when there is no run (and makes
  no record when there is none). Its successes are not counted in the window: nothing reads them. ]]
  local count_policy = p.kind == 'consecutive-failures' or p.kind == 'failures-in-window'
  local resets_only = count_policy and failures == 0 and not trip and #ARGV < firstProbe
    and successes + slow + ignored > 0

  -- The healthy tenant's success: no record, so no run to reset and nothing to remember; answered
  -- as the general path would, without reading the record or building one.
  if resets_only and slotCount == 0 and redis.call('EXISTS', key) == 0 then
    -- admitted_under(empty_record(now), generation), without building the record: a fresh record
    -- is closed, without an override, at a multiple of 100.
    local stale = (generation == 0 or generation == math.max(1, math.floor(now)) * 100) and 0 or 1
    if short and p.maxConcurrent == 0 then
      -- (Without a concurrency limit, an acquire now admits under generation 0, making no
      -- record.)
      return nil, { 'none', stale, now }
    end
    local r = empty_record(now)
    r.gen = 0
    return update_reply(false, stale, r, p, now, nil)
  end

  local r, existed, corrupt, raw_text = load(key, p, now)
  -- Whether slots given back changed a record that nothing else below may write.
  local slots_given = false
  if slotCount > 0 and existed and not corrupt and #r.slots > 0 then
    local gone = {}
    for i = firstSlot, firstProbe - 1 do
      gone[ARGV[i]] = true
    end
    local kept = {}
    for _, l in ipairs(r.slots) do
      if not gone[l.id] and l.expiresAt > now then
        kept[#kept + 1] = l
      end
    end
    if #kept < #r.slots then
      r.slots = kept
      slots_given = true
    end
  end
  if only_slots then
    -- Only slots: answered as it stands, and no record made for it.
    if slots_given then
      save(key, p, r, now)
    end
    expire_leases(r, now)
    lapse(r, now) -- a timed override whose time is up reads as lapsed (the next write makes it so)
    local stale = 0
    if not existed then
      r.gen = 0
    elseif not admitted_under(r, generation) or r.override == 'forced-closed' then
      stale = 1
    end
    return update_reply(false, stale, r, p, now, nil)
  end

  --[[ Idempotence: a batch re-sent after a write whose reply was lost (the server may have applied
  it just before a crash or a dropped connection) carries the same id. The record remembers, per
  writer (a breaker instance of one process), the numbers of its batches that changed the record
  and that it may still send again: those at or above the lowest number it says it may still send
  (its floor; below it, nothing comes again). A batch seen before changes nothing and answers the
  current state as stale. A batch that changed nothing is not remembered: a tenant that only
  succeeds costs no record. ]]
  if writer ~= '' then
    local seen = r.w.by[writer]
    if seen ~= nil and was_applied(seen, number) then
      if slots_given then
        save(key, p, r, now)
      end
      expire_leases(r, now)
      return update_reply(false, 1, r, p, now, nil)
    end
  end

  -- Remembers this batch in the record (a batch without an id is not remembered).
  local function remember_batch()
    if writer ~= '' then
      r.w = remember_writer(r.w, writer, number, floor, now)
    end
  end

  -- Adds the batch's outcomes to the current bucket and the run of failures (reducer.ts record, in
  -- closed state). Returns whether there was anything to count.
  local function count_batch(r, p, at)
    if successes + failures + slow + ignored == 0 then
      return false
    end
    if resets_only then
      if successes == 0 or r.cf == trailing then
        return false
      end
      r.cf = trailing
      return true
    end
    local bucket = current_bucket(r, p, at)
    bucket.s = bucket.s + successes
    bucket.f = bucket.f + failures
    bucket.sl = bucket.sl + slow
    bucket.ig = bucket.ig + ignored
    if successes > 0 then
      r.cf = trailing
    else
      r.cf = r.cf + failures
    end
    return true
  end

  -- Whether the counts, after this batch, open a closed breaker.
  local function trips(c, r)
    -- Any failure can trip; a success only under a failure rate (it can complete minimumCalls).
    return ((failures > 0 or (successes > 0 and p.kind == 'failure-rate')) and should_trip(p, c, r.cf))
      or (trip and p.kind == 'custom')
  end

  --[[ The hot path: counting outcomes in a closed breaker with no override, at its generation, that
  do not trip it (closed implies no leases, openUntil, probe successes and reopens of 0), and there
  is no quorum reporter to remember. Anything else takes the general path below. ]]
  if existed and not corrupt and #ARGV < firstProbe and not reporting and r.state == 'closed'
    and r.override == '' and r.gen == generation then
    local cf = r.cf
    local changed = count_batch(r, p, now)
    local c = window_counts(r, p, now)
    if not trips(c, r) then
      if changed or not resets_only then
        -- A throttled breaker's failures tell operators its rejection rate (`tr`, `ta`).
        if throttle ~= nil and failures > 0 then
          r.tr = throttle
          r.ta = now
        end
        remember_batch()
        keep_record(key, save(key, p, r, now), r, p)
      elseif slots_given then
        keep_record(key, save(key, p, r, now), r, p)
      else
        keep_record(key, raw_text, r, p)
      end
      local activeSlots = #r.slots == 0 and 0 or #unexpired(r.slots, now)
      if short and p.maxConcurrent == 0 then
        -- The breaker as acquire_op's hot path would read it now (carry.lua need not read it
        -- again): the counts of the reply, then the breaker.
        return nil, { 'closed', c.s, c.f, c.sl, c.ig, r.cf, generation, r.ca, now, activeSlots }
      end
      return { 'update', 0, 0, 'closed', '', generation, 0, c.s, c.f, c.sl, c.ig, r.cf, 0, 0, 0, now, 0, '',
        r.ca, activeSlots, '', '', 0, 0 }
    end
    -- It trips: the general path counts the batch again, in the record as stored (read again: the
    -- counting above changed this copy; tripping is rare enough for a second read).
    local given = r.slots
    r = load(key, p, now)
    r.slots = given
  end

  -- A missing record is made by the first batch that counts (or by an empty batch: a caller asking
  -- for one), never by one that only resets a run there is none of.
  local dirty = corrupt or (not existed and not resets_only) or slots_given
  expire_leases(r, now)
  local entry = circuit_state(r)
  local lapsed = lapse(r, now)
  if lapsed ~= nil then
    dirty = true
  end

  local stale = 0
  local moved = nil
  local below = false
  local counted = false
  if not admitted_under(r, generation) or r.override == 'forced-closed' then
    stale = 1
  else
    local from = circuit_state(r)
    if r.state == 'closed' then
      if reporting then
        note_reporter(r, p, now, reporter)
      end
      if throttle ~= nil and failures > 0 then
        r.tr = throttle
        r.ta = now
        counted = true
      end
      if count_batch(r, p, now) then
        counted = true
      end
      local c = window_counts(r, p, now)
      if trips(c, r) then
        if quorum <= 1 or reporters_in_window(r, p, now) >= quorum then
          open(r, p, now, random, jitterMs)
        else
          -- The reporter of the failures opens on its own (a success reports nothing).
          below = reporting
        end
        counted = true
      end
    elseif r.state == 'half-open' and #ARGV >= firstProbe then
      local failed = false
      for i = firstProbe, #ARGV, 2 do
        local id, outcome = ARGV[i], ARGV[i + 1]
        for at, l in ipairs(r.leases) do
          if l.id == id then
            -- Found: give the slot back. An expired or unknown lease's slot was already given back.
            table.remove(r.leases, at)
            counted = true
            if outcome == 'success' then
              r.ps = r.ps + 1
            elseif outcome == 'failure' then
              failed = true
            end
            break
          end
        end
      end
      if failed then
        open(r, p, now, random, jitterMs)
      elseif r.ps >= p.successThreshold then
        close(r)
      end
    end
    moved = transition(from, r)
  end

  if lapsed ~= nil then
    moved = transition(lapsed, r)
  end
  note_close(entry, r, now)
  if dirty or counted then
    -- Whenever the record is written, the batch is remembered with it.
    remember_batch()
    save(key, p, r, now)
  elseif not existed then
    -- Still no record: say so (NO_RECORD), rather than the generation of one that was not made.
    r.gen = 0
  end
  publish(channel, key, moved, r, now)

  return update_reply(corrupt, stale, r, p, now, moved, below)
end
