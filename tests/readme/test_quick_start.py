"""The Quick start (docs/getting-started.md), run as written (issue 12).

Every block of the section, in order: the project is created with the page's commands, its
files are the page's python blocks, daphne and the two ``rpcworker`` processes run on a real
Redis, the client block runs and must print exactly the page's text blocks, and the page's
``rpcnotify`` line pushes the last of them. An edit of the page that breaks the path breaks
this test.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.integration.harness import Redis

from .markdown import GETTING_STARTED, Block, section
from .project import README_ADDRESS, QuickStart

pytestmark = pytest.mark.integration

#: An origin the Quick start's ``mysite/asgi.py`` does not list.
FOREIGN_ORIGIN = "https://evil.example"


def test_the_quick_start_runs_as_written(
    redis_server: Redis, new_project: Callable[[str], QuickStart]
) -> None:
    blocks = section("Quick start", GETTING_STARTED)
    assert_client_calls_every_method(blocks)
    project = new_project(redis_server.url)
    for block in blocks:
        project.apply(block)
    project.finish_clients()

    package = project.venv.installed_package()
    assert project.venv.path in package.parents, f"channels_rpc imported from {package}"
    assert (package / "py.typed").is_file()
    assert (package / "static" / "channels_rpc" / "client.js").is_file()
    assert_sockets_need_a_session_and_a_listed_origin(project)
    assert_asgi_sets_django_up_first(project)


def assert_client_calls_every_method(blocks: list[Block]) -> None:
    """The client shows an answer from each method the Quick start defines."""
    files = {block.target()[0]: block.text for block in blocks if block.lang == "python"}
    defined = {
        name or function
        for name, function in re.findall(
            r'\.rpc_method\((?:"([^"]+)")?[^)]*\)\n(?:async )?def (\w+)', files["myapp/rpc.py"]
        )
    }
    called = set(re.findall(r'rpc\.call\("([^"]+)"', files["client.py"]))
    assert defined, "no method found in myapp/rpc.py"
    assert called == defined


def assert_sockets_need_a_session_and_a_listed_origin(project: QuickStart) -> None:
    # The client proved that a session without an Origin (a service) gets in. A browser page
    # of another site, with the user's cookie, must not; nor may anyone without a session.
    assert project.superuser, "the Quick start creates no user"
    url = f"ws://{project.frontend_address}/ws/rpc/"
    cookie = f"sessionid={session_key(project, project.superuser)}"
    listed = f"http://{README_ADDRESS}"
    assert handshake(url, Cookie=cookie, Origin=listed) == 101
    assert handshake(url, Cookie=cookie, Origin=FOREIGN_ORIGIN) == 403
    assert handshake(url, Origin=listed) == 403
    assert handshake(url) == 403


#: Imports ``mysite.asgi`` and fails if it imports a module of the app (its consumers, say)
#: before Django has loaded the models: such a module may use them (Channels' order).
_GUARDED_IMPORT = """
import importlib.abc, sys
from django.apps import apps

class Guard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        first, _, rest = name.partition(".")
        if first == "myapp" and rest not in ("", "apps", "models") and not apps.models_ready:
            raise ImportError(f"mysite.asgi imports {name} before Django is set up")

sys.meta_path.insert(0, Guard())
import mysite.asgi
"""


def assert_asgi_sets_django_up_first(project: QuickStart) -> None:
    project.run([str(project.venv.python), "-c", _GUARDED_IMPORT], project.env)


def session_key(project: QuickStart, username: str) -> str:
    """A logged-in session of ``username`` in the project's database."""
    code = (
        "from django.contrib.auth.models import User; from django.test import Client; "
        f"client = Client(); client.force_login(User.objects.get(username={username!r})); "
        "print(client.cookies['sessionid'].value)"
    )
    done = project.run([str(project.venv.python), "manage.py", "shell", "-c", code], project.env)
    return done.stdout.split()[-1]  # Django 5.2's shell prints what it imported first


def handshake(url: str, **headers: str) -> int:
    """The HTTP status of a WebSocket handshake: 101 when accepted."""
    try:
        with connect(url, additional_headers=headers, open_timeout=10):
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code
