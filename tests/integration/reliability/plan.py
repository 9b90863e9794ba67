"""The reliability test plan (research: reliability.md section 5): id -> (what, target)."""

from __future__ import annotations

PLAN: dict[str, tuple[str, str]] = {
    "T01": ("JSON-RPC spec vectors S01-S15", "15/15 in-process and over daphne + workers"),
    "T02": ("Edge vectors E01-E27 (+ policy vectors)", "all match the policy; socket stays open"),
    "T03": ("Validator properties (hypothesis)", "0 failures over the examples run"),
    "T04": ("Raw-input fuzz of parse + validate", "0 uncaught exceptions"),
    "T05": ("Network fuzz: malformed messages on one socket", "all answered, right code, 0 closes"),
    "T06": ("kill -9 one of 2 workers, 100 calls in flight", "100/100 answered within T + 1 s"),
    "T07": ("SIGTERM a worker with calls in flight", "100% answered within grace; exit 0"),
    "T08": ("1 raising + 20 normal calls", "20/20 answered, error < 1 s, same worker pid"),
    "T09": ("Method exceeds its timeout", "error at T +- 0.5 s; slot freed; no late result"),
    "T10": ("Redis restart mid-load", "0 sockets closed; all answered by T + 1 s; back <= 2 s"),
    "T11": ("Redis down at start / outage", "calls answered < 1 s; unhealthy; back <= 2 s"),
    "T12": ("Idle survival with redis-py 8", "all idle sockets serve after idling; no crash"),
    "T13": ("No worker running", "answered by T + 1 s; expired calls never run later"),
    "T14": ("Burst beyond queue capacity, no worker", "busy at once; socket stays open"),
    "T15": ("Per-connection in-flight limit N + 1", "exactly 1 busy, N successes, then accepted"),
    "T16": ("Flood 20,000 x 1 KB without reading", "closed 4008 < 1 s; RSS < +20 MB"),
    "T17": ("Size limits", "over library limit: error, socket kept; over 1 MiB: dropped"),
    "T18": ("1,000 idle connections over 2 ping periods", ">= 99.9% open; < 64 KB each"),
    "T19": ("Dead peer (client SIGSTOPped)", "closed < ping interval + timeout; calls cancelled"),
    "T20": ("Slow handshakes", "normal clients p99 < 2 x baseline"),
    "T21": ("Origin matrix", "only configured full origins admitted"),
    "T22": ("Authentication and authorization", "no-credential and CSWSH refused; expiry closes"),
    "T23": ("Client disconnects with 50 calls in flight", "0 errors logged; calls skipped"),
    "T24": ("Random worker kills under load", "executions in {0, 1}; 0-execution calls errored"),
    "T25": ("10 connections x 1,000 calls, same ids", "0 misrouted, duplicated or missing"),
    "T26": ("Group expiry 5 s, connection held 20 s", "100% of pushes delivered"),
    "T27": ("RFC 6455 subset on a raw socket", "1007/1002 closes; pong < 100 ms; close echo"),
}
