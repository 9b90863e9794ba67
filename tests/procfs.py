"""What Linux's /proc says of a process: whether it ended, and its parent (worker pool tests)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["gone", "parent_of"]


def _stat_fields(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (which may hold spaces and ')')."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def gone(pid: int) -> bool:
    """Ended: no such process, or a zombie (dead, not yet reaped)."""
    try:
        state = _stat_fields(pid)[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def parent_of(pid: int) -> int:
    return int(_stat_fields(pid)[1])
