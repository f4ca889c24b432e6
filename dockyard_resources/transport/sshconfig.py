"""The user's `~/.ssh/config`, read through `paramiko.SSHConfig` with its `Include`s resolved.

paramiko parses `Include` as an ordinary keyword and ignores it, so the included files are
inlined here first, as OpenSSH reads them: each argument is a glob (matches in sorted order,
none is fine), relative paths are relative to `~/.ssh`, nesting stops at 16 levels.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
from pathlib import Path
from typing import Any

import paramiko

from .errors import TransportError

USER_CONFIG = "~/.ssh/config"
# OpenSSH's READCONF_MAX_DEPTH.
MAX_INCLUDE_DEPTH = 16
_KEYWORD = re.compile(r"\s*(\w+)(?:\s*=\s*|\s+)(.*)")


def lookup(alias: str, path: str = USER_CONFIG) -> dict[str, Any]:
    """The settings `ssh ALIAS` would use (lower-case keys), {} without a config file."""
    file = Path(os.path.expanduser(path))
    if not file.is_file():
        return {}
    text = "\n".join(_inlined(file, depth=0))
    try:
        config = paramiko.SSHConfig.from_text(text)
        return dict(config.lookup(alias))
    except paramiko.ConfigParseError as exc:  # a line paramiko cannot split
        raise TransportError(f"{file}: {exc}") from None


def _inlined(file: Path, depth: int) -> list[str]:
    if depth > MAX_INCLUDE_DEPTH:
        raise TransportError(
            f"{file}: Include nested more than {MAX_INCLUDE_DEPTH} levels deep (does an"
            " included file include itself?)"
        )
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TransportError(f"cannot read ssh config {file}: {exc}") from None
    lines: list[str] = []
    block = "Host *"  # the implicit block a file starts in
    for raw in text.splitlines():
        match = _KEYWORD.match(raw)
        keyword = match.group(1).lower() if match else ""
        if keyword in ("host", "match"):
            block = raw.strip()
        if keyword != "include":
            lines.append(raw)
            continue
        assert match is not None
        for included in _include_paths(match.group(2), file):
            lines += _inlined(included, depth + 1)
        # An included file may open blocks of its own: what follows the Include belongs to
        # the block the Include stood in again.
        lines.append(block)
    return lines


def _include_paths(arguments: str, including: Path) -> list[Path]:
    try:
        patterns = shlex.split(arguments)
    except ValueError as exc:
        raise TransportError(f"{including}: Include {arguments!r}: {exc}") from None
    found: list[Path] = []
    for pattern in patterns:
        expanded = os.path.expanduser(pattern)
        if not os.path.isabs(expanded):
            expanded = os.path.join(os.path.expanduser("~/.ssh"), expanded)
        found += [Path(p) for p in sorted(glob.glob(expanded)) if os.path.isfile(p)]
    return found


def proxy_jump_hops(value: str) -> list[tuple[str | None, str, int | None]]:
    """`ProxyJump` as (user, host, port) hops, first hop first: `[user@]host[:port]` or
    `ssh://[user@]host[:port]`, comma-separated; IPv6 addresses in brackets."""
    hops = []
    for part in value.split(","):
        hop = part.strip().removeprefix("ssh://")
        user, _, address = hop.rpartition("@")
        match = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:\[\]]+)(?::(\d+))?", address)
        if not match or not (match.group(1) or match.group(3)):
            raise TransportError(f"ProxyJump {value!r}: cannot read the jump host {part!r}")
        host = match.group(1) or match.group(3)
        port = match.group(2) or match.group(4)
        hops.append((user or None, host, int(port) if port else None))
    return hops
