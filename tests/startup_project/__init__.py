"""A project laid out as the README recommends, whose setup the startup tests break on purpose.

Its methods are in an app's ``rpc`` module (``shop/rpc.py``), registered on a consumer of
``shop/consumers.py``; ``extra.py`` holds one more that only the ASGI application imports. The
settings have no LOGGING and no ASGI_APPLICATION, as a fresh ``startproject`` run with daphne,
and read from the environment what each test changes (see ``settings``).
"""
