"""One measured phase: wall time plus what the transport's trace saw during it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Phase:
    name: str
    started: float = 0.0  # epoch seconds
    ended: float = 0.0
    events: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def wall(self) -> float:
        return self.ended - self.started

    def _of(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["kind"] == kind]

    @property
    def connections(self) -> int:
        return len(self._of("connect"))

    def connections_per_host(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for event in self._of("connect"):
            counts[event["address"]] = counts.get(event["address"], 0) + 1
        return counts

    @property
    def commands(self) -> int:
        return len(self._of("command"))

    @property
    def bytes_sent(self) -> int:
        return sum(e["sent"] for e in self._of("command"))

    @property
    def bytes_received(self) -> int:
        return sum(e["received"] for e in self._of("command"))

    @property
    def host_busy(self) -> float:
        """Seconds during which at least one host-side command (or connection setup) ran:
        the union of their intervals, so parallel commands are not counted twice."""
        spans = sorted((e["started"], e["ended"]) for e in self.events)
        busy, end = 0.0, float("-inf")
        for start, stop in spans:
            if stop <= end:
                continue
            busy += stop - max(start, end)
            end = stop
        return busy

    @property
    def host_share(self) -> float:
        return self.host_busy / self.wall if self.wall > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "wallSeconds": round(self.wall, 2),
            "sshConnections": self.connections,
            "sshConnectionsPerHost": self.connections_per_host(),
            "commands": self.commands,
            "bytesSent": self.bytes_sent,
            "bytesReceived": self.bytes_received,
            "hostBusySeconds": round(self.host_busy, 2),
            "hostShare": round(self.host_share, 3),
            **self.extra,
        }


class Recorder:
    """Phases in order, each with the trace events that fall inside it."""

    def __init__(self, trace_file: Path, say: Any = print) -> None:
        self.trace_file = trace_file
        self.phases: list[Phase] = []
        self._say = say

    def _events_between(self, started: float, ended: float) -> list[dict[str, Any]]:
        if not self.trace_file.exists():
            return []
        events = [json.loads(line) for line in self.trace_file.read_text().splitlines() if line]
        return [e for e in events if started <= e["started"] and e["ended"] <= ended]

    @contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        phase = Phase(name, started=time.time())
        self._say(f"[bench] {name} ...")
        try:
            yield phase
        finally:
            phase.ended = time.time()
            phase.events = self._events_between(phase.started, phase.ended)
            self.phases.append(phase)
            self._say(
                f"[bench] {name}: {phase.wall:.1f} s, {phase.connections} SSH connection(s), "
                f"{phase.commands} command(s)"
            )
