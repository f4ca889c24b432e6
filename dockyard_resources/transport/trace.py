"""What the transport did: SSH connections opened, commands run, bytes each way, and the
time spent inside host-side commands, counted per process and logged at debug level.

`DOCKYARD_TRACE=FILE` also appends one JSON line per connection and per command to FILE,
tagged with the resource being worked on, so that a benchmark can read what the Pulumi
provider processes did (docs/performance.md). Step names and sizes only: never a script,
its output or a secret.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

TRACE_ENV = "DOCKYARD_TRACE"

_resource: contextvars.ContextVar[str] = contextvars.ContextVar("dockyard_resource", default="")


@dataclass
class Counters:
    connections: int = 0
    connect_seconds: float = 0.0
    commands: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    command_seconds: float = 0.0  # wall time inside host-side commands, summed


_lock = threading.Lock()
_totals = Counters()


def totals() -> Counters:
    """A copy of this process's counters so far."""
    with _lock:
        return Counters(**asdict(_totals))


@contextlib.contextmanager
def for_resource(label: str) -> Iterator[None]:
    """Tag the SSH work done inside the block (in this thread) with `label`."""
    token = _resource.set(label)
    try:
        yield
    finally:
        _resource.reset(token)


def record_connect(address: str, started: float, ended: float) -> None:
    with _lock:
        _totals.connections += 1
        _totals.connect_seconds += ended - started
    log.debug("ssh %s: connected in %.2f s", address, ended - started)
    _append(kind="connect", address=address, started=started, ended=ended)


def record_command(
    address: str, step: str, *, started: float, ended: float, sent: int, received: int
) -> None:
    with _lock:
        _totals.commands += 1
        _totals.bytes_sent += sent
        _totals.bytes_received += received
        _totals.command_seconds += ended - started
    log.debug(
        "ssh %s: step %r took %.2f s, %d bytes sent, %d received",
        address,
        step,
        ended - started,
        sent,
        received,
    )
    _append(
        kind="command",
        address=address,
        step=step,
        started=started,
        ended=ended,
        sent=sent,
        received=received,
    )


def wall_clock(monotonic: float) -> float:
    """A time.monotonic() reading as epoch seconds, so that processes can be compared."""
    return time.time() - (time.monotonic() - monotonic)


def _append(**event: object) -> None:
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    for key in ("started", "ended"):
        event[key] = wall_clock(float(event[key]))  # type: ignore[arg-type]
    event.update(pid=os.getpid(), resource=_resource.get())
    line = json.dumps(event, sort_keys=True) + "\n"
    # One short write per event on an O_APPEND file: lines from parallel processes do
    # not interleave.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        log.warning("cannot write the trace file %s: %s", path, exc)
