"""A user's project built from the Quick start: a fresh virtualenv, its files and commands.

The package is installed from the checkout into a new virtualenv, for real (not editable), so
what a wheel would leave out (``py.typed``, the browser client) is missing here too. Its
dependencies come from this interpreter's site-packages through a ``.pth`` file: nothing is
downloaded. The Quick start's commands run from that virtualenv with the project as their working
directory, as a user runs them; the few differences are the ones a test needs:

- ``pip install`` is the checkout's install (its extras are checked against the wheel's);
- ``django-admin``, ``daphne`` and ``pytest`` run as ``python -m django|daphne|pytest`` (the
  virtualenv shares its dependencies, not their scripts);
- daphne listens on a port chosen at bind time instead of 8000, and the client is pointed at it;
- long-running commands (daphne, ``rpcworker``, the client) start in the background, and the
  next command waits for their readiness line.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.specifiers import SpecifierSet

import channels_rpc
from workers.cluster import REPO, Process

from .markdown import Block, Command

#: Where the Quick start's front-end listens; the test's listens where the OS lets it.
README_ADDRESS = "127.0.0.1:8000"
COMMAND_TIMEOUT = 120.0
#: Seconds the client may take to print what the Quick start says it prints.
CLIENT_TIMEOUT = 30.0
#: Variables of this process that must not leak into the user's (the tests' Django settings).
_NOT_INHERITED = ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "PYTHONHOME", "REDIS_URL")
#: setuptools from this version on builds ``license = "MIT"`` (PEP 639), as pyproject.toml has.
_SETUPTOOLS_FOR_LICENSE_STRINGS = 77


@dataclass(frozen=True)
class Venv:
    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    @classmethod
    def create(cls, path: Path) -> Venv:
        """A new virtualenv with the checkout installed, its dependencies borrowed from ours.

        It has no pip of its own: ours, borrowed with the rest, installs into it.
        """
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
        venv = cls(path)
        purelib = Path(venv.query("import sysconfig; print(sysconfig.get_paths()['purelib'])"))
        ours = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
        (purelib / "_borrowed_dependencies.pth").write_text("\n".join(ours) + "\n")
        install = [str(venv.python), "-m", "pip", "install", "--quiet", "--no-deps", str(REPO)]
        if not _can_build_here():
            # An isolated build downloads setuptools: slower, and the only download.
            print("setuptools < 77 here: building channels-rpc in isolation", file=sys.stderr)
        else:
            install.insert(-1, "--no-build-isolation")
        _run(install, env=_clean_env(), cwd=path, timeout=COMMAND_TIMEOUT)
        return venv

    def query(self, code: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
        """What ``code`` prints when run by this virtualenv's Python."""
        done = _run([str(self.python), "-c", code], env=env or _clean_env(), cwd=cwd or self.path)
        return done.stdout.strip()

    def installed_package(self) -> Path:
        """Where ``channels_rpc`` is imported from in this virtualenv."""
        code = "import channels_rpc, pathlib; print(pathlib.Path(channels_rpc.__file__).parent)"
        return Path(self.query(code))

    def extras(self) -> set[str]:
        """The extras the installed package declares (``Provides-Extra``)."""
        code = (
            "import json; from importlib.metadata import metadata; "
            "print(json.dumps(metadata('channels-rpc').get_all('Provides-Extra') or []))"
        )
        return set(json.loads(self.query(code)))


def _can_build_here() -> bool:
    try:
        major = int(version("setuptools").split(".")[0])
    except PackageNotFoundError:
        return False
    return major >= _SETUPTOOLS_FOR_LICENSE_STRINGS


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def _run(
    argv: list[str], env: dict[str, str], cwd: Path, timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, (
        f"{' '.join(argv)} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    )
    return done


@dataclass
class QuickStart:
    """Runs the Quick start's blocks, in order, in ``root`` with ``venv``'s Python."""

    venv: Venv
    root: Path
    log_dir: Path
    redis_url: str
    env: dict[str, str] = field(init=False)
    servers: list[Process] = field(default_factory=list)
    clients: list[Process] = field(default_factory=list)
    served: list[set[str]] = field(default_factory=list)  # the queues of each rpcworker line
    completed: list[subprocess.CompletedProcess[str]] = field(default_factory=list)
    expected_output: list[str] = field(default_factory=list)
    frontend_address: str = ""
    superuser: str = ""  # the username the Quick start's createsuperuser line creates

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True)
        self.log_dir.mkdir(parents=True)
        self.env = _clean_env(REDIS_URL=self.redis_url)

    # --------------------------------------------------------------------------------------
    # Blocks

    def apply(self, block: Block) -> None:
        if block.lang in ("python", "ini"):
            self.write(block)
        elif block.lang == "sh":
            for command in block.commands():
                self.shell(command)
        elif block.lang == "text":
            self.expect(block.text.splitlines())
        else:
            raise AssertionError(f"the test does not know what to do with a {block.lang!r} block")

    def write(self, block: Block) -> None:
        name, append = block.target()
        path = self.root / name
        assert path.exists() or not append, f"{name} is appended to, but does not exist"
        with path.open("a" if append else "w", encoding="utf-8") as file:
            file.write(("\n" if append else "") + block.text)

    def shell(self, command: Command) -> None:
        python = str(self.venv.python)
        env = {**self.env, **command.env}
        match command.argv:
            case ["pip", "install", *requirements]:
                self._check_requirements(requirements)
            case ["django-admin", *args]:
                self.run([python, "-m", "django", *args], env)
            case ["python", "manage.py", "createsuperuser", *args]:
                self.superuser = args[args.index("--username") + 1]
                self.run([python, "manage.py", "createsuperuser", *args], env)
            case ["python", "manage.py", "rpcworker", *args]:
                self._start_worker([python, "manage.py", "rpcworker", *args], env)
            case ["python", "manage.py", *args]:
                self.run([python, "manage.py", *args], env)
            case ["daphne", *args]:
                self._start_daphne([python, "-m", "daphne", *args], env)
            case ["python", script] if script.endswith(".py"):
                self._start_client(script, env)
            case ["pytest", *args]:
                self.run([python, "-m", "pytest", "-p", "no:cacheprovider", *args], env)
            case _:
                raise AssertionError(f"the test does not know how to run {command.line!r}")

    def expect(self, lines: list[str]) -> None:
        """The client has printed what it printed so far plus ``lines``, and nothing else."""
        assert self.clients, "a text block before any client runs"
        client = self.clients[-1]
        self.expected_output += lines
        count = len(self.expected_output)
        client.wait_for(r"", timeout=CLIENT_TIMEOUT, start=count - 1)  # its count-th line
        printed = client.output().splitlines()[:count]
        assert printed == self.expected_output, client.output()

    # --------------------------------------------------------------------------------------
    # Commands

    def run(self, argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        done = _run(argv, env=env, cwd=self.root)
        self.completed.append(done)
        return done

    def _check_requirements(self, requirements: list[str]) -> None:
        # channels-rpc is the checkout, installed: the extras asked for must be ones the built
        # package declares. Anything else comes from this interpreter (no download), so it
        # must be installed here (the test extra lists what the README's and docs' tests need).
        for requirement in requirements:
            if match := re.fullmatch(r"channels-rpc(?:\[([\w,-]+)\])?(.*)", requirement):
                wanted = set(filter(None, (match.group(1) or "").split(",")))
                assert wanted <= self.venv.extras(), f"channels-rpc has no extra {wanted}"
                # The version asked for is the checkout's, not 1.0.1 from the package index.
                allowed = SpecifierSet(match.group(2), prereleases=True)
                assert channels_rpc.__version__ in allowed, f"{requirement!r} refuses this version"
                assert "1.0.1" not in allowed, f"{requirement!r} lets pip install 1.0.1"
            else:
                assert re.fullmatch(r"[\w.-]+", requirement), f"unexpected {requirement!r}"
                self.venv.query(f"from importlib.metadata import version; version({requirement!r})")

    def _check_redis_setting(self) -> None:
        # Servers must use the test's Redis: never the one on 127.0.0.1:6379, which may be
        # someone else's. The settings must take it from REDIS_URL, as the Quick start says.
        code = (
            "import json; from django.conf import settings; "
            "print(json.dumps(settings.CHANNEL_LAYERS['default']['CONFIG']['hosts']))"
        )
        env = {**self.env, "DJANGO_SETTINGS_MODULE": "mysite.settings"}
        hosts = json.loads(self.venv.query(code, cwd=self.root, env=env))
        assert hosts == [self.redis_url], f"the settings ignore REDIS_URL: hosts {hosts}"

    def _start(self, name: str, argv: list[str], env: dict[str, str]) -> Process:
        if not self.servers:
            self._check_redis_setting()
        return Process(name, argv, env, self.log_dir, cwd=self.root)

    def _start_daphne(self, argv: list[str], env: dict[str, str]) -> None:
        argv = [*argv[:3], "-e", "tcp:port=0:interface=127.0.0.1", *argv[3:]]
        proc = self._start(f"daphne{len(self.servers)}", argv, env)
        self.servers.append(proc)
        listening = proc.wait_for(r"Listening on TCP address (127\.0\.0\.1:\d+)")
        self.frontend_address = listening.group(1)

    def _start_worker(self, argv: list[str], env: dict[str, str]) -> None:
        proc = self._start(f"rpcworker{len(self.servers)}", argv, env)
        self.servers.append(proc)
        ready = proc.wait_for(r"rpcworker ready: .* queues=(\S+)")
        served = ready.group(1).split(",")
        queues = [arg for arg in argv[3:] if not arg.startswith("-") and not arg.isdigit()]
        if queues:  # the worker serves the queues its command line names, and only those
            assert served == sorted(queues), ready.group(0)
        # The Quick start's workers split the queues: a line serving every queue would not.
        for other in self.served:
            assert not other & set(served), f"{other & set(served)} served by two worker lines"
        self.served.append(set(served))

    def _start_client(self, script: str, env: dict[str, str]) -> None:
        path = self.root / script
        source = path.read_text(encoding="utf-8")
        assert README_ADDRESS in source, f"{script} does not connect to {README_ADDRESS}"
        assert self.frontend_address, f"{script} runs before daphne"
        path.write_text(source.replace(README_ADDRESS, self.frontend_address), encoding="utf-8")
        proc = Process(path.stem, [str(self.venv.python), script], env, self.log_dir, self.root)
        self.clients.append(proc)
        self.expected_output = []

    # --------------------------------------------------------------------------------------

    def finish_clients(self) -> None:
        """Each client exits 0 having printed exactly what the Quick start says."""
        for client in self.clients:
            code = client.popen.wait(CLIENT_TIMEOUT)
            client.wait_stopped()
            assert code == 0, f"{client.name} exited {code}:\n{client.output()}"
        if self.clients:
            printed = self.clients[-1].output().splitlines()
            assert printed == self.expected_output, (
                f"the client printed {printed}, the Quick start says {self.expected_output}"
            )

    def stop(self) -> None:
        """Stop every process started: clients, then workers, then front-ends."""
        workers = [proc for proc in self.servers if proc.name.startswith("rpcworker")]
        frontends = [proc for proc in self.servers if proc not in workers]
        for group in (self.clients, workers, frontends):
            for proc in group:
                proc.terminate()
            for proc in group:
                proc.wait_stopped()

    def logs(self) -> str:
        return "\n".join(
            f"----- {proc.name} (exit {proc.popen.returncode}) -----\n{proc.output()[-6000:]}"
            for proc in [*self.servers, *self.clients]
        )
