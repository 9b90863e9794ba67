"""docker-compose.yml, the Dockerfile and the deploy/ files, checked statically.

No Docker engine runs where these tests run; what can be checked without one is: the services
exist and are wired to each other, commands name real modules and the project's own queues,
health checks probe what the processes expose, stop periods cover the workers' drain, the
image runs as a non-root user.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from channels_rpc.config import get_config
from workers.consumers import RpcConsumer

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return document


def services(compose: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = compose["services"]
    return found


def project_queues() -> set[str]:
    """The queues the reference project's methods are routed to (from its OpenRPC document)."""
    import workers.methods  # noqa: F401  (registers the reference project's methods)

    return {method["x-queue"] for method in RpcConsumer.openrpc_document()["methods"]}


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", value)
    assert match, value
    number, unit = float(match.group(1)), match.group(2)
    return number * {"ms": 0.001, "s": 1, "m": 60}[unit]


def test_the_services_are_all_there(compose: dict[str, Any]) -> None:
    assert set(services(compose)) == {"redis", "migrate", "frontend", "worker", "lb"}


def test_redis_has_a_health_check_and_everyone_waits_for_it(compose: dict[str, Any]) -> None:
    redis = services(compose)["redis"]
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    for name in ("migrate", "frontend", "worker"):
        assert services(compose)[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_frontend_runs_daphne_on_the_reference_app_with_a_health_probe(
    compose: dict[str, Any],
) -> None:
    frontend = services(compose)["frontend"]
    command = frontend["command"]
    assert command[0] == "daphne"
    assert command[-1] == "workers.asgi:application"
    port = command[command.index("-p") + 1]
    assert frontend["expose"] == [port]
    probe = frontend["healthcheck"]["test"]
    assert probe[1:] == [
        "python", "-m", "workers.manage", "rpchealth", "--url", f"http://127.0.0.1:{port}/healthz/",
    ]  # fmt: skip
    assert frontend["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert seconds(frontend["stop_grace_period"]) > 10  # daphne's application close timeout


def test_worker_serves_the_projects_queues_and_drains_before_it_is_killed(
    compose: dict[str, Any],
) -> None:
    worker = services(compose)["worker"]
    command = worker["command"]
    assert command[:4] == ["python", "-m", "workers.manage", "rpcworker"]
    named = [arg for arg in command[4:] if not arg.startswith("--") and "/" not in arg]
    assert set(named) == project_queues()
    health_file = command[command.index("--health-file") + 1]
    assert worker["healthcheck"]["test"][1:] == [
        "python", "-m", "workers.manage", "rpchealth", "--file", health_file,
    ]  # fmt: skip
    assert worker["stop_signal"] == "SIGTERM"
    assert seconds(worker["stop_grace_period"]) > get_config().shutdown_grace
    assert "ports" not in worker  # workers scale: nothing may bind a host port


def test_every_app_service_shares_the_image_and_the_redis_url(compose: dict[str, Any]) -> None:
    for name in ("migrate", "frontend", "worker"):
        service = services(compose)[name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["environment"]["RPC_ALLOWED_ORIGINS"].startswith("${RPC_ALLOWED_ORIGINS:-")
    assert services(compose)["frontend"]["restart"] == "unless-stopped"
    assert services(compose)["worker"]["restart"] == "unless-stopped"
    assert services(compose)["migrate"]["restart"] == "no"


def test_the_load_balancer_proxies_websocket_upgrades_to_every_frontend(
    compose: dict[str, Any],
) -> None:
    lb = services(compose)["lb"]
    assert lb["ports"] == ["8080:80"]
    mount = lb["volumes"][0].split(":")
    config = (REPO / mount[0]).read_text()
    assert mount[1] == "/etc/nginx/conf.d/default.conf"
    assert "proxy_set_header Upgrade $http_upgrade;" in config
    assert "proxy_set_header Connection $connection_upgrade;" in config
    assert "proxy_http_version 1.1;" in config
    frontend_port = services(compose)["frontend"]["expose"][0]
    assert f"set $frontend http://frontend:{frontend_port};" in config
    assert re.search(r"resolver 127\.0\.0\.11", config)  # re-resolved: --scale frontend=N


def test_the_dockerfile_builds_in_two_stages_and_runs_as_a_user() -> None:
    lines = [
        line.strip()
        for line in (REPO / "deploy" / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert sum(line.startswith("FROM ") for line in lines) == 2
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users
    assert users[-1] not in ("root", "0")
    assert "COPY workers ./workers" in lines
    cmd = next(line for line in reversed(lines) if line.startswith("CMD "))
    assert cmd.endswith('"workers.asgi:application"]')
    assert "EXPOSE 8000" in lines


def test_the_systemd_units_run_the_same_commands() -> None:
    frontend = (REPO / "deploy" / "systemd" / "channels-rpc-frontend.service").read_text()
    worker = (REPO / "deploy" / "systemd" / "channels-rpc-worker@.service").read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", worker, re.M)
    assert exec_start
    argv = shlex.split(exec_start.group(1))
    assert argv[1:4] == ["-m", "workers.manage", "rpcworker"]
    assert set(argv[4:5]) == project_queues()
    stop = re.search(r"^TimeoutStopSec=(\d+)$", worker, re.M)
    assert stop
    assert int(stop.group(1)) > get_config().shutdown_grace
    assert re.search(r"^KillSignal=SIGTERM$", worker, re.M)
    assert "workers.asgi:application" in frontend


def test_the_environment_template_lists_only_settings_the_project_reads() -> None:
    settings_source = (REPO / "workers" / "settings.py").read_text()
    template = (REPO / "deploy" / "env.example").read_text()
    keys = [
        line.split("=", 1)[0]
        for line in template.splitlines()
        if "=" in line and not line.startswith("#")
    ]
    assert keys
    for key in keys:
        assert f'"{key}"' in settings_source, f"{key} is not read by workers/settings.py"
