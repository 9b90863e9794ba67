"""The sections of the README and of the documentation pages as fenced blocks, read the way a
user reads them.

A python (or ini) block that a user must create starts with a comment naming its file:
``# myapp/rpc.py`` (the whole file) or ``# appended to mysite/settings.py``. A sh block is
commands, one a line, with ``NAME=value`` prefixes and ``#`` comments. A text block is what the
client prints.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from workers.cluster import REPO

README = REPO / "README.md"
DOCS = REPO / "docs"
#: The page the Quick start lives on (``## Quick start``), and the testing guide.
GETTING_STARTED = DOCS / "getting-started.md"
TESTING_GUIDE = DOCS / "guides" / "testing.md"

_TARGET = re.compile(r"# (appended to )?(\S+\.\w+)\s*$")
_HEADING = re.compile(r"(#{1,6}) (.+)")
_ASSIGNMENT = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", re.DOTALL)


@dataclass(frozen=True)
class Block:
    lang: str
    text: str

    def target(self) -> tuple[str, bool]:
        """The file this block is (or is appended to): ``(path, append)``."""
        first = self.text.split("\n", 1)[0]
        match = _TARGET.fullmatch(first)
        assert match, f"a {self.lang} block must start with a comment naming its file: {first!r}"
        return match.group(2), match.group(1) is not None

    def commands(self) -> list[Command]:
        """The commands of this sh block, in order (a line ending in ``\\`` goes on below)."""
        lines = self.text.replace("\\\n", " ").splitlines()
        return [Command.parse(line) for line in lines if shlex.split(line, comments=True)]


@dataclass(frozen=True)
class Command:
    line: str
    env: dict[str, str]
    argv: list[str]

    @classmethod
    def parse(cls, line: str) -> Command:
        words = shlex.split(line, comments=True)
        env: dict[str, str] = {}
        while words and (assignment := _ASSIGNMENT.fullmatch(words[0])):
            env[assignment.group(1)] = assignment.group(2)
            words.pop(0)
        return cls(line, env, words)


def section(title: str, page: Path = README) -> list[Block]:
    """The fenced blocks of the section headed ``title`` on ``page``, in order.

    The heading may be of any level (``# title``, ``## title``, ...); the section runs to the
    next heading of the same or a higher level outside a code block, or to the end of the page.
    """
    lines = page.read_text(encoding="utf-8").splitlines()
    headings = _headings(lines)
    found = [(index, level) for index, (level, text) in headings.items() if text == title]
    assert len(found) == 1, f"{page.name} has {len(found)} sections {title!r}, not one"
    start, level = found[0]
    end = next(
        (i for i, (lvl, _) in sorted(headings.items()) if i > start and lvl <= level), len(lines)
    )
    blocks: list[Block] = []
    fence: tuple[str, list[str]] | None = None
    for line in lines[start + 1 : end]:
        if fence is None and line.startswith("```"):
            fence = (line[3:].strip(), [])
        elif fence is not None and line.startswith("```"):
            blocks.append(Block(fence[0], "\n".join(fence[1]) + "\n"))
            fence = None
        elif fence is not None:
            fence[1].append(line)
    assert fence is None, f"an unclosed code block in {title!r} of {page.name}"
    return blocks


def _headings(lines: list[str]) -> dict[int, tuple[int, str]]:
    """Line index -> (level, text) of each markdown heading outside code blocks."""
    headings: dict[int, tuple[int, str]] = {}
    in_fence = False
    for index, line in enumerate(lines):
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and (match := _HEADING.fullmatch(line)):
            headings[index] = (len(match.group(1)), match.group(2).strip())
    return headings
