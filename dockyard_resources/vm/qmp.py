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


def hmp_command(socket_path: Path, command_line: str, *, timeout: float = 5) -> str:
    """Run a human-monitor (HMP) command through QMP and return its text output.

    HMP reports most failures only in that text ("Error: ..."), not as a QMP
    error: callers check it with `hmp_failed`.
    """
    reply = qmp_command(
        socket_path, "human-monitor-command", {"command-line": command_line}, timeout=timeout
    )
    return str(reply)


def hmp_failed(reply: str) -> bool:
    """True when an HMP reply reports a failure (savevm/loadvm print nothing on success)."""
    text = reply.lower()
    return "error" in text or "fail" in text or "could not" in text


def snapshot_tags(info_snapshots: str) -> list[str]:
    """Tags of the loadable snapshots in HMP `info snapshots` output.

    Only the first section counts ("present on all disks"); snapshots listed as
    partial exist on some disks only and cannot be loaded.
    """
    tags: list[str] = []
    in_section = False
    for line in info_snapshots.splitlines():
        if line.startswith("List of snapshots present on all disks"):
            in_section = True
            continue
        if not in_section:
            continue
        if line.startswith("List of") or not line.strip():
            break
        fields = line.split()
        if len(fields) >= 2 and fields[0] != "ID":
            tags.append(fields[1])
    return tags


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
