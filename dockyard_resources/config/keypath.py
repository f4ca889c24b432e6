"""Key paths of a stack file, between the text of messages and the structure of the YAML.

Messages name keys as `validate.py` writes them: `hosts[0].instances[1].poolBase` for the
keys under `dockyard:hosts`, `dockyard:sshPrivateKey` for other keys of `config:`, `config`
for the key itself. In the file the same key is `("config", "dockyard:hosts", 0, "instances",
1, "poolBase")`. Both directions live here, so the two spellings never drift apart.
"""

from __future__ import annotations

import re
from typing import Final

KeyPath = tuple[str | int, ...]

CONFIG: Final = "config"
HOSTS_KEY: Final = "dockyard:hosts"
# What messages call `dockyard:hosts` (the program prefixes `dockyard:` itself).
HOSTS: Final = "hosts"

_PART_RE: Final = re.compile(r"\[(\d+)\]|\.([^.\[\]]+)")
_HEAD_RE: Final = re.compile(r"[^.\[\]\s]+")
# `path: message`; a path never holds ": " (`dockyard:hosts` has no space after its colon).
_LINE_RE: Final = re.compile(r"(?P<path>\S+?): (?P<message>.*)", re.DOTALL)


def parse(text: str) -> KeyPath | None:
    """`hosts[0].instances[1].poolBase` -> the key's path in the file (None: not a key path)."""
    head = _HEAD_RE.match(text)
    if head is None:
        return None
    parts: list[str | int] = []
    rest = text[head.end() :]
    position = 0
    while position < len(rest):
        part = _PART_RE.match(rest, position)
        if part is None:
            return None
        index, key = part.groups()
        parts.append(int(index) if index is not None else key)
        position = part.end()
    name = head.group()
    if name == CONFIG:
        return (CONFIG, *parts)
    if name == HOSTS:
        return (CONFIG, HOSTS_KEY, *parts)
    if ":" in name:
        return (CONFIG, name, *parts)
    return (name, *parts)


def format_path(path: KeyPath) -> str:
    """The key path as messages write it (the inverse of `parse`)."""
    parts: list[str | int] = list(path)
    if parts[:2] == [CONFIG, HOSTS_KEY]:
        parts = [HOSTS, *parts[2:]]
    elif len(parts) > 1 and parts[0] == CONFIG:
        parts = parts[1:]
    text = str(parts[0]) if parts else ""
    for part in parts[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def path_of(message: str) -> KeyPath | None:
    """The key a `key.path: text` message is about (None: it names no key path)."""
    match = _LINE_RE.fullmatch(message)
    return parse(match.group("path")) if match else None
