"""Probe methods for the front-end hardening tests (issue 10: sizes, notifications, groups)."""

from __future__ import annotations
