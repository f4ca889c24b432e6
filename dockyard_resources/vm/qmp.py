"""Minimal QMP client (QEMU's JSON control socket): one command per connection."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any


class QmpError(RuntimeError):
    pass


def qmp_command(
    socket_path: Path, command: str, arguments: dict[str, Any] | None = None, *, timeout: float = 5
) -> Any:
    """Connect, negotiate capabilities, run `command`, return its `return` value."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(socket_path))
        reader = sock.makefile("r", encoding="utf-8")
        _read_reply(reader, greeting=True)
        _send(sock, {"execute": "qmp_capabilities"})
        _read_reply(reader)
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        _send(sock, message)
        return _read_reply(reader)


def _send(sock: socket.socket, message: dict[str, Any]) -> None:
    sock.sendall(json.dumps(message).encode() + b"\n")


def _read_reply(reader: Any, *, greeting: bool = False) -> Any:
    while True:
        line = reader.readline()
        if not line:
            raise QmpError("QMP socket closed")
        reply = json.loads(line)
        if greeting and "QMP" in reply:
            return reply
        if "event" in reply:  # asynchronous events interleave with replies
            continue
        if "error" in reply:
            raise QmpError(f"{reply['error'].get('class')}: {reply['error'].get('desc')}")
        if "return" in reply:
            return reply["return"]
