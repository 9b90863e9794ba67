"""Probe methods for the client, protocol and security tests (tests/integration/reliability)."""

from __future__ import annotations
