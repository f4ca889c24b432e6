"""Shared pieces of every host-side script: strict bash, PATH, the host lock, templates.

Host-side text (scripts, unit files, configs) lives as Jinja2 templates in `templates/`
next to this module, one file each, loaded through the one environment `template_env()`.

Quoting rule, applied in every template: a value that is not a constant of the code (a
path, prefix, owner, URL, version or sha256 that came from the user's config, or anything
derived from one) goes through the `q` filter (shell quoting) or reaches the script as an
argument or environment variable; it is never spliced raw into shell. The `q` filter makes
a value one word, so it belongs only where the shell reads words: not inside a "..." string
(a quoted value there ends the string) nor in a comment.
Where a value lands somewhere else - a systemd unit, a TOML string, a "..." message or a
comment of a script - the template says why it is safe there, in a `{# ... #}` comment next
to it or in its header: the config layer and the providers' checks (`config/values.py`)
admit only a charset (no whitespace, quotes, `$`, `%`, backslash or newline) that needs no
quoting in that spot.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Iterable
from pathlib import Path

import jinja2

from dockyard_resources.render.layout import SYSTEM_PATH

# The templates ship inside the package and are read from the checkout at run time.
TEMPLATES_DIR = Path(__file__).parent / "templates"

# One lock file for every Dockyard operation on a host: useradd, daemon-reload,
# iptables and the shared sysbox service must never race between resources. (Slow steps
# that change none of these - cloud-init, apt, downloads - run outside it: see
# render/sysbox_host.py's ARTIFACT_LOCK.)
HOST_LOCK = "/run/dockyard.lock"
# Waiting longer than this for another operation means something is stuck.
HOST_LOCK_TIMEOUT_S = 900

_PREAMBLE = f"""\
set -euo pipefail
export LC_ALL=C
export PATH={SYSTEM_PATH}
"""


def _wait_for_lock(fd: int, what: str) -> str:
    """Shell: wait for the flock on `fd` (open on `what`), giving up after the timeout."""
    return (
        f"if ! flock -w {HOST_LOCK_TIMEOUT_S} {fd}; then\n"
        f'  echo "another Dockyard operation held {what} for {HOST_LOCK_TIMEOUT_S}s" >&2\n'
        "  exit 75\n"
        "fi\n"
    )


_LOCK = f"exec 9>{HOST_LOCK}\n" + _wait_for_lock(9, HOST_LOCK)
# Takes the host lock in the middle of a script (`bash_script(..., locked=False)`) whose
# first steps wait for other things (cloud-init, downloads) that must not hold it.
HOLD_HOST_LOCK = _LOCK

# Ends the host lock early in a script whose remaining steps touch only what its own lock
# (`hold_dir_lock`) guards, so operations on other resources of the host need not wait.
RELEASE_HOST_LOCK = "flock -u 9\nexec 9>&-\n"


def hold_dir_lock(var: str) -> str:
    """Shell: lock the directory named by `$var` (fd 8) until the script ends. A lock on the
    resource's own directory goes away with it, so nothing is left behind on the host.
    Taken while the host lock is held (always in that order: no two scripts can wait on
    each other crosswise)."""
    return f'exec 8<"${var}"\n' + _wait_for_lock(8, f"${var}")


def hold_lock(fd: int, path: str) -> str:
    """Shell: open the lock file `path` on `fd` and wait for its flock (until the script
    ends or `flock -u fd`). Lock order, for a lock other than the host lock: a script that
    holds it never waits for the host lock; a script that holds the host lock may wait
    for it. So no two scripts can wait on each other crosswise."""
    return f"exec {fd}>{path}\n" + _wait_for_lock(fd, path)


def bash_script(body: str, *, locked: bool = True) -> str:
    """Wrap a script body in strict mode and, unless told otherwise, the host lock."""
    return _PREAMBLE + (_LOCK if locked else "") + body.rstrip("\n") + "\n"


def quote(value: object) -> str:
    """Shell-quote any value for safe interpolation into a script."""
    return shlex.quote(str(value))


def quote_all(values: Iterable[object]) -> str:
    return " ".join(quote(v) for v in values)


@functools.cache
def template_env() -> jinja2.Environment:
    """The one jinja2 environment of the host-side templates: loads `templates/`, fails on
    undefined names, keeps the trailing newline, drops the newline after a block tag and
    knows `q` (shell quote)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - renders shell scripts and unit files, not HTML
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["q"] = quote
    return env


def render(name: str, /, **context: object) -> str:
    """Render the template `name` (a path below `templates/`) with `context`."""
    return template_env().get_template(name).render(**context)
