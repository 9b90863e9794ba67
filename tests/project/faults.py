"""Probe methods for the worker and Redis fault tests (tests/integration/reliability)."""

from __future__ import annotations
