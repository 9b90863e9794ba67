"""Moved to :mod:`workers.rpc`, where every process finds it; ``import workers.methods`` still
registers the methods."""

from __future__ import annotations

from workers import rpc  # noqa: F401
