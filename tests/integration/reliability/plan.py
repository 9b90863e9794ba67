"""The reliability test plan (research: reliability.md section 5): id -> (what, target).

A target states what the tests assert (their ``figures.check`` names), margins included: the
table must not promise more than was checked. Latencies that a busy 2-core machine may miss
are figures in the measured column, not targets.
"""

from __future__ import annotations

PLAN: dict[str, tuple[str, str]] = {
    "T01": (
        "JSON-RPC spec vectors S01-S15",
        "every S vector passes, in-process and over daphne + workers",
    ),
    "T02": (
        "Edge vectors E01-E27 (+ policy vectors)",
        "every vector matches the policy; socket stays open",
    ),
    "T03": ("Validator properties (hypothesis)", "0 failures over the examples run"),
    "T04": ("Raw-input fuzz of parse + validate", "0 uncaught exceptions"),
    "T05": (
        "Network fuzz: malformed messages on one socket",
        "each frame answered as JSON-RPC 2.0 and the README say (an oracle of its own); 0 closes",
    ),
    "T06": (
        "kill -9 one of 2 workers, 100 calls in flight",
        "100/100 answered by T + grace + 0.25 s; the victim's calls -32012",
    ),
    "T07": (
        "SIGTERM a worker with calls in flight",
        "running calls finish within grace, longer ones -32011 by grace + 0.25 s; exit 0",
    ),
    "T08": ("1 raising + 20 normal calls", "20/20 answered, error < 1 s, same worker pid"),
    "T09": ("Method exceeds its timeout", "error at T +- 0.5 s; slot freed; no late result"),
    "T10": (
        "Redis restart mid-load",
        "0 sockets closed; by T + grace + 0.25 s; outage: -32010 layer unavailable; back <= 2 s",
    ),
    "T11": (
        "Redis down at start / outage",
        "calls answered -32010 'channel layer unavailable' < 1 s; unhealthy; back <= 2 s",
    ),
    "T12": ("Idle survival with redis-py 8", "all idle sockets serve after idling; no crash"),
    "T13": (
        "No worker running",
        "-32012 between T + grace and T + grace + 0.25 s; expired calls never run later",
    ),
    "T14": (
        "Burst beyond queue capacity, no worker",
        "-32010 within 0.5 s of its send (no wait for a timeout); queued calls -32012; socket "
        "stays open",
    ),
    "T15": (
        "Per-connection in-flight limit N + 1",
        "exactly 1 busy (< 0.9 s), N successes, then N accepted",
    ),
    "T16": (
        "Flood 20,000 x 1 KB without reading",
        "closed 4008 < 1 s after the rate is exceeded; RSS < +20 MB; neighbour < 2 s",
    ),
    "T17": (
        "Size limits",
        "over library limit: -32001, socket kept, RSS +-5 MB; over 1 MiB: dropped",
    ),
    "T18": (
        "1,000 idle connections over 2 ping periods",
        ">= 99.9% served after 2 ping periods; < 64 KB each; cycles < +2 MB",
    ),
    "T19": (
        "Dead peer (client SIGSTOPped)",
        "closed < 7.5 s (ping 2 s + check period 2 s + timeout 3 s + 0.5 s); calls cancelled",
    ),
    "T20": (
        "Slow handshakes",
        "clients p99 < 2 x baseline; handshakes < 1 s; stalled closed at 55-70 s",
    ),
    "T21": ("Origin matrix", "only configured full origins admitted"),
    "T22": ("Authentication and authorization", "no-credential and CSWSH refused; expiry closes"),
    "T23": (
        "Client disconnects with 50 calls in flight",
        "0 errors logged; running calls cancelled; 0 queued calls started",
    ),
    "T24": (
        "Random worker kills under load",
        "executions in {0, 1}; all answered by T + grace + 0.25 s",
    ),
    "T25": ("10 connections x 1,000 calls, same ids", "0 misrouted, duplicated or missing"),
    "T26": ("Group expiry 2 s, connection held 8 s", "100% of pushes delivered"),
    "T27": (
        "RFC 6455 subset on a raw socket",
        "1007/1002 or TCP dropped < 1 s; every ping ponged; close echoed",
    ),
    # Hardening, round two (issue 10): each row is one finding, with its figure before the fix.
    "T28": ("Answers and pushes over the frame cap", "-32014 for that call; 0 sockets silenced"),
    "T29": (
        "A client that never reads its answers",
        "front-end RSS < +100 MiB (pushes: +150 MiB); reading paused; peer dropped",
    ),
    "T30": (
        "Cancel with a deep queue backlog",
        "Redis PING p50 < 5 ms; every cancel -32800; all withdrawn",
    ),
    "T31": ("Joins made by methods, then the socket closes", "0 stale memberships within 10 s"),
    "T32": ("Send gives up at LAYER_TIMEOUT", "a call answered -32010 never runs"),
    "T33": ("Redis maxmemory with noeviction", "Redis peak <= limit + 2 MiB; refusals are -32010"),
    "T34": (
        "Queue bytes and unknown request members",
        "unknown members not queued (< 2 KB); queue bytes <= cap",
    ),
    "T35": (
        "FLUSHDB without a restart",
        "pushes and cancel work again within 5 s; the loss logged",
    ),
    "T36": ("sys.exit / KeyboardInterrupt in a method", "that call errors; worker lives"),
    "T37": (
        "Notifications against MAX_IN_FLIGHT",
        "another client's call answered < 3 s; <= 2 x MAX_IN_FLIGHT ran",
    ),
    "T38": (
        "Sync methods that never return",
        "threads <= concurrency + 2; the rest -32010; rpchealth exit 1",
    ),
    "T39": (
        "Flood while the consumer awaits Redis",
        "front-end RSS < +100 MiB; reading paused; 4008 < 1 s while Redis stalls",
    ),
    "T40": ("Clock skew of +-10 s and +65 s", "calls run and are answered; nothing wiped"),
    "T41": ("timeout=0 call that no worker takes", "-32011 within 2 s after expiry; slot freed"),
    "T42": ("Bearer token in a subprotocol", "never in Redis, never in ctx.scope"),
    "T43": ("Deep result with process_response middleware", "that call errors; socket open"),
    "T44": ("Reply cost with many idle connections", "per-reply work independent of count"),
    "T45": ("Groups joined by one connection", "capped at MAX_GROUPS; over: error"),
    "T46": ("Client text in worker logs", "control characters escaped; no forged lines"),
    "T47": (
        "Redis stalled (blackholed port, CLIENT PAUSE), LAYER_TIMEOUT 1 s",
        "first call -32010 'channel layer unavailable' after 1-1.25 s; next <= 0.25 s; 0 run",
    ),
}
