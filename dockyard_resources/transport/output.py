"""Capture a command's output while handing it, line by line and masked, to a callback."""

from __future__ import annotations

import codecs
from collections.abc import Callable

OnLine = Callable[[str, str], None]  # (stream "stdout" | "stderr", line without newline)

TAIL_LINES = 30
TAIL_CHARS = 4000


class StreamCapture:
    def __init__(self, name: str, on_line: OnLine | None, mask: Callable[[str], str]) -> None:
        self.name = name
        self._on_line = on_line
        self._mask = mask
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._chunks: list[str] = []
        self._partial = ""
        self.bytes = 0  # raw bytes received on this stream

    def feed(self, data: bytes) -> None:
        self.bytes += len(data)
        text = self._decoder.decode(data)
        if not text:
            return
        self._chunks.append(text)
        if self._on_line is None:
            return
        lines = (self._partial + text).split("\n")
        self._partial = lines.pop()
        for line in lines:
            self._on_line(self.name, self._mask(line))

    def finish(self) -> str:
        rest = self._decoder.decode(b"", final=True)
        if rest:
            self._chunks.append(rest)
            self._partial += rest
        if self._on_line is not None and self._partial:
            self._on_line(self.name, self._mask(self._partial))
        self._partial = ""
        return "".join(self._chunks)

    def tail(self) -> str:
        """The last lines seen so far, masked (used in errors). Masked before cutting so
        that a secret cannot survive half-cut at the edge of the tail."""
        return tail_of(self._mask("".join(self._chunks)))


def tail_of(text: str) -> str:
    lines = text.rstrip("\n").split("\n")[-TAIL_LINES:]
    return "\n".join(lines)[-TAIL_CHARS:]
