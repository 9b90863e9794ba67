"""What differs between the Python versions this package supports."""

from __future__ import annotations

import sys

if sys.version_info >= (3, 11):
    from asyncio import timeout
else:  # the same context manager, as it was before it joined asyncio in 3.11
    from async_timeout import timeout

__all__ = ["timeout"]
