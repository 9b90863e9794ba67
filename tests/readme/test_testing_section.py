"""The guide "Testing your methods" (docs/guides/testing.md), run against the Quick-start project
(issue 12).

The Quick start's project is created as docs/getting-started.md says (its files and setup
commands, no server started); the guide's files are added and its ``pytest`` command runs, with a
Redis URL that leads nowhere: the tests pass without Redis and without a worker process.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from .markdown import GETTING_STARTED, TESTING_GUIDE, Block, section
from .project import QuickStart

pytestmark = pytest.mark.integration


def test_the_testing_section_passes_on_the_quick_start_project(
    new_project: Callable[[str], QuickStart], tmp_path: Path
) -> None:
    project = new_project(f"unix://{tmp_path / 'no-redis-here.sock'}")
    for block in setup_blocks(section("Quick start", GETTING_STARTED)):
        project.apply(block)
    blocks = section("Testing your methods", TESTING_GUIDE)
    for block in blocks:
        project.apply(block)

    tests = sum(len(re.findall(r"^async def test_", block.text, re.M)) for block in blocks)
    assert tests, "the section shows no test"
    ran = project.completed[-1]
    assert ran.args[1:3] == ["-m", "pytest"], "the section's last command is not pytest"
    assert re.search(rf"\b{tests} passed\b", ran.stdout), ran.stdout
    assert not re.search(r"\b(failed|errors?|warnings?)\b", ran.stdout.splitlines()[-1])
    assert not ran.stderr, ran.stderr  # nothing to worry a user: no warning, no stray task


def setup_blocks(blocks: list[Block]) -> list[Block]:
    """The Quick start up to the commands that start daphne and the workers."""
    for index, block in enumerate(blocks):
        if block.lang == "sh" and any(cmd.argv[:1] == ["daphne"] for cmd in block.commands()):
            return blocks[:index]
    raise AssertionError("the Quick start never starts daphne")
