SECRET_KEY = "benchmarks"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
DATABASES = {}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CHANNELS_RPC = {"MAX_MESSAGE_SIZE": 2 * 1024 * 1024}
LOGGING = {"version": 1, "root": {"level": "WARNING"}}
