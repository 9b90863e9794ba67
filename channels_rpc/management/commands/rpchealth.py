"""``manage.py rpchealth --file PATH | --url URL``: exit 0 when healthy, 1 otherwise.

For container health checks: ``--file`` reads a worker's heartbeat (``rpcworker
--health-file``), ``--url`` asks a front-end's health view.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

from django.core.management.base import BaseCommand, CommandError, CommandParser

from channels_rpc.health import HEARTBEAT_SECONDS, UNHEALTHY


class Command(BaseCommand):  # type: ignore[misc]
    help = "Check a worker's heartbeat file or a front-end's health URL."
    requires_system_checks: ClassVar[list[str]] = []  # a health probe must start fast

    def add_arguments(self, parser: CommandParser) -> None:
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--file", type=Path, help="A worker's --health-file.")
        target.add_argument("--url", help="A front-end's health view, e.g. /healthz/.")
        parser.add_argument(
            "--max-age", type=float, default=3 * HEARTBEAT_SECONDS, help="Seconds (--file)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["file"] is not None:
            self._check_file(options["file"], options["max_age"])
        else:
            self._check_url(options["url"])
        self.stdout.write("healthy")

    def _check_file(self, path: Path, max_age: float) -> None:
        try:
            age = time.time() - path.stat().st_mtime
        except FileNotFoundError:
            raise CommandError(f"unhealthy: no heartbeat at {path}", returncode=1) from None
        if age > max_age:
            raise CommandError(f"unhealthy: last heartbeat {age:.0f} s ago", returncode=1)
        # The worker writes why it is unhealthy while its event loop and Redis are fine.
        status = path.read_text(errors="replace").strip()
        if status.startswith(UNHEALTHY):
            raise CommandError(status, returncode=1)

    def _check_url(self, url: str) -> None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                status = response.status
        except (urllib.error.URLError, OSError) as exc:
            raise CommandError(f"unhealthy: {exc}", returncode=1) from None
        if status != 200:
            raise CommandError(f"unhealthy: HTTP {status}", returncode=1)
