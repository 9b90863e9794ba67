SECRET_KEY = "benchmarks"
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["channels"]
DATABASES = {}
CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
CHANNELS_RPC = {"MAX_MESSAGE_SIZE": 2 * 1024 * 1024}
# Quiet, but for daphne's "Listening on TCP address", which the harness waits for.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["stderr"], "level": "WARNING"},
    "loggers": {"daphne.server": {"level": "INFO"}},
}
