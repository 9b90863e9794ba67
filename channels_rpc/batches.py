"""Answers in frames: a batch's answers in one array, and the bound on a frame's size.

A batch is answered with one array once every element that expects an answer has one. An array
too large for one frame keeps its shape: its largest answers are replaced with -32014 errors
until it fits (``MAX_RESPONSE_SIZE``).
"""

from __future__ import annotations

import logging

from channels_rpc.exceptions import JsonRpcErrorCode, error_object
from channels_rpc.logsafe import protect
from channels_rpc.protocol import encode_error, error_frame, utf8_size

__all__ = ["Batch", "answer_now", "fit", "too_large_frame"]

# The front-end's records, under the front-end's logger name.
logger = protect(logging.getLogger("channels_rpc"))


def too_large_frame(id_json: str, size: int, limit: int, what: str = "response") -> str:
    """The -32014 answer for a frame of ``size`` bytes that may not exceed ``limit``."""
    data = {"size": size, "limit": limit, "what": what}
    return error_frame(
        id_json, encode_error(error_object(JsonRpcErrorCode.RESPONSE_TOO_LARGE, data=data))
    )


def fit(id_json: str, frame: str, limit: int) -> str:
    """``frame``, or a -32014 answer for its id if it exceeds ``limit`` bytes.

    Workers of this package never send such answers; a result rewritten by
    ``process_response`` middleware, or ``rpc.discover`` in a batch, might.
    """
    if (size := utf8_size(frame)) <= limit:
        return frame
    logger.warning("answer of %d bytes over MAX_RESPONSE_SIZE (%d): -32014", size, limit)
    return too_large_frame(id_json, size, limit)


def answer_now(id_json: str, frame: str, batch: Batch | None, limit: int) -> str | None:
    """A call answered at once, never pending: the frame to write, or its batch's once complete."""
    frame = fit(id_json, frame, limit)
    return batch.add(frame, id_json) if batch is not None else frame


class Batch:
    """Collects the answers of one batch into a single array frame of at most ``limit`` bytes."""

    __slots__ = ("_frames", "_ids", "_limit", "_missing")

    def __init__(self, limit: int | None = None) -> None:
        self._frames: list[str | None] = []
        self._ids: list[str] = []
        self._limit = limit
        self._missing = 1  # held open until seal(), so the array never leaves half built

    def reserve(self, id_json: str = "null") -> int:
        self._frames.append(None)
        self._ids.append(id_json)
        self._missing += 1
        return len(self._frames) - 1

    def fill(self, slot: int, frame: str) -> str | None:
        """Store an answer; returns the array frame when it was the last one missing."""
        self._frames[slot] = frame
        self._missing -= 1
        return self._complete()

    def add(self, frame: str, id_json: str = "null") -> str | None:
        return self.fill(self.reserve(id_json), frame)

    def seal(self) -> str | None:
        """Mark the batch fully dispatched; returns the frame if nothing is outstanding."""
        self._missing -= 1
        return self._complete()

    def _complete(self) -> str | None:
        if self._missing or not self._frames:
            return None
        if self._limit is not None:
            self._fit(self._limit)
        return "[" + ",".join(frame for frame in self._frames if frame is not None) + "]"

    def _fit(self, limit: int) -> None:
        """Replace the largest answers with -32014 until the array fits in ``limit`` bytes."""
        sizes = [utf8_size(frame) if frame is not None else -1 for frame in self._frames]
        total = 1 + sum(size + 1 for size in sizes if size >= 0)  # brackets and commas
        while total > limit:
            slot = max(range(len(sizes)), key=sizes.__getitem__)
            if sizes[slot] < 0:
                return  # nothing left to shrink (cannot happen within the batch size limit)
            error = too_large_frame(self._ids[slot], sizes[slot], limit, "batch")
            if len(error) >= sizes[slot]:
                return  # only errors are left: as small as it gets
            self._frames[slot] = error
            total += len(error) - sizes[slot]
            sizes[slot] = len(error)
