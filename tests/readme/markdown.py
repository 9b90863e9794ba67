"""The README's sections as fenced blocks, read the way a user reads them.

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

_TARGET = re.compile(r"# (appended to )?(\S+\.\w+)\s*$")
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


def section(title: str, readme: Path = README) -> list[Block]:
    """The fenced blocks between ``## title`` and the next ``## `` heading, in order."""
    lines = readme.read_text(encoding="utf-8").splitlines()
    heading = f"## {title}"
    assert heading in lines, f"README.md has no {heading!r} section"
    start = lines.index(heading) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    blocks: list[Block] = []
    fence: tuple[str, list[str]] | None = None
    for line in lines[start:end]:
        if fence is None and line.startswith("```"):
            fence = (line[3:].strip(), [])
        elif fence is not None and line.startswith("```"):
            blocks.append(Block(fence[0], "\n".join(fence[1]) + "\n"))
            fence = None
        elif fence is not None:
            fence[1].append(line)
    assert fence is None, f"an unclosed code block in {heading!r}"
    return blocks
