--[[
carry.lua: records a batch, then asks for a permit, in one call (Store.recordThenAcquire):
what a breaker sends when a call starts while the outcome of one that ended is still waiting to
leave (the outcome is carried on the acquire: one round trip instead of two, in the same order).

KEYS      as op-record.lua: the breaker's hash
ARGV      as op-record.lua (op-acquire.lua reads only the policy, which leads both)
Returns   { <op-record.lua's reply>, <op-acquire.lua's reply> }
Writes    what each writes, in that order; each publishes the transition it made
Errors    CIRCUITRY_BADARG <what> (from the record: then nothing was acquired either)
]]

-- @include common.lua
-- @include op-record.lua
-- @include op-acquire.lua

local recorded, closed = record_op(KEYS, ARGV)
if closed ~= nil then
  -- The record took its hot path and left the breaker closed with no override, at the generation
  -- it wrote (and there is no concurrency limit): acquire_op's hot path answer, without reading
  -- the same fields again.
  return { recorded, { 'acquire', 0, closed.now, 1, '', 0, closed.gen, '', 'closed', '', 0, '', '', 0, closed.cf,
    closed.ca, '' } }
end
return { recorded, acquire_op(KEYS, ARGV) }
