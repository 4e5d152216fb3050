-- record.lua: see op-record.lua (record_op), which documents KEYS, ARGV and the reply.

-- @include common.lua
-- @include op-record.lua

return record_op(KEYS, ARGV, false)
