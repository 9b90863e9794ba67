"""The typed TypeScript client, compiled with tsc --strict and run by node against a live cluster.

``manage.py rpcschema --typescript`` writes api.ts for the reference project; tsc compiles it
with client.d.ts and tests/integration/typescript/main.ts, whose @ts-expect-error lines prove
the types refuse what the server would; node runs the result against a daphne front-end and an
rpcworker on Redis. client.d.ts is also checked against client.js itself: the same exports and
members (tests/integration/typescript/members.mjs) and strict use of all of it
(declarations.ts); and the module generated for every schema shape of the unit tests compiles.

The compiler is the pinned TypeScript in .cache/node (tools/ensure-typescript, run here once if
it is missing: afterwards no npm, and offline is fine). Without node or TypeScript these tests
skip, but fail in a CI run (``CI`` set: :func:`workers.cluster.in_ci`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from channels_rpc.typescript import generate
from tests.integration.harness import REPO, Redis
from tests.integration.support import logs_on_failure
from tests.unit.test_typescript import EVERY_SHAPE
from workers.cluster import LocalCluster, in_ci

TYPESCRIPT = REPO / ".cache" / "node" / "node_modules" / "typescript"
STATIC = REPO / "channels_rpc" / "static" / "channels_rpc"
PROGRAMS = Path(__file__).parent / "typescript"
TSC_FLAGS = (
    *("--strict", "--noUnusedLocals", "--target", "es2022", "--module", "nodenext"),
    *("--lib", "es2022,dom", "--rootDir", ".", "--pretty", "false"),
)


def unavailable(reason: str) -> NoReturn:
    """Skip for want of a tool; but fail in a CI run, which must run these tests."""
    if in_ci():
        pytest.fail(f"a CI run needs the TypeScript tests to run, but {reason}", pytrace=False)
    pytest.skip(reason)


class Node:
    """node, with the flags that give it a global WebSocket, and the pinned tsc."""

    def __init__(self, executable: str, flags: list[str]) -> None:
        self.executable = executable
        self.flags = flags

    def run(self, *args: str, cwd: Path, timeout: float = 60) -> str:
        argv = [self.executable, *self.flags, *args]
        done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def tsc(self, *args: str, cwd: Path) -> None:
        self.run(str(TYPESCRIPT / "bin" / "tsc"), *TSC_FLAGS, *args, cwd=cwd, timeout=120)


@pytest.fixture(scope="module")
def node() -> Node:
    executable = shutil.which("node")
    if executable is None:
        unavailable("node is not installed")
    # A quick check once the pinned version is there: npm runs only to install it.
    subprocess.run([str(REPO / "tools" / "ensure-typescript")], check=False, timeout=300)
    if not (TYPESCRIPT / "bin" / "tsc").exists():
        unavailable("TypeScript is not installed (tools/ensure-typescript could not)")
    # Node 22 has a global WebSocket; Node 20 only with this flag; older, none.
    for flags in ([], ["--experimental-websocket"]):
        probe = "process.exit(typeof WebSocket === 'function' ? 0 : 1)"
        if (
            subprocess.run([executable, *flags, "-e", probe], check=False, timeout=30).returncode
            == 0
        ):
            return Node(executable, flags)
    unavailable("this node has no WebSocket (node 20 or later is needed)")


def project(directory: Path, *programs: str) -> Path:
    """``directory`` set up as a user's would be: client.js and client.d.ts side by side, ES
    modules, and the test programs."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("client.js", "client.d.ts"):
        shutil.copy(STATIC / name, directory / name)
    for name in programs:
        shutil.copy(PROGRAMS / name, directory / name)
    (directory / "package.json").write_text('{"type": "module"}\n')
    return directory


def test_client_d_ts_declares_what_client_js_has(node: Node, tmp_path: Path) -> None:
    work = project(tmp_path, "declarations.ts", "members.mjs")
    (work / "shapes.ts").write_text(generate(EVERY_SHAPE, source="tests.Shapes"))
    node.tsc("--noEmit", "declarations.ts", "shapes.ts", cwd=work)
    listed = json.loads(
        node.run(
            "members.mjs",
            str(TYPESCRIPT / "lib" / "typescript.js"),
            "client.d.ts",
            "client.js",
            cwd=work,
        )
    )
    declared, runtime = listed["declared"], listed["runtime"]
    assert declared["values"] == runtime["values"]
    from_event_target = {"addEventListener", "removeEventListener"}
    assert set(declared["members"]["RpcClient"]) == set(runtime["members"]["RpcClient"]) | (
        from_event_target
    )
    for name in ("RpcError", "ConnectionLost"):
        assert declared["members"][name] == runtime["members"][name], name


@pytest.fixture
def reference(
    request: pytest.FixtureRequest,
    node: Node,
    redis_server: Redis,
    database: Path,
    tmp_path: Path,
) -> Iterator[LocalCluster]:
    """The reference project: a daphne front-end and an rpcworker (``node`` first, so that no
    cluster starts for a test that is going to skip)."""
    cluster = LocalCluster(
        redis_server, tmp_path / "logs", env_extra={"DJANGO_DB_PATH": str(database)}
    )
    cluster.log_dir.mkdir()
    try:
        cluster.start_frontend()
        cluster.start_worker()
        yield cluster
    finally:
        cluster.stop()
        logs_on_failure(request, "cluster logs", cluster.logs)


def test_the_generated_client_calls_the_reference_project(
    node: Node, reference: LocalCluster, tmp_path: Path
) -> None:
    work = project(tmp_path / "app", "main.ts")
    argv = [sys.executable, "-m", "workers.manage", "rpcschema", "--typescript", "api.ts"]
    subprocess.run(argv, cwd=work, env=reference.env(), check=True, timeout=60)
    node.tsc("--outDir", "out", "main.ts", "api.ts", cwd=work)
    shutil.copy(work / "client.js", work / "out" / "client.js")
    shutil.copy(work / "package.json", work / "out" / "package.json")

    results: dict[str, Any] = json.loads(node.run("out/main.js", reference.url(), cwd=work))

    assert results["sum"] == 5
    assert results["report"] == {
        "title": "Report of 3 steps",
        "steps": 3,
        "format": "html",
        "sections": ["section 1 of 3", "section 2 of 3", "section 3 of 3"],
    }
    assert results["progress"] == [
        [1, 3, "section 1 of 3"],
        [2, 3, "section 2 of 3"],
        [3, 3, "section 3 of 3"],
    ]
    assert results["distance"] == 5
    assert results["push"] == {"topic": "typescript", "message": {"hello": "world"}}
    assert results["logged"] == {"message": "from TypeScript"}
    assert results["error"]["code"] == -32602
