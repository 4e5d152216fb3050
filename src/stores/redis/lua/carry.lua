--[[
carry.lua: records a batch, then asks for a permit, in one call (Store.recordThenAcquire):
what a breaker sends when a call starts while the outcome of one that ended is still waiting to
leave (the outcome is carried on the acquire: one round trip instead of two, in the same order).

KEYS      as op-record.lua: the breaker's record
ARGV      as op-record.lua (op-acquire.lua reads only the policy, which leads both)
Returns   { <op-record.lua's reply>, <op-acquire.lua's reply> }; or, when the record took one of
          a healthy tenant's paths and the breaker admits as closed, the two in short
          (op-record.lua's second value with `short`): { 'closed', successes, failures, slow,
          ignored, consecutiveFailures, generation, closedAt, now, activeSlots } (a closed
          record: the acquire admits under generation, with no lease or slot), or { 'none',
          stale, now } (no record: the record's snapshot is a fresh record's at generation 0, and
          the acquire admits under generation 0). A reply of 3 or 10 values instead of 43: less
          to build, send and read on every call.
Writes    what each writes, in that order; each publishes the transition it made
Errors    CIRCUITRY_BADARG <what> (from the record: then nothing was acquired either)
]]

-- @include common.lua
-- @include op-record.lua
-- @include op-acquire.lua

local recorded, short = record_op(KEYS, ARGV, true)
if short ~= nil then
  -- The record left a breaker that admits the next call without reading or writing anything
  -- more: what both replies would say, in short (redis-store.ts shortCarry).
  return short
end
return { recorded, acquire_op(KEYS, ARGV) }
