"""What a newcomer's mistakes look like, in real processes (issue 12, items 1, 4, 5, 6, 7, 9).

Each test starts daphne, ``rpcworker`` or a management command of ``tests/startup_project`` (a
project laid out as the README recommends, with no LOGGING, like a fresh ``startproject``)
with one thing wrong, and checks the exact message the user sees and the exit status. The
``--reload`` tests build a throwaway project in a temporary directory and edit it.
"""

from __future__ import annotations

import asyncio
import os
import re
import select
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus

from channels_rpc import JsonRpcErrorCode
from tests.integration.client import RpcSocket
from tests.integration.harness import REPO, Proc, Redis

pytestmark = pytest.mark.anyio

SETTINGS = "tests.startup_project.settings"
APP = "tests.startup_project.asgi:application"
LISTENING = r"Listening on TCP address 127\.0\.0\.1:(\d+)"
READY = r"rpcworker ready: pid=(\d+) "
OUR_LAYER = "'channels_rpc.layers.RedisChannelLayer'"


def project_env(redis: Redis | None = None, **knobs: str) -> dict[str, str]:
    """The environment of a startup-project process: ``knobs`` are its STARTUP_* variables."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("STARTUP_") and key != "REDIS_URL"
    }
    env.update(
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE=SETTINGS,
        CHANNELS_PREFIX=f"s{uuid.uuid4().hex[:10]}",
        **knobs,
    )
    if redis is not None:
        env["REDIS_URL"] = redis.url
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A management command of the startup project, run to its end (a refusal ends at once)."""
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[Proc]]:
    """The long-running processes a test starts; all stopped after it, also on failure."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.stop()


def wait_for_nth(proc: Proc, pattern: str, n: int) -> None:
    """Wait until ``proc`` has printed ``n`` lines matching ``pattern``."""
    start = 0
    for _ in range(n):
        proc.wait_for(pattern, start=start)
        lines = proc.output().splitlines()
        start = next(i for i in range(start, len(lines)) if re.search(pattern, lines[i])) + 1


def start_daphne(started: list[Proc], env: dict[str, str], log_dir: Path) -> int:
    argv = [sys.executable, "-m", "daphne", "-e", "tcp:port=0:interface=127.0.0.1", APP]
    proc = Proc(f"daphne{len(started)}", argv, env, log_dir)
    started.append(proc)
    return int(proc.wait_for(LISTENING).group(1))


def start_worker(started: list[Proc], env: dict[str, str], log_dir: Path) -> Proc:
    argv = [sys.executable, "-m", "django", "rpcworker"]
    proc = Proc(f"worker{len(started)}", argv, env, log_dir)
    started.append(proc)
    proc.wait_for(READY)
    return proc


# ---------------------------------------------------------------------------------------------
# rpcworker refuses to serve nothing, or to serve wrongly


def test_rpcworker_without_methods_exits_saying_where_it_looked(redis_server: Redis) -> None:
    refused = manage(project_env(redis_server, STARTUP_APPS="channels,channels_rpc"), "rpcworker")
    assert refused.returncode == 1
    assert refused.stderr == (
        "CommandError: No RPC methods are registered, so there is nothing to serve. Looked in:\n"
        '  - the "rpc" module of each installed app: none found (searched 2 apps: channels, '
        "channels_rpc)\n"
        '  - CHANNELS_RPC["METHOD_MODULES"]: none\n'
        "  - ASGI_APPLICATION: not set\n"
        'Register methods with @YourConsumer.rpc_method() in the "rpc" module of an app in '
        "INSTALLED_APPS (myapp/rpc.py), or list the modules that register them in "
        'CHANNELS_RPC["METHOD_MODULES"].\n'
    )


def test_rpcworker_refuses_a_queue_no_method_uses(redis_server: Redis) -> None:
    refused = manage(project_env(redis_server), "rpcworker", "rpc.slwo")
    assert refused.returncode == 1
    assert refused.stderr == (
        "CommandError: No registered method uses the queue 'rpc.slwo' (did you mean "
        "'rpc.slow'?): nothing would ever arrive there. Known queues: rpc.default, rpc.slow.\n"
    )


@pytest.mark.parametrize(
    ("layer", "backend", "problem"),
    [
        (
            "stock",
            "channels_redis.core.RedisChannelLayer",
            "which can hand one request to two workers (channels_redis#163)",
        ),
        (
            "pubsub",
            "channels_redis.pubsub.RedisPubSubChannelLayer",
            "which hands every request to every worker",
        ),
    ],
)
def test_rpcworker_and_check_refuse_a_layer_that_cannot_share_queues(
    redis_server: Redis, layer: str, backend: str, problem: str
) -> None:
    env = project_env(redis_server, STARTUP_LAYER=layer)
    expected = (
        f"CHANNEL_LAYERS['default'] uses {backend}, {problem}: set its BACKEND to {OUR_LAYER}."
    )
    refused = manage(env, "rpcworker")
    assert (refused.returncode, refused.stderr) == (1, f"CommandError: {expected}\n")
    checked = manage(env, "check")
    assert checked.returncode == 1
    assert f"?: (channels_rpc.E003) {expected}\n" in checked.stderr


def test_a_broken_rpc_module_stops_startup_instead_of_being_skipped(redis_server: Redis) -> None:
    apps = "channels,channels_rpc,tests.startup_project.shop,tests.startup_project.broken"
    failed = manage(project_env(redis_server, STARTUP_APPS=apps), "check")
    assert failed.returncode == 1
    assert "ModuleNotFoundError: No module named 'no_such_dependency'" in failed.stderr


# ---------------------------------------------------------------------------------------------
# The front-end: a layer that cannot share queues, the app missing, a bad setting without it


async def test_a_front_end_on_stock_channels_redis_refuses_calls_and_logs_why_once(
    redis_server: Redis, processes: list[Proc], tmp_path: Path
) -> None:
    port = start_daphne(processes, project_env(redis_server, STARTUP_LAYER="stock"), tmp_path)
    answers = []
    for _ in range(2):
        sock = await RpcSocket.connect(f"ws://127.0.0.1:{port}/ws/")
        answers.append(await sock.call("add", [1, 2]))
        await sock.close()
    daphne = processes[0]
    await asyncio.to_thread(wait_for_nth, daphne, r"WSDISCONNECT /ws/", 2)
    reason = (
        "the server's channel layer cannot hand calls to workers (CHANNEL_LAYERS is "
        "misconfigured; see the server log)"
    )
    for answer in answers:
        assert answer["error"]["code"] == JsonRpcErrorCode.SERVER_BUSY
        assert answer["error"]["data"] == {"queue": "rpc.default", "reason": reason}
    logged = [line for line in daphne.output().splitlines() if " ERROR " in line]
    assert len(logged) == 1
    assert logged[0].endswith(
        "ERROR    CHANNEL_LAYERS['default'] uses channels_redis.core.RedisChannelLayer, which "
        "can hand one request to two workers (channels_redis#163): set its BACKEND to "
        f"{OUR_LAYER}. Until then every call is refused with -32010."
    )


async def test_without_the_app_rpcworker_is_unknown_and_the_front_end_says_to_add_it(
    processes: list[Proc], tmp_path: Path
) -> None:
    env = project_env(STARTUP_APPS="channels,tests.startup_project.shop")
    unknown = manage(env, "rpcworker")
    assert (unknown.returncode, unknown.stderr) == (
        1,
        "Unknown command: 'rpcworker'. Did you mean runworker?\n"
        "Type 'python -m django help' for usage.\n",
    )
    port = start_daphne(processes, env, tmp_path)
    for _ in range(2):
        sock = await RpcSocket.connect(f"ws://127.0.0.1:{port}/ws/")
        await sock.close()
    daphne = processes[0]
    await asyncio.to_thread(wait_for_nth, daphne, r"WSDISCONNECT /ws/", 2)
    warned = [line for line in daphne.output().splitlines() if " WARNING " in line]
    assert len(warned) == 1
    assert warned[0].endswith(
        'WARNING  Add "channels_rpc" to INSTALLED_APPS: without it there is no `manage.py '
        "rpcworker` (\"Unknown command: 'rpcworker'\") nor rpcnotify, the rpc modules of your "
        'apps and CHANNELS_RPC["METHOD_MODULES"] are not imported, and the settings are not '
        "checked at startup."
    )


async def test_a_bad_setting_without_the_app_refuses_handshakes_and_is_logged_once(
    processes: list[Proc], tmp_path: Path
) -> None:
    env = project_env(
        STARTUP_APPS="channels,tests.startup_project.shop", STARTUP_RPC='{"MAX_INFLIGHT": 5}'
    )
    port = start_daphne(processes, env, tmp_path)
    for _ in range(2):
        with pytest.raises(InvalidStatus) as refused:
            await RpcSocket.connect(f"ws://127.0.0.1:{port}/ws/")
        assert refused.value.response.status_code == 500
    daphne = processes[0]
    await asyncio.to_thread(wait_for_nth, daphne, r"Exception inside application", 2)
    said = [line for line in daphne.output().splitlines() if "CHANNELS_RPC is invalid" in line]
    assert len(said) == 1
    assert re.search(
        r"ERROR    CHANNELS_RPC is invalid, so channels-rpc refuses every connection: Unknown "
        r"CHANNELS_RPC keys \['MAX_INFLIGHT'\]; known keys: CHANNEL_LAYER, .* MAX_IN_FLIGHT, ",
        said[0],
    )


# ---------------------------------------------------------------------------------------------
# A method the front-end has and the worker does not; METHOD_MODULES; the ready line


async def test_a_method_only_the_front_end_imported_is_answered_32601_with_a_reason(
    redis_server: Redis, processes: list[Proc], tmp_path: Path
) -> None:
    env = project_env(redis_server)
    port = start_daphne(processes, env, tmp_path)
    worker = start_worker(processes, env, tmp_path)
    sock = await RpcSocket.connect(f"ws://127.0.0.1:{port}/ws/")
    added = await sock.call("add", [1, 2])
    missing = await sock.call("only_in_daphne")
    await sock.close()
    assert added["result"] == 3
    assert missing["error"] == {
        "code": JsonRpcErrorCode.METHOD_NOT_FOUND,
        "message": "Method Not Found: 'only_in_daphne'",
        "data": {
            "method": "only_in_daphne",
            "reason": "the worker that took the call does not have this method: it runs other "
            "code than the front-end, or never imported the module that registers it",
        },
    }
    pid = worker.pid
    found = await asyncio.to_thread(worker.wait_for, r"no method 'only_in_daphne'")
    logged = found.string.rstrip("\n")
    assert logged == (
        "no method 'only_in_daphne' on tests.startup_project.shop.consumers.ShopConsumer in "
        f"this worker (pid {pid}), though the front-end that sent the call has it: the two run "
        "different code (a deploy in progress?), or the module that registers it is imported "
        'by the front-end only. This worker looked in: the "rpc" module of each installed app: '
        "tests.startup_project.shop.rpc (searched 3 apps: channels, channels_rpc, shop); "
        'CHANNELS_RPC["METHOD_MODULES"]: none; ASGI_APPLICATION: not set. Register methods '
        'with @YourConsumer.rpc_method() in the "rpc" module of an app in INSTALLED_APPS '
        "(myapp/rpc.py), or list the modules that register them in "
        'CHANNELS_RPC["METHOD_MODULES"].'
    )
    # No LOGGING in this project, so nothing at INFO is shown: the ready line is printed.
    assert worker.output().startswith(
        f"rpcworker ready: pid={pid} queues=rpc.default,rpc.slow methods=3 concurrency=32 "
        f"redis={redis_server.url}\n"
    )


async def test_method_modules_are_imported_by_every_process(
    redis_server: Redis, processes: list[Proc], tmp_path: Path
) -> None:
    env = project_env(
        redis_server, STARTUP_RPC='{"METHOD_MODULES": ["tests.startup_project.extra"]}'
    )
    port = start_daphne(processes, env, tmp_path)
    worker = start_worker(processes, env, tmp_path)
    sock = await RpcSocket.connect(f"ws://127.0.0.1:{port}/ws/")
    answer = await sock.call("only_in_daphne")
    await sock.close()
    assert answer["result"] == "daphne imported me"
    assert " methods=4 " in worker.output()


# ---------------------------------------------------------------------------------------------
# rpcnotify: nothing to reach, or nothing to send


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["topic.news", "headline"],
            "CommandError: CHANNEL_LAYERS['default'] is the in-memory layer, which lives inside "
            "each process: a push from this command cannot reach any connection. Use a Redis "
            "layer (channels_rpc.layers.RedisChannelLayer), or push with notify_group() from "
            "code that runs in the front-end's process.\n",
        ),
        (
            ["bad group!", "headline"],
            "CommandError: Invalid group name 'bad group!': use 1-99 ASCII letters, digits, "
            "'-', '_' or '.'.\n",
        ),
    ],
    ids=["in-memory layer", "bad group"],
)
def test_rpcnotify_refuses_a_push_that_cannot_be_made(args: list[str], message: str) -> None:
    refused = manage(project_env(STARTUP_LAYER="memory"), "rpcnotify", *args)
    assert (refused.returncode, refused.stdout, refused.stderr) == (2, "", message)


# ---------------------------------------------------------------------------------------------
# rpcworker --reload

PROJECT_FILES = {
    "manage.py": """
        import os
        import sys

        from django.core.management import execute_from_command_line

        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")
        execute_from_command_line(sys.argv)
    """,
    "settings.py": """
        import os

        SECRET_KEY = "reload-test"
        INSTALLED_APPS = ["channels", "channels_rpc", "shop"]
        CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_rpc.layers.RedisChannelLayer",
                "CONFIG": {"hosts": [os.environ["REDIS_URL"]], "prefix": os.environ["PREFIX"]},
            }
        }
        # The reloader's first look at each file: the test edits only after it has seen rpc.py.
        LOGGING = {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {"stderr": {"class": "logging.StreamHandler"}},
            "loggers": {"django.utils.autoreload": {"handlers": ["stderr"], "level": "DEBUG"}},
        }
    """,
    "asgi.py": """
        from django.core.asgi import get_asgi_application

        django_asgi_app = get_asgi_application()

        from channels.routing import ProtocolTypeRouter, URLRouter
        from django.urls import path

        from shop.consumers import Shop

        application = ProtocolTypeRouter({"websocket": URLRouter([path("ws/", Shop.as_asgi())])})
    """,
    "shop/__init__.py": "",
    "shop/consumers.py": """
        from channels_rpc import AsyncJsonRpcWebsocketConsumer

        class Shop(AsyncJsonRpcWebsocketConsumer):
            pass
    """,
    "shop/rpc.py": """
        from shop.consumers import Shop

        @Shop.rpc_method()
        def version() -> int:
            return 1
    """,
}
EDITED_RPC = """
from shop.consumers import Shop

@Shop.rpc_method()
def version() -> int:
    return 2

@Shop.rpc_method()
def added() -> str:
    return "new"
"""


@pytest.fixture
def reload_project(tmp_path: Path, redis_server: Redis) -> tuple[Path, dict[str, str]]:
    project = tmp_path / "project"
    for name, text in PROJECT_FILES.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_SETTINGS_MODULE"}
    env.update(
        PYTHONPATH=os.pathsep.join([str(project), str(REPO)]),  # this tree's channels_rpc
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="settings",
        REDIS_URL=redis_server.url,
        PREFIX=f"r{uuid.uuid4().hex[:10]}",
    )
    return project, env


# Runs Python with the rest of the command line, as a terminal's foreground job runs it: with
# Ctrl-C at its default. A job a shell without job control starts with `&` (`make test &` in a
# script, a CI step, an agent's background command) runs with SIGINT ignored; every process it
# starts inherits that, and Python then leaves SIGINT ignored too. Under such a pytest, the
# reloader and its child ignored the test's Ctrl-C and were killed 10 s later (exit -9).
INTERRUPTIBLE = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


@pytest.fixture
def reloading(
    reload_project: tuple[Path, dict[str, str]], tmp_path: Path
) -> Iterator[Callable[[], Proc]]:
    """Starts ``rpcworker --reload`` in the project; after the test, stops it and every child
    it started (each named by its ready line), also on failure."""
    project, env = reload_project
    started: list[Proc] = []

    def start() -> Proc:
        argv = [sys.executable, "-c", INTERRUPTIBLE, "manage.py", "rpcworker", "--reload"]
        proc = Proc(f"reloading{len(started)}", argv, env, tmp_path, cwd=project)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()
        for child in re.findall(READY, proc.output()):
            if not gone(int(child)):
                os.kill(int(child), signal.SIGKILL)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def ended(pid: int, timeout: float = 10.0) -> bool:
    """Whether ``pid`` exits within ``timeout``, a zombie included: after a Ctrl-C, Django's
    reloader SIGKILLs a child still running 0.25 s later and exits without reaping it, so the
    child lingers as a zombie until PID 1 reaps it (on two loaded cores, 8 runs in 30)."""
    try:
        pidfd = os.pidfd_open(pid)  # readable once the process has exited, reaped or not
    except ProcessLookupError:
        return True
    try:
        return bool(select.select([pidfd], [], [], timeout)[0])
    finally:
        os.close(pidfd)


async def test_rpcworker_reload_serves_an_edited_module_and_stops_on_sigterm(
    reload_project: tuple[Path, dict[str, str]],
    reloading: Callable[[], Proc],
    processes: list[Proc],
    tmp_path: Path,
) -> None:
    project, env = reload_project
    daphne_argv = [sys.executable, "-m", "daphne", "-e", "tcp:port=0:interface=127.0.0.1"]
    daphne = Proc("daphne", [*daphne_argv, "asgi:application"], env, tmp_path, cwd=project)
    processes.append(daphne)
    port = int(daphne.wait_for(LISTENING).group(1))
    worker = reloading()
    first = int(worker.wait_for(READY).group(1))
    rpc_py = project / "shop" / "rpc.py"
    seen = worker.wait_for(rf"{re.escape(str(rpc_py))} first seen with mtime ([\d.]+)")
    sock = await RpcSocket.connect(f"ws://127.0.0.1:{port}/ws/")
    before = await sock.call("version")
    mark = worker.line_count()
    rpc_py.write_text(EDITED_RPC)
    later = float(seen.group(1)) + 2  # later than it was seen, whatever the clock's resolution
    os.utime(rpc_py, (later, later))
    restarted = await asyncio.to_thread(worker.wait_for, READY, 30, mark)
    after = await sock.call("version")
    await sock.close()
    second = int(restarted.group(1))
    assert (before["result"], after["result"]) == (1, 2)
    assert " methods=2 " in restarted.string
    assert second != first
    assert gone(first)
    worker.terminate()
    assert worker.wait_stopped() == 0
    assert gone(second)
    assert "Traceback" not in worker.output()


def test_rpcworker_reload_stops_on_ctrl_c(reloading: Callable[[], Proc]) -> None:
    worker = reloading()
    child = int(worker.wait_for(READY).group(1))
    # Ctrl-C once the reloader is up too (the worker's thread announces itself before the
    # reloader's main thread has finished starting).
    worker.wait_for(r"Sending autoreload_started signal")
    os.killpg(worker.pid, signal.SIGINT)  # what a terminal does: the whole process group
    code = worker.wait_stopped()
    assert code == 0, worker.output()
    assert ended(child)
    assert "Traceback" not in worker.output()
