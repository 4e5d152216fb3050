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

local recorded = record_op(KEYS, ARGV)
return { recorded, acquire_op(KEYS, ARGV) }
