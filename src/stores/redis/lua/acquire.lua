-- acquire.lua: see op-acquire.lua (acquire_op), which documents KEYS, ARGV and the reply.

-- @include common.lua
-- @include op-acquire.lua

return acquire_op(KEYS, ARGV)
