"""Rotate a host's SSH host key, trusting only keys Pulumi learned over pinned connections.

- `prepare`: over a connection pinned to the key the host has now (a cloud host's user-data
  key), the host generates its next key and reports the public half; the caller keeps it in
  the state (NewHostKey).
- `rotate`: over a connection pinned to the old key or to that recorded new key, whichever
  the host presents (a run cut after the reload finds the new one), sshd gets the new key and
  is reloaded; then a fresh connection pinned to the new key alone must see it installed.
  A host presenting any other key is refused before anything is sent to it.
- `inspect`: which of sshd's key files hold the new and the old key (read's drift).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from dockyard_resources.errors import HostOutputError, InputError
from dockyard_resources.render import facts
from dockyard_resources.render import host_key as render
from dockyard_resources.render.common import HOST_LOCK_TIMEOUT_S
from dockyard_resources.transport import (
    HostKeyMismatch,
    SshSession,
    SshTarget,
    fingerprint_of,
    normalize_key_line,
    session,
)

Log = Callable[[str], None]
READ_TIMEOUT_S: Final = 120
# Locked scripts may first wait for the host lock.
LOCKED_TIMEOUT_S: Final = HOST_LOCK_TIMEOUT_S + READ_TIMEOUT_S
KEY_TYPE: Final = "ssh-ed25519"


def _ignore(_: str) -> None:
    return None


@dataclass(frozen=True)
class NewKey:
    """The next host key as the host reported it over the pinned connection."""

    public_key: str  # "ssh-ed25519 AAAA..."
    fingerprint: str
    key_file: str  # the sshd key file it will replace


@dataclass(frozen=True)
class KeyFiles:
    """Which of sshd's host key files hold the rotated and the old key ("" for none)."""

    new_file: str
    old_file: str

    def drift(self) -> list[str]:
        found: list[str] = []
        if not self.new_file:
            found.append(
                "no host key file of sshd holds the rotated key: sshd would present another"
                " key after its next restart"
            )
        if self.old_file:
            found.append(f"{self.old_file} holds the old (user-data) host key again")
        return found


@dataclass(frozen=True)
class Rotated:
    host_key: str
    fingerprint: str
    key_file: str
    actions: list[str]


def pinned(target: SshTarget, key: str) -> SshTarget:
    """`target` accepting `key` and no other host key."""
    return dataclasses.replace(target, host_key=key)


def _pinned_key(target: SshTarget) -> str:
    """The one host key `target` accepts, normalised; never trust on first use here."""
    if not target.host_key:
        raise InputError(
            f"{target.host}: rotating the host key needs the current key pinned (no trust on"
            " first use)"
        )
    return normalize_key_line(target.host_key)


def _actions(stdout: str, log: Log) -> list[str]:
    done = [str(text) for text in facts.parse(stdout).get(render.ACTION_FACT, [])]
    for text in done:
        log(text)
    return done


def prepare(
    target: SshTarget, config: str = render.DEFAULT_SSHD_CONFIG, log: Log = _ignore
) -> NewKey:
    """Over a connection pinned to `target.host_key`, have the host generate (or keep, after a
    cut) its next ed25519 key; returns its public half."""
    old = _pinned_key(target)
    result = session(target).run(
        render.prepare_script(old, config),
        step="generate the next host key",
        timeout=LOCKED_TIMEOUT_S,
    )
    _actions(result.stdout, log)
    reported = facts.one(result.stdout, render.NEW_FACT)
    public = normalize_key_line(str(reported["publicKey"]))
    if not public.startswith(KEY_TYPE + " "):
        raise HostOutputError(f"{target.host}: the new host key is not {KEY_TYPE}: {public[:40]}")
    return NewKey(public, fingerprint_of(public), str(reported["keyFile"]))


def connect_either(target: SshTarget, old: str, new: str) -> tuple[SshSession, str]:
    """A session pinned to `old` or to `new`, whichever the host presents, and that key.
    Any other key raises `HostKeyMismatch` before a credential is sent."""
    try:
        return session(pinned(target, old)), old
    except HostKeyMismatch as first:
        try:
            return session(pinned(target, new)), new
        except HostKeyMismatch:
            raise HostKeyMismatch(
                first.address,
                f"{fingerprint_of(old)} (old) or {fingerprint_of(new)} (rotated)",
                first.seen,
            ) from None


def rotate(
    target: SshTarget,
    new_key: str,
    config: str = render.DEFAULT_SSHD_CONFIG,
    log: Log = _ignore,
) -> Rotated:
    """Make sshd serve `new_key` (which `prepare` reported) instead of `target.host_key`."""
    old, new = _pinned_key(target), normalize_key_line(new_key)
    sess, presented = connect_either(target, old, new)
    result = sess.run(
        render.switch_script(old, new, config),
        step="switch sshd to the new host key",
        timeout=LOCKED_TIMEOUT_S,
    )
    actions = _actions(result.stdout, log)
    # The proof is a new connection that accepts the new key alone.
    sess.drop_connection()
    files = inspect(pinned(target, new), old, config)
    problems = files.drift()
    if problems:
        raise HostOutputError(f"{target.host}: host key rotated, but " + "; ".join(problems))
    log(f"sshd presents the new host key {fingerprint_of(new)}")
    if presented != new:
        log(f"the old host key {fingerprint_of(old)} is no longer accepted")
    return Rotated(new, fingerprint_of(new), files.new_file, actions)


def inspect(target: SshTarget, old_key: str, config: str = render.DEFAULT_SSHD_CONFIG) -> KeyFiles:
    """Over a connection pinned to `target.host_key` (the rotated key): which of sshd's key
    files hold it and `old_key`. A host presenting another key raises `HostKeyMismatch`."""
    new = _pinned_key(target)
    result = session(target).run(
        render.inspect_script(normalize_key_line(old_key), new, config),
        step="inspect the host keys",
        timeout=READ_TIMEOUT_S,
    )
    found = facts.one(result.stdout, render.KEYS_FACT)
    return KeyFiles(new_file=str(found["newKeyFile"]), old_file=str(found["oldKeyFile"]))
