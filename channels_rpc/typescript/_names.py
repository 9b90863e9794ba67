"""Names and comments: how text from an OpenRPC document is written safely into TypeScript.

Type names come from schema keys, titles and method names, and parameter labels from param
names: :class:`_Names` makes each a valid identifier that hides no reserved word and no name of
the generated module's own, and hands it out once. Descriptions become ``/** */`` comments.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Final

_IDENTIFIER: Final = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that cannot name a type, a parameter or a tuple label (property names may be any word).
_RESERVED: Final = _words(
    "break case catch class const continue debugger default delete do else enum export extends "
    "false finally for function if import in instanceof new null return super switch this "
    "throw true try typeof var void while with as implements interface let package private "
    "protected public static yield await any boolean never number object string symbol bigint "
    "undefined unknown type of keyof infer is asserts readonly declare module namespace"
)
# The names the generated module declares or uses itself: a schema cannot take them.
_OWN_NAMES: Final = _words(
    "Api ServerNotifications createApi positional CallOptions NotificationMessage Unsubscribe "
    "RpcClient Array Promise Record Object Function Date Error JSON"
)
_INDENT: Final = "  "


def _sanitized(name: str, fallback: str = "T") -> str:
    """A TypeScript identifier for ``name``: other characters become "_", a reserved word
    takes a trailing "_"."""
    text = re.sub(r"[^A-Za-z0-9_$]", "_", name) or fallback
    if text[0].isdigit():
        text = f"_{text}"
    return f"{text}_" if text in _RESERVED else text


def _pascal(name: str) -> str:
    """``reports.build`` -> ``ReportsBuild``: a type name made from a method's name."""
    parts = [part for part in re.split(r"[^A-Za-z0-9]+", name) if part]
    return _sanitized("".join(part[0].upper() + part[1:] for part in parts) or "Method")


def _key(name: str) -> str:
    """A property key: bare when it is an identifier (reserved words are fine there), else
    quoted."""
    return name if _IDENTIFIER.fullmatch(name) else json.dumps(name)


class _Names:
    """Hands out type names, each once: a name taken gets a number."""

    def __init__(self, taken: Iterable[str] = _OWN_NAMES) -> None:
        self._taken: set[str] = set(taken)

    def claim(self, wanted: str) -> str:
        base = _sanitized(wanted)
        name, number = base, 2
        while name in self._taken:
            name, number = f"{base}{number}", number + 1
        self._taken.add(name)
        return name


def _doc_comment(lines: Iterable[str], indent: str) -> list[str]:
    # "*/" would end the comment early.
    text = [line.rstrip().replace("*/", "*\\/") for line in lines]
    while text and not text[-1]:
        text.pop()
    while text and not text[0]:
        text.pop(0)
    if not text:
        return []
    if len(text) == 1:
        return [f"{indent}/** {text[0]} */"]
    return [f"{indent}/**", *(f"{indent} * {line}".rstrip() for line in text), f"{indent} */"]


def _one_line(text: str) -> str:
    """``text`` fit for a // comment: a line break would end it."""
    return " ".join(text.split())
