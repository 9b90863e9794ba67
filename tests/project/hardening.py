"""Probe methods for the worker hardening tests (issue 10: exits, stuck threads, log injection)."""

from __future__ import annotations
