"""Log lines that clients cannot forge.

Client text reaches the library's logs: an exception's message (the reference project's
``fail(message)`` raises ``RuntimeError(message)``), error bodies, params when
``LOG_RPC_PARAMS`` is on. A CR or LF in it would start a log line of the client's choosing.
:func:`protect` gives a logger a filter that makes each of its records one line of bounded
length, tracebacks kept with each exception's own text escaped. Done where records are made,
it covers every call site and needs nothing from the project's logging configuration.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterator
from typing import Final

__all__ = ["LOGGED_TEXT_LIMIT", "format_exception", "loggable", "protect"]


#: Longest client text (a log message, an exception's text) kept in a log line, in characters.
LOGGED_TEXT_LIMIT: Final = 2000
# C0 and C1 controls (CR, LF, ESC, NEL...) and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def loggable(text: str, limit: int = LOGGED_TEXT_LIMIT) -> str:
    """``text`` as one log line: control characters escaped (``\\n``), cut after ``limit``."""
    if len(text) > limit:
        text = f"{text[:limit]}... ({len(text) - limit} more characters)"
    elif not _CONTROL.search(text):
        return text
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def format_exception(exc: BaseException) -> str:
    """Python's traceback of ``exc``, the text of each exception in it made :func:`loggable`.

    Frames and source lines come from the server's own files; each exception's own lines
    (``Type: text`` and its notes) may carry client input, so that block is escaped wherever it
    appears, for ``exc`` and the exceptions chained to it.
    """
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    blocks = {"".join(traceback.format_exception_only(type(e), e)) for e in _chain(exc)}
    for raw in sorted(blocks, key=len, reverse=True):
        safe = loggable(raw.removesuffix("\n")) + "\n"
        if safe != raw:
            text = text.replace(raw, safe)
    return text.rstrip("\n")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (as tracebacks show)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )


class _LoggableRecords(logging.Filter):
    """Makes every record of a logger one line of bounded length (but tracebacks).

    The record keeps ``exc_info (handlers that take the exception object still get it); text
    formatters print ``exc_text``, filled in here with the escaped traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
            safe = loggable(message)
            if safe is not message:
                record.msg, record.args = safe, ()
            if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
                record.exc_text = format_exception(record.exc_info[1])
        except Exception:  # a record that cannot be formatted: logging reports it as usual
            pass
        return True


def protect(logger: logging.Logger) -> logging.Logger:
    """Give ``logger`` the filter (once); returns it, for ``logger = protect(getLogger(...))``.

    A filter on a logger sees only the records made on that very logger, so each of the
    library's loggers is protected where it is created.
    """
    if not any(isinstance(f, _LoggableRecords) for f in logger.filters):
        logger.addFilter(_LoggableRecords())
    return logger
