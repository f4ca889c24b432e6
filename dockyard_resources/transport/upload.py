"""The host-side half of `SshSession.upload`: a bash script that writes stdin to a file.

Pure text, so the tests can run it locally as well as over SSH.
"""

from __future__ import annotations

import re
import shlex

from .errors import TransportError

_OWNER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?(:[A-Za-z0-9_][A-Za-z0-9_.-]*\$?)?$")


def upload_script(remote_path: str, mode: int = 0o644, owner: str | None = None) -> str:
    """Bash that writes its stdin to `remote_path`: into a 0600 temp file in the same
    directory, then chmod/chown, then an atomic rename. The parent directory is created.
    `owner` is "user" or "user:group"."""
    if not remote_path.startswith("/") or remote_path.endswith("/"):
        raise TransportError(f"upload needs an absolute file path, got {remote_path!r}")
    if owner is not None and not _OWNER.match(owner):
        raise TransportError(f"invalid owner {owner!r} (want user or user:group)")
    chown = f'chown {shlex.quote(owner)} "$tmp"\n' if owner else ""
    return (
        "set -eu\n"
        f"dst={shlex.quote(remote_path)}\n"
        'dir=$(dirname "$dst")\n'
        'mkdir -p "$dir"\n'
        'tmp=$(mktemp "$dir/.$(basename "$dst").XXXXXX")\n'
        "trap 'rm -f \"$tmp\"' EXIT\n"
        'cat >"$tmp"\n'
        f'chmod {mode:o} "$tmp"\n'
        f"{chown}"
        'mv -f "$tmp" "$dst"\n'
        "trap - EXIT\n"
    )
