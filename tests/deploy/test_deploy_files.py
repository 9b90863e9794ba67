"""docker-compose.yml, the Dockerfile and the deploy/ files, checked statically.

No Docker engine runs where these tests run; what can be checked without one is: the services
exist and are wired to each other, every command names a program and a management command that
exist, health checks probe what the processes expose, stop periods cover the workers' drain,
secrets are required rather than defaulted, settings and the environment template agree, the
image installs the package with its static files and runs as a non-root user, and the systemd
units and the local launcher run daphne and the workers as compose does. nginx's own check of
deploy/nginx.conf, and the processes themselves, are in the other tests of this directory.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from channels_rpc.config import get_config
from tests.deploy.support import REPO, compose, daphne_flags
from workers.cluster import DAPHNE_FLAGS

APP_SERVICES = ("migrate", "frontend", "worker")
#: Where each program of the commands below comes from, in the image and in this virtualenv.
MANAGE = ["python", "-m", "workers.manage"]


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"]
    return found


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", value)
    assert match, value
    number, unit = float(match.group(1)), match.group(2)
    return number * {"ms": 0.001, "s": 1, "m": 60}[unit]


def settings_variables() -> set[str]:
    """The environment variables workers/settings.py reads."""
    source = (REPO / "workers" / "settings.py").read_text()
    return set(re.findall(r"os\.environ(?:\.get\(|\[)\s*\"([A-Z0-9_]+)\"", source))


def systemd_exec_start(unit: str) -> list[str]:
    text = (REPO / "deploy" / "systemd" / unit).read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", text, re.M)
    assert exec_start, unit
    return shlex.split(exec_start.group(1))


def dockerfile_lines() -> list[str]:
    return [
        line.strip()
        for line in (REPO / "deploy" / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


# ----------------------------------------------------------------------------------- services


def test_the_services_are_all_there(services: dict[str, Any]) -> None:
    assert set(services) == {"redis", "postgres", "migrate", "frontend", "worker", "lb"}


def test_redis_and_postgres_have_health_checks_and_the_app_waits_for_them(
    services: dict[str, Any],
) -> None:
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    postgres = services["postgres"]
    environment = postgres["environment"]
    # Over TCP: the image's first server, on a fresh volume, listens on its socket only.
    assert postgres["healthcheck"]["test"][1:] == [
        "pg_isready", "-h", "127.0.0.1",
        "-U", environment["POSTGRES_USER"], "-d", environment["POSTGRES_DB"],
    ]  # fmt: skip
    for name in APP_SERVICES:
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("frontend", "worker"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )


def test_every_replica_uses_the_postgres_service_and_none_a_file_of_its_own(
    services: dict[str, Any],
) -> None:
    postgres = services["postgres"]["environment"]
    user, database = postgres["POSTGRES_USER"], postgres["POSTGRES_DB"]
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        url = re.fullmatch(
            r"postgres://(\w+):\$\{POSTGRES_PASSWORD:\?[^}]+\}@postgres:5432/(\w+)",
            environment["DATABASE_URL"],
        )
        assert url, environment["DATABASE_URL"]
        assert url.groups() == (user, database)
        assert "DJANGO_DB_PATH" not in environment
        assert "volumes" not in services[name]  # nothing a replica on another host lacks
    assert services["postgres"]["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    assert set(compose()["volumes"]) == {"pgdata"}


def test_secrets_are_required_not_defaulted(services: dict[str, Any]) -> None:
    """``${VAR:?message}``: compose refuses to start anything while VAR is unset or empty."""
    required = re.compile(r"\$\{(\w+):\?[^}]+\}")
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        assert required.fullmatch(environment["DJANGO_SECRET_KEY"]), environment
        assert "POSTGRES_PASSWORD" in required.findall(environment["DATABASE_URL"])
    assert required.fullmatch(services["postgres"]["environment"]["POSTGRES_PASSWORD"])
    text = (REPO / "docker-compose.yml").read_text()
    assert "change-me" not in text


def test_frontend_runs_daphne_with_proxy_headers_and_a_health_probe(
    services: dict[str, Any],
) -> None:
    frontend = services["frontend"]
    command = frontend["command"]
    assert command[0] == "daphne"
    assert command[-1] == "workers.asgi:application"
    # The client is the address nginx saw (X-Real-IP), as the launcher's front-ends do.
    assert daphne_flags(command) == list(DAPHNE_FLAGS)
    assert "--proxy-headers" in command
    port = command[command.index("-p") + 1]
    assert frontend["expose"] == [port]
    probe = frontend["healthcheck"]["test"]
    assert probe[1:] == [*MANAGE, "rpchealth", "--url", f"http://127.0.0.1:{port}/healthz/"]
    assert seconds(frontend["stop_grace_period"]) > 10  # daphne's application close timeout


def test_worker_serves_every_queue_and_drains_before_it_is_killed(
    services: dict[str, Any],
) -> None:
    worker = services["worker"]
    command = worker["command"]
    assert command[:4] == [*MANAGE, "rpcworker"]
    # No queue names: rpcworker then serves every queue the registered methods use.
    assert command[4:] == ["--health-file", command[5]]
    assert worker["healthcheck"]["test"][1:] == [*MANAGE, "rpchealth", "--file", command[5]]
    assert worker["stop_signal"] == "SIGTERM"
    assert seconds(worker["stop_grace_period"]) > get_config().shutdown_grace
    assert "ports" not in worker  # workers scale: nothing may bind a host port


def test_app_services_share_the_image_and_restart_policies(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"]["dockerfile"] == "deploy/Dockerfile"
        assert service["environment"]["REDIS_URL"] == "redis://redis:6379/0"
        assert service["environment"]["RPC_ALLOWED_ORIGINS"].startswith("${RPC_ALLOWED_ORIGINS:-")
    assert services["frontend"]["restart"] == "unless-stopped"
    assert services["worker"]["restart"] == "unless-stopped"
    assert services["migrate"]["restart"] == "no"
    assert seconds(services["postgres"]["stop_grace_period"]) > 10  # Docker's default


def test_every_command_runs_a_program_and_a_management_command_that_exist(
    services: dict[str, Any],
) -> None:
    """Each ``python -m workers.manage X`` in compose and the systemd units names a command of
    the reference project (asked of Django with the project's own settings), and ``daphne`` is
    the console script the package's dependencies install."""
    commands = [services[name]["command"] for name in APP_SERVICES]
    commands += [services[name]["healthcheck"]["test"][1:] for name in ("frontend", "worker")]
    units = ("channels-rpc-frontend.service", "channels-rpc-worker@.service")
    commands += [systemd_exec_start(unit) for unit in units]
    wanted = set()
    for command in commands:
        program = Path(command[0]).name
        if program == "daphne":
            assert Path(sys.executable).with_name("daphne").exists()
            assert command[-1] == "workers.asgi:application"
        else:
            assert program == "python", command
            assert command[1:3] == ["-m", "workers.manage"], command
            wanted.add(command[3])
    assert wanted == {"migrate", "rpcworker", "rpchealth"}
    listing = "import django; django.setup(); from django.core.management import get_commands; "
    listing += "import json; print(json.dumps(sorted(get_commands())))"
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="workers.settings", PYTHONPATH=str(REPO))
    env.pop("DATABASE_URL", None)
    done = subprocess.run(
        [sys.executable, "-c", listing], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert wanted <= set(json.loads(done.stdout))


# ------------------------------------------------------------------------------ configuration


def test_settings_and_the_environment_template_name_the_same_variables(
    services: dict[str, Any],
) -> None:
    """deploy/env.example lists every variable the settings read (commented out when optional)
    and nothing else; compose passes the app only variables the settings read."""
    template = (REPO / "deploy" / "env.example").read_text()
    listed = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]*)=", template, re.M))
    read = settings_variables()
    assert {"DATABASE_URL", "DJANGO_SECRET_KEY", "REDIS_URL"} <= read
    assert listed == read
    for name in APP_SERVICES:
        assert set(services[name]["environment"]) <= read


def test_the_load_balancer_proxies_upgrades_and_the_client_address(
    services: dict[str, Any],
) -> None:
    lb = services["lb"]
    assert lb["ports"] == ["8080:80"]
    mount = lb["volumes"][0].split(":")
    config = (REPO / mount[0]).read_text()
    assert mount[1] == "/etc/nginx/conf.d/default.conf"
    for line in (
        "proxy_http_version 1.1;",
        "proxy_set_header Upgrade $http_upgrade;",
        "proxy_set_header Connection $connection_upgrade;",
        # Set to what nginx saw, never appended to what the client sent.
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
    ):
        assert line in config
    frontend_port = services["frontend"]["expose"][0]
    # A variable, resolved per request: --scale frontend=N, and nginx starts before the name does.
    assert f"set $frontend http://frontend:{frontend_port};" in config
    assert re.search(r"resolver 127\.0\.0\.11", config)
    assert set(re.findall(r"proxy_pass (\S+);", config)) == {"$frontend"}
    assert seconds(services["frontend"]["stop_grace_period"]) > 10


# ---------------------------------------------------------------------------------- the image


def test_the_dockerfile_builds_in_two_stages_and_runs_as_a_user() -> None:
    lines = dockerfile_lines()
    assert sum(line.startswith("FROM ") for line in lines) == 2
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users
    assert users[-1] not in ("root", "0")
    assert "COPY workers ./workers" in lines
    assert "EXPOSE 8000" in lines


def test_the_image_installs_the_package_with_its_static_files_and_the_deploy_extra() -> None:
    lines = dockerfile_lines()
    wheel = next(line for line in lines if line.startswith("RUN pip wheel"))
    assert wheel.endswith(' ".[deploy]"')
    assert "hiredis" not in (REPO / "deploy" / "Dockerfile").read_text()  # not used (README)
    copied = {
        source
        for line in lines
        if line.startswith("COPY ") and "--from" not in line
        for source in line.split()[1:-1]
    }
    assert {"pyproject.toml", "channels_rpc", "workers"} <= copied
    project = (REPO / "pyproject.toml").read_text()  # (tomllib: Python 3.11+)
    readme = re.search(r'^readme = "(.+)"$', project, re.M)
    assert readme
    assert readme.group(1) in copied  # the wheel's build reads it
    assert re.search(r'^deploy = \[.*"psycopg\[binary,pool\]', project, re.M)
    # Every file under channels_rpc/static is package data, so in the wheel; none is ignored.
    package_data = project.split("[tool.setuptools.package-data]", 1)[1]
    data = re.search(r"^channels_rpc = \[(.*)\]$", package_data, re.M)
    assert data
    patterns = re.findall(r'"([^"]+)"', data.group(1))
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    static = [p for p in (REPO / "channels_rpc" / "static").rglob("*") if p.is_file()]
    assert static
    for path in static:
        relative = path.relative_to(REPO / "channels_rpc").as_posix()
        assert any(fnmatch.fnmatch(relative, pattern) for pattern in patterns), relative
    for path in [*static, *(REPO / "workers" / "templates").rglob("*.html")]:
        relative = path.relative_to(REPO).as_posix()
        assert not any(fnmatch.fnmatch(relative, pattern) for pattern in ignored), relative


def test_the_image_runs_the_frontend_as_compose_does(services: dict[str, Any]) -> None:
    cmd = next(line for line in reversed(dockerfile_lines()) if line.startswith("CMD "))
    assert json.loads(cmd.removeprefix("CMD ")) == services["frontend"]["command"]


# ----------------------------------------------------------------------- systemd, the launcher


def test_the_systemd_units_run_the_same_commands() -> None:
    frontend = systemd_exec_start("channels-rpc-frontend.service")
    assert Path(frontend[0]).name == "daphne"
    assert frontend[-1] == "workers.asgi:application"
    assert daphne_flags(frontend) == list(DAPHNE_FLAGS)
    worker = systemd_exec_start("channels-rpc-worker@.service")
    assert worker[1:4] == ["-m", "workers.manage", "rpcworker"]
    assert worker[4] == "--health-file"  # no queue names: every queue, as in compose
    assert len(worker) == 6
    text = (REPO / "deploy" / "systemd" / "channels-rpc-worker@.service").read_text()
    stop = re.search(r"^TimeoutStopSec=(\d+)$", text, re.M)
    assert stop
    assert int(stop.group(1)) > get_config().shutdown_grace
    assert re.search(r"^KillSignal=SIGTERM$", text, re.M)
