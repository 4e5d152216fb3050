--[[
op-record.lua: record_op records the outcomes of calls admitted under one generation (reducer.ts
record): the body of record.lua, and the first half of carry.lua.

KEYS[1]   the breaker's hash (keys.ts breakerKey)
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
after a lost reply is counted once. '<writer>=<floor>:<until>[:<n>]...,...', oldest writer first:
floor is the lowest number the writer said it may still send (OutcomeBatch.idFloor: below it,
nothing of the writer's comes again), until is when the entry may be forgotten (the server's
seconds, DEDUP_MS after the writer's last batch), then the numbers at or above the floor of the
writer's batches that changed the record. A writer sending one batch at a time keeps one number.
A batch with an opaque id (no idFloor) is a writer of its own, with number and floor 0. At most
MAX_WRITERS entries (the oldest go first). A malformed field is forgotten, never an error. ]]
local DEDUP_MS = 60000
local MAX_WRITERS = 512

-- Field w read as nothing remembered (absent, or malformed: forgotten, never an error).
local function no_writers()
  return { list = {}, by = {} }
end

-- Field w as { list = writers oldest first, by = entry by writer }; an entry is
-- { id, floor, untilS, numbers }. Entries past their time are left out. One pattern pass for the
-- entries (as parse_buckets), and none for the common entry of one number.
local function parse_writers(s, now)
  if s == nil or s == '' then
    return no_writers()
  end
  local writers = no_writers()
  local nowS = now / 1000
  -- The common field: one writer, one number (a breaker instance sending one batch at a time),
  -- read by one anchored pattern instead of the loop below.
  local id, floor, untilS, n = string.match(s, '^([%w_%.%-]+)=(%d+):(%d+):(%d+)$')
  if id ~= nil then
    local e = { id = id, floor = tonumber(floor), untilS = tonumber(untilS), numbers = { tonumber(n) } }
    if e.untilS > nowS then
      writers.list[1] = e
      writers.by[id] = e
    end
    return writers
  end
  local at = 1
  for first, id, floor, untilS, rest, after in string.gmatch(s, '()([%w_%.%-]+)=(%d+):(%d+)([:%d]*)()') do
    if first ~= at or (after <= #s and string.byte(s, after) ~= 44) then -- ','
      return no_writers()
    end
    local e = { id = id, floor = tonumber(floor), untilS = tonumber(untilS), numbers = {} }
    if rest ~= '' then
      local one = string.find(rest, ':', 2, true) == nil and tonumber(string.sub(rest, 2))
      if one then
        e.numbers[1] = one
      else
        for n in string.gmatch(rest, ':(%d+)') do
          e.numbers[#e.numbers + 1] = tonumber(n)
        end
      end
    end
    if e.untilS > nowS and writers.by[id] == nil then
      writers.list[#writers.list + 1] = e
      writers.by[id] = e
    end
    if after > #s then
      return writers
    end
    at = after + 1
  end
  return no_writers()
end

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

local function encode_entry(id, floor, untilS, numbers)
  if #numbers == 1 then
    return string.format('%s=%d:%d:%d', id, floor, untilS, numbers[1])
  end
  local parts = { string.format('%s=%d:%d', id, floor, untilS) }
  for _, x in ipairs(numbers) do
    parts[#parts + 1] = int(x)
  end
  return table.concat(parts, ':')
end

-- encode_writers in general: any writers, any numbers (untilS: when the writer's entry may be forgotten).
local function encode_writers_all(writers, writer, n, floor, untilS)
  local parts = {}
  for _, other in ipairs(writers.list) do
    if other.id ~= writer then
      parts[#parts + 1] = encode_entry(other.id, other.floor, other.untilS, other.numbers)
    end
  end
  local e = writers.by[writer]
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
  parts[#parts + 1] = encode_entry(writer, floor, untilS, numbers)
  local first = math.max(1, #parts - MAX_WRITERS + 1)
  return table.concat(parts, ',', first)
end

-- Field w with batch n of `writer` (floor `floor`) remembered: the writer's entry moves last, its
-- numbers below its floor are forgotten, and past MAX_WRITERS the oldest entries are.
local function encode_writers(writers, writer, n, floor, now)
  local untilS = math.floor((now + DEDUP_MS) / 1000) + 1
  local list = writers.list
  local e = writers.by[writer]
  -- The common field: this writer alone (or no one), its earlier numbers all below the floor (a
  -- breaker sending one batch at a time): one entry of one number, as encode_writers_all would
  -- write it, formatted once (test/redis/lua.test.ts compares the two).
  if #list == 0 or (#list == 1 and e ~= nil) then
    local low = floor
    if e ~= nil and e.floor > low then
      low = e.floor
    end
    local alone = true
    if e ~= nil then
      for _, x in ipairs(e.numbers) do
        if x >= low then
          alone = false
        end
      end
    end
    if alone then
      return string.format('%s=%d:%d:%d', writer, low, untilS, n)
    end
  end
  return encode_writers_all(writers, writer, n, floor, untilS)
end

--[[ Field buckets on the hot path after count_batch: `buckets` were parsed from `s` (each with
`at`, where its text starts in s), then some were dropped from the front and the newest was counted
in: one of s's, or a new one after them. Only the newest changed, so the text of the others is
taken from s as it is, and one bucket is formatted instead of all of them (a window of 10 buckets
costs ~5 µs to format). Returns the field; each bucket's `at` then says where its text starts in it,
as parse_buckets of the field would (keep_buckets keeps them so). ]]
local function encode_counted(s, buckets)
  local n = #buckets
  if n == 0 then
    return ''
  end
  local newest = buckets[n]
  local text = string.format('%d:%d:%d:%d:%d', newest.index, newest.s, newest.f, newest.sl, newest.ig)
  local field = text
  if n > 1 then
    -- (The first is one of s's: only the newest can be new.)
    local first = buckets[1].at
    if newest.at ~= nil then
      field = string.sub(s, first, newest.at - 1) .. text
    else
      field = string.sub(s, first) .. ',' .. text
    end
    for i = 1, n - 1 do
      buckets[i].at = buckets[i].at - first + 1
    end
  end
  newest.at = #field - #text + 1
  return field
end

--[[ Buckets the hot path parsed and wrote, by key: { text = field buckets as written, buckets =
its buckets as parse_buckets gives them, `at` included, n = how many }. A breaker called steadily under a failure
rate finds its own last write there on its next call, and its window of buckets is not parsed again
(~1 µs a bucket). Parsing is a function of the text alone, so whoever wrote the text, the same text
gives the same buckets: an entry is used only when the field holds exactly its text, and whatever
else may have happened to the record does not matter. An entry is taken when used (its tables
are the caller's to change) and put back by the write. The table lives as long as the function
library (a script run by EVALSHA starts with an empty one: nothing is kept, nothing is wrong), and
is dropped whole once it would hold more than BUCKETS_KEPT_MAX buckets in all, as the policy cache
is past its size: ~460 B of the library's memory a bucket (its table), so ~1.9 MB at most, ~400
breakers with 10 buckets. (Kept as numbers instead, ~140 B a bucket, a full window measured ~5 µs
more per call on the server than these tables, ~5 µs less than parsing.) ]]
local BUCKETS_KEPT_MAX = 4096
local buckets_kept = {}
local buckets_kept_size = 0

-- The buckets of field text `text` of `key`: kept ones when they are its, else parsed (nil when
-- malformed, as parse_buckets).
local function hot_buckets(key, text)
  local kept = buckets_kept[key]
  if kept ~= nil and kept.text ~= nil then
    local same = kept.text == text
    kept.text = nil -- taken, used or not: the caller may change the tables
    if same then
      return kept.buckets
    end
  end
  return parse_buckets(text)
end

-- Keeps `buckets` as the parse of `text`, the field encode_counted just made of them.
local function keep_buckets(key, text, buckets)
  local n = #buckets
  if n == 0 then
    return
  end
  local kept = buckets_kept[key]
  local size = buckets_kept_size + n - (kept == nil and 0 or kept.n)
  if size > BUCKETS_KEPT_MAX then
    buckets_kept = {}
    kept = nil
    size = n
  end
  buckets_kept_size = size
  if kept == nil then
    buckets_kept[key] = { text = text, buckets = buckets, n = n }
  else
    kept.text = text
    kept.buckets = buckets
    kept.n = n
  end
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
  a success that resets nothing): a slot is a call that ended, in any generation. Only the slots
  field of a record of ours is touched (expired slots are dropped with them). ]]
  if slotCount > 0 then
    local q = redis.pcall('HMGET', key, 'v', 'slots')
    if not q.err and q[1] == SCHEMA and q[2] then
      local held = parse_leases(q[2])
      if held ~= nil then
        local gone = {}
        for i = firstSlot, firstProbe - 1 do
          gone[ARGV[i]] = true
        end
        local kept = {}
        for _, l in ipairs(held) do
          if not gone[l.id] and l.expiresAt > now then
            kept[#kept + 1] = l
          end
        end
        if #kept == 0 then
          redis.call('HDEL', key, 'slots')
        elseif #kept < #held then
          redis.call('HSET', key, 'slots', encode_leases(kept))
        end
      end
    end
    if successes + failures + slow + ignored == 0 and not trip and #ARGV < firstProbe then
      -- Only slots: answered as it stands, and no record made for it.
      local r, existed = load(key, now)
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
  end

  --[[ Under a count policy (consecutive-failures, failures-in-window) a batch without failures only
  resets the run of failures: it changes nothing, and writes nothing, when there is no run (and makes
  no record when there is none). Its successes are not counted in the window: nothing reads them. ]]
  local count_policy = p.kind == 'consecutive-failures' or p.kind == 'failures-in-window'
  local resets_only = count_policy and failures == 0 and not trip and #ARGV < firstProbe
    and successes + slow + ignored > 0

  -- The healthy tenant's success: no record, so no run to reset and nothing to remember; answered
  -- as the general path would, without reading the batch ids or building a record.
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

  --[[ Idempotence: a batch re-sent after a write whose reply was lost (the server may have applied
  it just before a crash or a dropped connection) carries the same id. The record remembers, per
  writer (a breaker instance of one process), the numbers of its batches that changed the record
  and that it may still send again: those at or above the lowest number it says it may still send
  (its floor; below it, nothing comes again). A batch seen before changes nothing and answers the
  current state as stale. A batch that changed nothing is not remembered: a tenant that only
  succeeds costs no record. ]]
  -- The fields the hot path below reads, with field w: one read for both (nil: the batch cannot
  -- take the hot path, or the key is not a hash).
  local q = nil
  if #ARGV < firstProbe and not reporting then
    q = redis.pcall('HMGET', key, 'v', 'state', 'override', 'gen', 'cf', 'buckets', 'ca', 'slots', 'w')
    if q.err then
      q = nil
    end
  end
  local writers = nil
  if writer ~= '' then
    local w
    if q ~= nil then
      w = q[9]
    else
      w = redis.pcall('HGET', key, 'w')
    end
    writers = parse_writers(type(w) == 'string' and w or nil, now)
    local seen = writers.by[writer]
    if seen ~= nil and was_applied(seen, number) then
      local r = load(key, now)
      expire_leases(r, now)
      return update_reply(false, 1, r, p, now, nil)
    end
  end

  -- The writers' entries with this batch in them, as field w's new value (nil: a batch without an id).
  local function remembered()
    if writers == nil then
      return nil
    end
    return encode_writers(writers, writer, number, floor, now)
  end

  local function remember_batch()
    local w = remembered()
    if w ~= nil then
      redis.call('HSET', key, 'w', w)
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
  do not trip it. Reads and writes only the fields that change (closed implies no leases, openUntil,
  probe successes and reopens of 0). Anything else takes the general path below. ]]
  if q ~= nil then
    if q[1] == SCHEMA and q[2] == 'closed' and (not q[3] or q[3] == '') and count(q[4]) == generation then
      local cf = count_or_zero(q[5])
      local bucketsText = q[6] or ''
      local buckets = hot_buckets(key, bucketsText)
      local slots = parse_leases(q[8] or '')
      if cf ~= nil and buckets ~= nil and slots ~= nil then
        local r = { buckets = buckets, cf = cf }
        local changed = count_batch(r, p, now)
        local c = window_counts(r, p, now)
        if not trips(c, r) then
          if resets_only then
            if changed then
              if r.cf == 0 then
                redis.call('HDEL', key, 'cf')
              else
                redis.call('HSET', key, 'cf', int(r.cf))
              end
              remember_batch()
            end
          else
            local newText = encode_counted(bucketsText, r.buckets)
            local set = { 'buckets', newText }
            if r.cf ~= cf then
              set[#set + 1] = 'cf'
              set[#set + 1] = int(r.cf)
            end
            -- A throttled breaker's failures tell operators its rejection rate (`tr`, `ta`).
            if throttle ~= nil and failures > 0 then
              set[#set + 1] = 'tr'
              set[#set + 1] = int(throttle)
              set[#set + 1] = 'ta'
              set[#set + 1] = int(now)
            end
            local w = remembered()
            if w ~= nil then
              set[#set + 1] = 'w'
              set[#set + 1] = w
            end
            redis.call('HSET', key, unpack(set))
            redis.call('PEXPIRE', key, int(gc_ttl_ms(p, { openUntil = 0 }, now)))
            keep_buckets(key, newText, r.buckets)
          end
          local ca = count_or_zero(q[7])
          local activeSlots = #slots == 0 and 0 or #unexpired(slots, now)
          if short and p.maxConcurrent == 0 and ca ~= nil and generation >= 1 then
            -- The breaker as acquire_op's hot path would read it now (carry.lua need not read it
            -- again): the counts of the reply, then the breaker.
            return nil, { 'closed', c.s, c.f, c.sl, c.ig, r.cf, generation, ca, now, activeSlots }
          end
          return { 'update', 0, 0, 'closed', '', generation, 0, c.s, c.f, c.sl, c.ig, r.cf, 0, 0, 0, now, 0, '',
            ca or 0, activeSlots, '', '', 0, 0 }
        end
      end
    end
  end

  local r, existed, corrupt = load(key, now)
  -- A missing record is made by the first batch that counts (or by an empty batch: a caller asking
  -- for one), never by one that only resets a run there is none of.
  local dirty = corrupt or (not existed and not resets_only)
  expire_leases(r, now)
  local entry = circuit_state(r)
  local lapsed = lapse(r, now)
  if lapsed ~= nil then
    dirty = true
  end

  local stale = 0
  local moved = nil
  local below = false
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
        dirty = true
      end
      if count_batch(r, p, now) then
        dirty = true
      end
      local c = window_counts(r, p, now)
      if trips(c, r) then
        if quorum <= 1 or reporters_in_window(r, p, now) >= quorum then
          open(r, p, now, random, jitterMs)
        else
          -- The reporter of the failures opens on its own (a success reports nothing).
          below = reporting
        end
        dirty = true
      end
    elseif r.state == 'half-open' and #ARGV >= firstProbe then
      local failed = false
      for i = firstProbe, #ARGV, 2 do
        local id, outcome = ARGV[i], ARGV[i + 1]
        for at, l in ipairs(r.leases) do
          if l.id == id then
            -- Found: give the slot back. An expired or unknown lease's slot was already given back.
            table.remove(r.leases, at)
            dirty = true
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
  if dirty then
    save(key, p, r, now)
    remember_batch()
  elseif not existed then
    -- Still no record: say so (NO_RECORD), rather than the generation of one that was not made.
    r.gen = 0
  end
  publish(channel, key, moved, r, now)

  return update_reply(corrupt, stale, r, p, now, moved, below)
end
