"""Shared pieces of every host-side script: strict bash, PATH, the host lock."""

from __future__ import annotations

import shlex
from collections.abc import Iterable

import jinja2

# One lock file for every Dockyard operation on a host: useradd, daemon-reload,
# iptables, apt and the shared sysbox service must never race between resources.
HOST_LOCK = "/run/dockyard.lock"
# Waiting longer than this for another operation means something is stuck.
HOST_LOCK_TIMEOUT_S = 900

_PREAMBLE = """\
set -euo pipefail
export LC_ALL=C
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
"""

_LOCK = f"""\
exec 9>{HOST_LOCK}
if ! flock -w {HOST_LOCK_TIMEOUT_S} 9; then
  echo "another Dockyard operation held {HOST_LOCK} for {HOST_LOCK_TIMEOUT_S}s" >&2
  exit 75
fi
"""


def bash_script(body: str, *, locked: bool = True) -> str:
    """Wrap a script body in strict mode and, unless told otherwise, the host lock."""
    return _PREAMBLE + (_LOCK if locked else "") + body.rstrip("\n") + "\n"


def quote(value: object) -> str:
    """Shell-quote any value for safe interpolation into a script."""
    return shlex.quote(str(value))


def quote_all(values: Iterable[object]) -> str:
    return " ".join(quote(v) for v in values)


def template_env() -> jinja2.Environment:
    """A jinja2 environment that fails on undefined names and knows `q` (shell quote)."""
    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - renders shell scripts and unit files, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = quote
    return env
