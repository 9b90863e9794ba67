from base_settings import *  # noqa: F403  (this folder is the path: no package, no repository)

CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CHANNELS_RPC = {"MAX_MESSAGE_SIZE": 2 * 1024 * 1024}
