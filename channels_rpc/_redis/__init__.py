"""The parts of ``channels_rpc.layers.RedisChannelLayer``: Lua scripts, batched sends, inboxes."""
