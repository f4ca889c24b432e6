"""The one format in which host-side scripts report what they found: fact lines.

A fact is one line `dockyard-fact <name> <json>` on stdout; a script may print any number,
among other output (a name may repeat: e.g. one `other` per instance found). The script
side is `dy_fact NAME JSON` (or a template printing the same prefix), the Python side is
`parse` / `one`. Each fact's script and its parser live together in the module that uses
them, and are tested on recorded output.
"""

from __future__ import annotations

import json
from typing import Any, Final

from dockyard_resources.errors import HostOutputError

PREFIX: Final = "dockyard-fact "
SHELL_HELPER: Final = """\
# dy_fact NAME JSON: one fact line (the format render/facts.py parses).
dy_fact() { printf 'dockyard-fact %s %s\\n' "$1" "$2"; }
"""


def line(name: str, value: Any) -> str:
    """The line a script prints for this fact (recorded outputs in tests use it too)."""
    return f"{PREFIX}{name} {json.dumps(value, separators=(',', ':'))}"


def parse(stdout: str) -> dict[str, list[Any]]:
    """Every fact in the output, by name, in the order printed; other lines are ignored."""
    found: dict[str, list[Any]] = {}
    for text in stdout.splitlines():
        if not text.startswith(PREFIX):
            continue
        name, _, payload = text[len(PREFIX) :].partition(" ")
        try:
            value = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise HostOutputError(f"fact {name!r} is not JSON ({exc}): {payload[:300]!r}") from None
        found.setdefault(name, []).append(value)
    return found


def one(stdout: str, name: str) -> Any:
    """The single fact `name`; a clear error when the script printed none."""
    values = parse(stdout).get(name)
    if not values:
        raise HostOutputError(f"the host printed no {name!r} fact: {stdout[-500:]!r}")
    return values[-1]
