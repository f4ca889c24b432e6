"""The host-side half of `SshSession.upload`: a bash script that writes stdin to a file.

Pure text, so the tests can run it locally as well as over SSH.
"""

from __future__ import annotations

import re
import shlex

from .errors import TransportError

_OWNER = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*\$?(:[A-Za-z0-9_][A-Za-z0-9_.-]*\$?)?$")


# Every directory on the way to the file must belong to root and be writable by root alone,
# or be sticky like /tmp (others cannot move root's files there): otherwise another user
# could move the file away and put their own in its place, or swap the temp file before
# chmod/chown follow it. Checked on the resolved path, which the rest of the script uses.
_SAFE_PARENTS = """\
dir=$(realpath -e -- "$dir")
p=$dir
while :; do
  read -r uid mode < <(stat -c '%u %a' -- "$p")
  if [ "$uid" != 0 ] || { [ $((8#$mode & 8#022)) != 0 ] && [ $((8#$mode & 8#1000)) = 0 ]; }; then
    echo "refusing to upload to $dst: $p belongs to uid $uid with mode $mode; every directory" \\
      "on the way must belong to root and be writable by root alone (or be sticky)" >&2
    exit 1
  fi
  [ "$p" != / ] || break
  p=$(dirname "$p")
done
dst=$dir/$(basename "$dst")
if [ -d "$dst" ] && [ ! -L "$dst" ]; then
  echo "refusing to upload to $dst: it is a directory" >&2
  exit 1
fi
"""


def upload_script(remote_path: str, mode: int = 0o644, owner: str | None = None) -> str:
    """Bash that writes its stdin to `remote_path`: into a 0600 temp file in the same
    directory, then chmod/chown, then an atomic rename onto the path itself (`mv -T`: never
    into a directory someone put there). The parent directory is created."""
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
        f"{_SAFE_PARENTS}"
        'tmp=$(mktemp "$dir/.$(basename "$dst").XXXXXX")\n'
        "trap 'rm -f \"$tmp\"' EXIT\n"
        'cat >"$tmp"\n'
        f'chmod {mode:o} "$tmp"\n'
        f"{chown}"
        'mv -fT "$tmp" "$dst"\n'
        "trap - EXIT\n"
    )
