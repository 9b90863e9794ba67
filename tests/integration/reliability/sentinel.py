"""A Redis primary, its replica and three Sentinels, as real processes on loopback.

Replication and Sentinel speak TCP only (a replica names its primary by host and port, and
Sentinels find each other through the address they announce), so these processes cannot sit on
Unix sockets as the harness's own Redis does. ``redis-server`` cannot be told "any free port"
either (``port 0`` turns TCP off): each one gets a port the kernel just handed out for a socket
bound to port 0, and when another process took it in between, the bind fails, the server exits
saying so, and it starts again on a new one. Nothing listens on a port it guessed.

Every process is started and stopped here, by pid (:meth:`SentinelSet.stop`, also after a
failed start). Readiness is read from the servers themselves (their log line, ``INFO
replication``, ``SENTINEL MASTER``), never assumed after a sleep.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.integration.harness import Proc

__all__ = ["MASTER_NAME", "Node", "SentinelSet", "free_port"]

#: The name the Sentinels monitor the primary under (the layer's ``master_name``).
MASTER_NAME = "rpcprimary"
#: How long a primary may not answer before a Sentinel thinks it down. Short, for the test; the
#: documented production value is larger (docs/guides/failover.md).
DOWN_AFTER_MS = 1000
#: Sentinel's failover timeout: also how long before a failed election is tried again (twice it).
FAILOVER_TIMEOUT_MS = 3000
#: Attempts at a start whose port another process took meanwhile.
PORT_ATTEMPTS = 5
READY_TIMEOUT = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick, for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Node:
    """One ``redis-server`` process (a data node or a Sentinel) and its port."""

    name: str
    port: int
    proc: Proc

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis("127.0.0.1", self.port, socket_timeout=2, **options)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def _start(name: str, log_dir: Path, argv_for: Callable[[int], Sequence[str]], ready: str) -> Node:
    """Start ``redis-server`` with the arguments ``argv_for(port)``, on a free port; wait for
    the log line ``ready``."""
    for attempt in range(PORT_ATTEMPTS):
        port = free_port()
        proc = Proc(f"{name}-{attempt}", argv_for(port), dict(os.environ), log_dir)
        try:
            proc.wait_for(ready, timeout=READY_TIMEOUT)
        except RuntimeError:
            proc.stop()
            if "Address already in use" in proc.output():
                continue  # taken between free_port() and the bind: another port
            raise
        return Node(name, port, proc)
    raise RuntimeError(f"{name}: no free port in {PORT_ATTEMPTS} attempts")


def _data_node(name: str, log_dir: Path, replica_of: Node | None = None) -> Node:
    def argv(port: int) -> list[str]:
        args = [
            "redis-server", "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(log_dir),
            "--dbfilename", f"{name}.rdb",
            # Redis 7 waits 5 s before a diskless full sync, for more replicas to join.
            "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of.port)]
        return args

    return _start(name, log_dir, argv, r"[Rr]eady to accept connections")


def _sentinel(name: str, log_dir: Path, primary: Node) -> Node:
    def argv(port: int) -> list[str]:
        # A Sentinel rewrites its configuration file (what it learned): one file per Sentinel.
        conf = log_dir / f"{name}-{port}.conf"
        conf.write_text(
            f"port {port}\n"
            "bind 127.0.0.1\n"
            f"dir {log_dir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {primary.port} 2\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        return ["redis-server", str(conf), "--sentinel"]

    # (A Sentinel logs no "ready" line: it is serving once it monitors the primary.)
    return _start(name, log_dir, argv, r"\+monitor master")


@dataclass
class SentinelSet:
    """A primary, a replica of it and three Sentinels monitoring it (quorum 2)."""

    log_dir: Path
    primary: Node | None = None
    replica: Node | None = None
    sentinels: list[Node] = field(default_factory=list)

    @classmethod
    def start(cls, log_dir: Path) -> SentinelSet:
        """Start every process and wait until the set could fail over; stops all on failure."""
        started = cls(log_dir)
        try:
            started.primary = _data_node("primary", log_dir)
            started.replica = _data_node("replica", log_dir, replica_of=started.primary)
            for n in range(3):
                started.sentinels.append(_sentinel(f"sentinel{n}", log_dir, started.primary))
            started.wait_ready()
        except BaseException:
            started.stop()
            raise
        return started

    # ----------------------------------------------------------------------------------------
    # What the layer is given, and what the test asks

    @property
    def hosts(self) -> list[tuple[str, int]]:
        """The Sentinels' addresses, as the layer's ``sentinels`` takes them."""
        return [("127.0.0.1", node.port) for node in self.sentinels]

    def env(self) -> dict[str, str]:
        """What tests/project/settings.py reads to put its layer on these Sentinels."""
        return {
            "REDIS_SENTINELS": ",".join(node.address for node in self.sentinels),
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
        }

    def master_address(self) -> tuple[str, int] | None:
        """Where the Sentinels say the primary is now (the first that answers), if anywhere."""
        for node in self.sentinels:
            try:
                with node.client() as client:
                    found = client.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            except redis.RedisError:
                continue
            if found:
                host, port = found
                return _text(host), int(port)
        return None

    def kill_primary(self) -> float:
        """``kill -9`` the primary; when (``time.monotonic()``), just before the signal."""
        assert self.primary is not None
        killed_at = time.monotonic()
        self.primary.proc.send_signal(9)
        self.primary.proc.popen.wait(10)
        return killed_at

    def promoted(self) -> bool:
        """Whether the Sentinels now name the replica as the primary."""
        assert self.replica is not None
        return self.master_address() == ("127.0.0.1", self.replica.port)

    def cut_replication(self) -> None:
        """Disconnect the replica from the primary, for good: a replica lagging behind.

        The replica is given a password the primary does not have, so that it cannot connect
        again (each attempt fails at AUTH); what the primary writes from then on is lost with
        it when it dies, as the writes of its last moments are when replication lags.
        """
        assert self.primary is not None
        assert self.replica is not None
        with self.replica.client() as client:
            client.config_set("masterauth", "not-the-primary-password")
        with self.primary.client() as client:
            client.client_kill_filter(_type="replica")
        _wait(lambda: not self._replica_synced(), READY_TIMEOUT, "the replica to lose its link")

    def replica_holds(self, key: str) -> int:
        """How many members sorted set ``key`` has on the replica (a queue's length)."""
        assert self.replica is not None
        with self.replica.client() as client:
            return int(client.zcard(key))

    def waiting_for_replicas(self) -> bool:
        """Whether a client of the primary is blocked in ``WAIT`` (a worker's acknowledged pop)."""
        assert self.primary is not None
        with self.primary.client() as client:
            clients = client.client_list()
        return any(c.get("cmd") == "wait" and "b" in c.get("flags", "") for c in clients)

    # ----------------------------------------------------------------------------------------
    # Readiness and shutdown

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Until the replica is in sync and every Sentinel knows the replica and the others.

        A Sentinel that has not heard of the others yet cannot reach the quorum nor win an
        election: a primary killed before then would stay dead.
        """
        _wait(self._replica_synced, timeout, "the replica to sync with the primary")
        _wait(self._sentinels_agree, timeout, "the Sentinels to find each other and the replica")

    def _replica_synced(self) -> bool:
        assert self.replica is not None
        with self.replica.client() as client:
            info = client.info("replication")
        return bool(info.get("master_link_status") == "up")

    def _sentinels_agree(self) -> bool:
        assert self.primary is not None
        for node in self.sentinels:
            with node.client() as client:
                state = client.execute_command("SENTINEL MASTER", MASTER_NAME)
            fields = _pairs(state)
            if int(fields.get("port", 0)) != self.primary.port:
                return False
            if int(fields.get("num-other-sentinels", 0)) < len(self.sentinels) - 1:
                return False
            if int(fields.get("num-slaves", 0)) < 1:
                return False
        return True

    def processes(self) -> list[Node]:
        return [node for node in (self.primary, self.replica, *self.sentinels) if node]

    def stop(self) -> None:
        """Stop every process started here, by pid (a killed one is only reaped)."""
        for node in self.processes():
            node.proc.terminate()
        for node in self.processes():
            node.proc.wait_stopped()

    def logs(self) -> str:
        return "\n".join(
            f"----- {node.name} (pid {node.proc.pid}, port {node.port}) -----\n"
            + node.proc.output()[-3000:]
            for node in self.processes()
        )


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except redis.RedisError:
            pass  # not answering yet
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: Any) -> dict[str, str]:
    """``SENTINEL MASTER``'s reply as a dict (redis-py may already have made it one)."""
    if isinstance(flat, dict):
        return {_text(k): _text(v) for k, v in flat.items()}
    items = [_text(item) for item in flat]
    return dict(zip(items[::2], items[1::2], strict=True))
