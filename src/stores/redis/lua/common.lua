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

The record is one string, packed (see encode below), holding these fields; a field at its
default is left out, so a closed breaker with a failure is its state, generation, run, one bucket
and the batch number of the process that wrote it (~26 bytes):
  state      closed | open | half-open
  gen        generation
  override   forced-open | forced-closed | metrics-only (default: none)
  openedAt, openUntil, reopens, cf (consecutive failures), ps (probe successes) (default 0)
  seq        lease counter, so lease and slot ids are unique per breaker (default 0)
  ou         when a timed override lapses, in the server's ms (default 0: never)
  or         why the override was set, at most 800 bytes (default: none)
  ca         when callers last saw it close after rejecting (default 0: never): the ramp's anchor
  leases     probe leases: id and expiry (default: none)
  slots      concurrency slots held (maxConcurrent), as leases (default: none; never written
             without a limit)
  buckets    index, successes, failures, slow, ignored; oldest first (default: none)
  w          the batch numbers each writer last wrote (op-record.lua; default: none)
  rp         who reported failures in the window (a quorum): id and bucket, oldest first, at most
             MAX_REPORTERS (default: none; never written without a quorum)
  tr, ta     the adaptive-throttle rejection rate the last throttled breaker reported with its
             failures, in millionths, and when, in the server's ms (default 0: none reported)

Errors raised (as Redis error replies): CIRCUITRY_BADARG <what> when an argument is malformed.
A stored record that is not valid is never an error: it is reset, and the reply's corrupt flag is 1.
]]

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
    tr = 0, ta = 0, w = { list = {}, by = {} },
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

--[[ The record, packed. One string value per breaker (a short one is kept inside its key's
object: ≤ 28 bytes cost a key 193 B of Redis memory, 29–44 bytes 209 B, a hash of the same fields
~270 B). Every number is an unsigned LEB128 varint (`u`), or a signed one (`s`: zigzag) for what is
stored relative to the record's stamp, so a record of now holds small numbers:

  byte 1    0xA0 + state * 4 + override (state: closed 0, open 1, half-open 2; override: none 0,
            forced-open 1, forced-closed 2, metrics-only 3). 0xA_ marks a record.
  u mask    which of the fields below follow (a field at its default is left out)
  4 bytes   stamp S: when the record was written, the server's seconds (big-endian)
  s         gen - S * 100000
  then, in the order of their mask bits:
  1         cf                        u
  2         one bucket                bucket
  4         buckets                   u n, then n buckets
  8         one writer                writer
  16        writers                   u n, then n writers
  32        ca                        s (ms - S * 1000)
  64        slots                     u n, then n leases
  128       seq                       u
  256       openedAt                  s (ms)
  512       openUntil                 s (ms)
  1024      reopens                   u
  2048      ps                        u
  4096      leases                    u n, then n leases
  8192      ou                        s (ms)
  16384     or                        text
  32768     rp                        u n, then n of: text id, s (bucket - B)
  65536     tr                        u
  131072    ta                        s (ms)
A bucket: s (its index - B for the first, - the index before it for the others; B is the bucket of
S * 1000 in the policy's bucketMs), one byte saying which of successes, failures, slow, ignored
(1, 2, 4, 8) are not 0, then those, u each. A lease: text id, s expiresAt (ms). Text: u length, the
bytes. A writer (field w of op-record.lua's batch numbers): u (length of its id * 4 + 2 when it holds
one number equal to its floor + 1 when its untilS is S + 61, the time a write at S gives it), the
id, then s (untilS - S) unless that was said, then u floor, then, unless that was said too, u count
and the numbers (u each). A string that does not read to its end this way is not a record. ]]
local MARK = 160
local STATE_CODE = { closed = 0, open = 1, ['half-open'] = 2 }
local STATE_OF = { [0] = 'closed', [1] = 'open', [2] = 'half-open' }
local OVERRIDE_CODE = { [''] = 0, ['forced-open'] = 1, ['forced-closed'] = 2, ['metrics-only'] = 3 }
local OVERRIDE_OF = { [0] = '', [1] = 'forced-open', [2] = 'forced-closed', [3] = 'metrics-only' }
-- The largest number a varint may hold: the zigzag of MAX_SAFE (even, so exact as a double).
local MAX_VARINT = 18014398509481984
-- Field w's entries outlive their writer's last batch by this much (op-record.lua).
local DEDUP_MS = 60000
local MAX_WRITERS = 512
local MAX_ID = 65

-- The encoder's output: bytes (numbers) in `eb`, flushed into strings in `ep` around text.
local eb, en, ep, epn = {}, 0, {}, 0

local function flush_bytes()
  if en > 0 then
    local at = 1
    while at <= en do
      local last = math.min(en, at + 3999)
      epn = epn + 1
      ep[epn] = string.char(unpack(eb, at, last))
      at = last + 1
    end
    en = 0
  end
end

local function put_u(x)
  if x < 128 then
    en = en + 1
    eb[en] = x
    return
  end
  while x >= 128 do
    local low = x % 128
    en = en + 1
    eb[en] = low + 128
    x = (x - low) / 128
  end
  en = en + 1
  eb[en] = x
end

local function put_s(x)
  if x >= 0 then
    put_u(x * 2)
  else
    put_u(-x * 2 - 1)
  end
end

local function put_text(s)
  put_u(#s)
  if #s > 0 then
    flush_bytes()
    epn = epn + 1
    ep[epn] = s
  end
end

-- A list of { id = text, [field] = number }: leases and slots (field expiresAt, relative to the
-- stamp's ms) and reporters (field bucket, relative to the base bucket).
local function put_entries(list, field, base)
  put_u(#list)
  for _, e in ipairs(list) do
    put_text(e.id)
    put_s(e[field] - base)
  end
end

local function put_bucket(b, before)
  put_s(b.index - before)
  local s, f, sl, ig = b.s, b.f, b.sl, b.ig
  local which = 0
  if s > 0 then which = which + 1 end
  if f > 0 then which = which + 2 end
  if sl > 0 then which = which + 4 end
  if ig > 0 then which = which + 8 end
  en = en + 1
  eb[en] = which
  if s > 0 then put_u(s) end
  if f > 0 then put_u(f) end
  if sl > 0 then put_u(sl) end
  if ig > 0 then put_u(ig) end
end

local function put_writer(e, stamp)
  local single = #e.numbers == 1 and e.numbers[1] == e.floor
  local usual = e.untilS == stamp + 61
  put_u(#e.id * 4 + (single and 2 or 0) + (usual and 1 or 0))
  flush_bytes()
  epn = epn + 1
  ep[epn] = e.id
  if not usual then
    put_s(e.untilS - stamp)
  end
  put_u(e.floor)
  if not single then
    put_u(#e.numbers)
    for _, x in ipairs(e.numbers) do
      put_u(x)
    end
  end
end

-- The bucket index the record's relative indices count from.
local function base_bucket(p, stamp)
  return math.floor(stamp * 1000 / p.bucketMs)
end

-- `r` packed at `now` (the stamp). Fields at their default are left out.
local function encode(r, p, now)
  en, epn = 0, 0
  local stamp = math.floor(now / 1000)
  local ms, bb = stamp * 1000, base_bucket(p, stamp)
  local nb, nw = #r.buckets, #r.w.list
  local mask = 0
  if r.cf ~= 0 then mask = mask + 1 end
  if nb == 1 then mask = mask + 2 elseif nb > 1 then mask = mask + 4 end
  if nw == 1 then mask = mask + 8 elseif nw > 1 then mask = mask + 16 end
  if r.ca ~= 0 then mask = mask + 32 end
  if #r.slots > 0 then mask = mask + 64 end
  if r.seq ~= 0 then mask = mask + 128 end
  if r.openedAt ~= 0 then mask = mask + 256 end
  if r.openUntil ~= 0 then mask = mask + 512 end
  if r.reopens ~= 0 then mask = mask + 1024 end
  if r.ps ~= 0 then mask = mask + 2048 end
  if #r.leases > 0 then mask = mask + 4096 end
  if r.ou ~= 0 then mask = mask + 8192 end
  if r.ovr ~= '' then mask = mask + 16384 end
  if #r.rp > 0 then mask = mask + 32768 end
  if r.tr ~= 0 then mask = mask + 65536 end
  if r.ta ~= 0 then mask = mask + 131072 end
  en = 1
  eb[1] = MARK + STATE_CODE[r.state] * 4 + OVERRIDE_CODE[r.override]
  put_u(mask)
  local st = stamp
  eb[en + 4] = st % 256
  st = (st - st % 256) / 256
  eb[en + 3] = st % 256
  st = (st - st % 256) / 256
  eb[en + 2] = st % 256
  st = (st - st % 256) / 256
  eb[en + 1] = st % 256
  en = en + 4
  put_s(r.gen - stamp * 100000)
  if r.cf ~= 0 then put_u(r.cf) end
  if nb > 1 then put_u(nb) end
  local before = bb
  for i, b in ipairs(r.buckets) do
    if i == nb then
      -- The newest: the one a write usually changes.
      put_bucket(b, before)
    elseif b.enc ~= nil and b.encBefore == before and b.encS == b.s and b.encF == b.f and b.encSl == b.sl
      and b.encIg == b.ig then
      -- An older bucket packed as before (a steady breaker's window: only the newest changes).
      flush_bytes()
      epn = epn + 1
      ep[epn] = b.enc
    else
      -- Packed, and its bytes kept with it (~1 µs a bucket saved on the next writes).
      local start = en + 1
      put_bucket(b, before)
      b.enc = string.char(unpack(eb, start, en))
      b.encBefore, b.encS, b.encF, b.encSl, b.encIg = before, b.s, b.f, b.sl, b.ig
    end
    before = b.index
  end
  if nw > 1 then put_u(nw) end
  for _, e in ipairs(r.w.list) do
    put_writer(e, stamp)
  end
  if r.ca ~= 0 then put_s(r.ca - ms) end
  if #r.slots > 0 then put_entries(r.slots, 'expiresAt', ms) end
  if r.seq ~= 0 then put_u(r.seq) end
  if r.openedAt ~= 0 then put_s(r.openedAt - ms) end
  if r.openUntil ~= 0 then put_s(r.openUntil - ms) end
  if r.reopens ~= 0 then put_u(r.reopens) end
  if r.ps ~= 0 then put_u(r.ps) end
  if #r.leases > 0 then put_entries(r.leases, 'expiresAt', ms) end
  if r.ou ~= 0 then put_s(r.ou - ms) end
  if r.ovr ~= '' then put_text(r.ovr) end
  if #r.rp > 0 then put_entries(r.rp, 'bucket', bb) end
  if r.tr ~= 0 then put_u(r.tr) end
  if r.ta ~= 0 then put_s(r.ta - ms) end
  if epn == 0 and en <= 4000 then
    -- (Bytes only: a record without a writer, a lease or a reason.)
    local out = string.char(unpack(eb, 1, en))
    en = 0
    return out
  end
  flush_bytes()
  return table.concat(ep, '', 1, epn)
end

-- The decoder's input: the string `ds`, its bytes in `db` (1-based), the position `di`, the length.
local ds, db, di, dn = '', {}, 1, 0

-- A varint, or nil when it runs past the end or past MAX_VARINT.
local function get_u()
  local first = db[di]
  if first ~= nil and first < 128 then
    di = di + 1
    return first
  end
  local x, scale = 0, 1
  while di <= dn do
    local byte = db[di]
    di = di + 1
    if byte < 128 then
      x = x + byte * scale
      if x > MAX_VARINT then
        return nil
      end
      return x
    end
    x = x + (byte - 128) * scale
    scale = scale * 128
    if scale > 72057594037927936 then -- more than 8 bytes
      return nil
    end
  end
  return nil
end

local function get_s()
  local u = get_u()
  if u == nil then
    return nil
  end
  if u % 2 == 0 then
    return u / 2
  end
  return -(u + 1) / 2
end

-- A time or count stored relative to `base`: nil unless it lands in [0, MAX_SAFE].
local function get_at(base)
  local d = get_s()
  if d == nil then
    return nil
  end
  local t = base + d
  if t < 0 or t > MAX_SAFE then
    return nil
  end
  return t
end

local function get_count()
  local x = get_u()
  if x == nil or x > MAX_SAFE then
    return nil
  end
  return x
end

local function get_text(max)
  local n = get_u()
  if n == nil or n > max or di + n - 1 > dn then
    return nil
  end
  local s = string.sub(ds, di, di + n - 1)
  di = di + n
  return s
end

-- What put_entries wrote: at most maxN entries, ids of 1 to maxId bytes; nil when malformed.
local function get_entries(field, base, maxN, maxId)
  local n = get_u()
  if n == nil or n > maxN then
    return nil
  end
  local list = {}
  for i = 1, n do
    local id = get_text(maxId)
    local at = get_at(base)
    if id == nil or id == '' or at == nil then
      return nil
    end
    list[i] = { id = id, [field] = at }
  end
  return list
end

local function get_bucket(before)
  local index = get_s()
  if index == nil or di > dn then
    return nil
  end
  index = before + index
  local which = db[di]
  di = di + 1
  if which > 15 then
    return nil
  end
  local b = { index = index, s = 0, f = 0, sl = 0, ig = 0 }
  if which % 2 == 1 then b.s = get_count() end
  if which % 4 >= 2 then b.f = get_count() end
  if which % 8 >= 4 then b.sl = get_count() end
  if which >= 8 then b.ig = get_count() end
  if b.s == nil or b.f == nil or b.sl == nil or b.ig == nil then
    return nil
  end
  return b
end

-- One writer's entry, or nil when malformed; `live` false when it is past its time.
local function get_writer(stamp, nowS)
  local head = get_u()
  if head == nil then
    return nil
  end
  local usual = head % 2 == 1
  local single = head % 4 >= 2
  local len = (head - head % 4) / 4
  if len < 1 or len > MAX_ID or di + len - 1 > dn then
    return nil
  end
  local id = string.sub(ds, di, di + len - 1)
  di = di + len
  local untilS = stamp + 61
  if not usual then
    untilS = get_at(stamp)
  end
  local floor = get_count()
  if untilS == nil or floor == nil then
    return nil
  end
  local numbers = { floor }
  if not single then
    local n = get_u()
    if n == nil or n > dn then
      return nil
    end
    numbers = {}
    for i = 1, n do
      numbers[i] = get_count()
      if numbers[i] == nil then
        return nil
      end
    end
  end
  return { id = id, floor = floor, untilS = untilS, numbers = numbers }, untilS > nowS
end

-- Field w as { list = writers oldest first, by = entry by writer }.
local function no_writers()
  return { list = {}, by = {} }
end

--[[ The record packed in `s`, read at `now` under policy `p` (whose bucketMs the bucket indices
are relative to); writers' entries past their time are left out. Returns the record, or nil and
why `s` is not one. ]]
local function decode(s, p, now)
  ds, di, dn = s, 1, #s
  if dn < 7 then
    return nil, 'a string that is not a circuitry record (' .. dn .. ' bytes: too short for one)'
  end
  if dn <= 4000 then
    db = { string.byte(s, 1, dn) }
  else
    db = {}
    for at = 1, dn, 4000 do
      local chunk = { string.byte(s, at, math.min(dn, at + 3999)) }
      for i, x in ipairs(chunk) do
        db[at + i - 1] = x
      end
    end
  end
  local head = db[1]
  if head < MARK or head >= MARK + 12 then
    return nil, string.format('a string that is not a circuitry record (its first byte is 0x%02x; a record\'s is 0xa0-0xab)', head)
  end
  local state = STATE_OF[math.floor((head - MARK) / 4)]
  local override = OVERRIDE_OF[(head - MARK) % 4]
  di = 2
  local mask = get_u()
  if state == nil or mask == nil or mask >= 262144 or di + 3 > dn then
    return nil, 'the state or the field mask is malformed'
  end
  local stamp = ((db[di] * 256 + db[di + 1]) * 256 + db[di + 2]) * 256 + db[di + 3]
  di = di + 4
  local ms, bb = stamp * 1000, base_bucket(p, stamp)
  local gen = get_at(stamp * 100000)
  if gen == nil or gen < 1 then
    return nil, 'the generation is malformed'
  end
  local r = {
    state = state, override = override, gen = gen, openedAt = 0, openUntil = 0, reopens = 0, cf = 0,
    ps = 0, seq = 0, leases = {}, slots = {}, buckets = {}, ou = 0, ovr = '', ca = 0, rp = {}, tr = 0,
    ta = 0, w = no_writers(),
  }
  local function has(b)
    return mask % (b * 2) >= b
  end
  local field = 'cf'
  local ok = true
  if has(1) then r.cf = get_count(); ok = r.cf ~= nil end
  if ok and (has(2) or has(4)) then
    field = 'buckets'
    local n = 1
    if has(4) then
      n = get_u()
      ok = n ~= nil and n > 1 and n <= dn and not has(2)
    end
    local before = bb
    for i = 1, ok and n or 0 do
      local b = get_bucket(before)
      if b == nil or (i > 1 and b.index <= before) then
        ok = false
        break
      end
      r.buckets[i] = b
      before = b.index
    end
  end
  if ok and (has(8) or has(16)) then
    field = 'w'
    local n = 1
    if has(16) then
      n = get_u()
      ok = n ~= nil and n > 1 and n <= MAX_WRITERS and not has(8)
    end
    local nowS = now / 1000
    for _ = 1, ok and n or 0 do
      local e, live = get_writer(stamp, nowS)
      if e == nil or r.w.by[e.id] ~= nil then
        ok = false
        break
      end
      if live then
        r.w.list[#r.w.list + 1] = e
        r.w.by[e.id] = e
      end
    end
  end
  if ok and has(32) then field = 'ca'; r.ca = get_at(ms); ok = r.ca ~= nil end
  if ok and has(64) then field = 'slots'; r.slots = get_entries('expiresAt', ms, dn, MAX_ID); ok = r.slots ~= nil end
  if ok and has(128) then field = 'seq'; r.seq = get_count(); ok = r.seq ~= nil end
  if ok and has(256) then field = 'openedAt'; r.openedAt = get_at(ms); ok = r.openedAt ~= nil end
  if ok and has(512) then field = 'openUntil'; r.openUntil = get_at(ms); ok = r.openUntil ~= nil end
  if ok and has(1024) then field = 'reopens'; r.reopens = get_count(); ok = r.reopens ~= nil end
  if ok and has(2048) then field = 'ps'; r.ps = get_count(); ok = r.ps ~= nil end
  if ok and has(4096) then field = 'leases'; r.leases = get_entries('expiresAt', ms, dn, MAX_ID); ok = r.leases ~= nil end
  if ok and has(8192) then field = 'ou'; r.ou = get_at(ms); ok = r.ou ~= nil end
  if ok and has(16384) then field = 'or'; r.ovr = get_text(MAX_REASON); ok = r.ovr ~= nil end
  if ok and has(32768) then field = 'rp'; r.rp = get_entries('bucket', bb, MAX_REPORTERS, 64); ok = r.rp ~= nil end
  if ok and has(65536) then field = 'tr'; r.tr = get_count(); ok = r.tr ~= nil and r.tr <= 1000000 end
  if ok and has(131072) then field = 'ta'; r.ta = get_at(ms); ok = r.ta ~= nil end
  if not ok then
    return nil, 'field ' .. field .. ' is malformed'
  end
  if di ~= dn + 1 then
    return nil, (dn - di + 1) .. ' bytes past the end of the record'
  end
  return r
end

-- A fresh record for a key that holds nothing readable, marked so the caller reports it.
local function fresh_reset(now)
  local r = empty_record(now)
  r.reset = true
  return r, true, true
end

--[[ Records this library wrote, by key: { text = the value written, r = the record it packs,
bucketMs = of the policy it was packed under }. A breaker called steadily finds its own last write
here on its next call, and the record is not decoded again (~8 µs for one bucket, ~18 µs for ten on
the development machine). Decoding is a function of the text, the bucket width and the time alone,
and encode loses nothing, so an entry is used only when the key holds exactly its text under the same
bucket width, with the writers' entries past their time left out as decode leaves them out. An
entry is taken when used (the caller may change the record) and put back by the next write. The
table lives as long as the function library (a script run by EVALSHA starts with an empty one:
nothing is kept, nothing is wrong) and is dropped whole once it would weigh more than
RECORDS_KEPT_MAX: a record weighs 2, plus 1 a bucket and 1 a writer's entry, so it holds ~1,300
breakers with one bucket, or ~315 with a full window of ten (800 such breakers written in turn:
used_memory_vm_functions at most 1.4 MB above its start, what Lua's collector had not yet freed
included; 5.4 MB for a cap of 1,000 records). ]]
local RECORDS_KEPT_MAX = 4096
local records_kept = {}
local records_kept_size = 0

local function keep_record(key, text, r, p)
  local weight = 2 + #r.buckets + #r.w.list
  local kept = records_kept[key]
  local size = records_kept_size + weight - (kept == nil and 0 or kept.weight)
  if size > RECORDS_KEPT_MAX then
    records_kept = {}
    size = weight
  end
  records_kept_size = size
  records_kept[key] = { text = text, r = r, bucketMs = p.bucketMs, weight = weight }
end

-- The record packed in `text` at `key` (decode's answer, from the kept record when it is that text's).
local function read_record(key, text, p, now)
  local kept = records_kept[key]
  if kept ~= nil and kept.r ~= nil then
    local r = kept.r
    kept.r = nil -- taken, used or not
    if kept.text == text and kept.bucketMs == p.bucketMs then
      local nowS = now / 1000
      local live = true
      for _, e in ipairs(r.w.list) do
        if e.untilS <= nowS then
          live = false
        end
      end
      if not live then
        local w = no_writers()
        for _, e in ipairs(r.w.list) do
          if e.untilS > nowS then
            w.list[#w.list + 1] = e
            w.by[e.id] = e
          end
        end
        r.w = w
      end
      return r
    end
  end
  return decode(text, p, now)
end

--[[ Loads the record at `key` (a fresh one is created at `now`). Returns record, existed, corrupt,
and the value read when it was a record.
A missing key gives a fresh record (existed = false). A key of another type (a hash: the record
of an earlier version of circuitry), or a string that is not a record, gives a fresh record marked
`reset`: save() replaces what was there. ]]
local function load(key, p, now)
  local raw = redis.pcall('GET', key)
  if type(raw) == 'table' then
    return fresh_reset(now)
  end
  if not raw then
    return empty_record(now), false, false
  end
  local r = read_record(key, raw, p, now)
  if r == nil then
    return fresh_reset(now)
  end
  return r, true, false, raw
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

--[[ Writes the whole record and refreshes its GC TTL (SET replaces whatever the key held); returns
the value written (a hot path that leaves `r` as written keeps it: keep_record). A record
with an operator override has no TTL: an override is an operator's decision, bounded by operator
actions rather than by traffic, and forgetting it would silently re-enable a breaker someone forced
open. ]]
local function save(key, p, r, now)
  local value = encode(r, p, now)
  if r.override ~= '' and r.ou == 0 then
    -- (A timed override lapses on its own: that record keeps its TTL, past the lapse.)
    redis.call('SET', key, value)
  else
    redis.call('SET', key, value, 'PX', int(gc_ttl_ms(p, r, now)))
  end
  return value
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
