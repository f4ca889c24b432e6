"""The per-process connection pool: one SshSession per (host, port, user, pinned key, route)."""

from __future__ import annotations

import atexit
import os
import threading
from typing import Any

from .session import SshSession
from .target import ResolvedTarget, SshTarget, resolve


class _Pool:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sessions: dict[tuple[Any, ...], SshSession] = {}


_pool = _Pool()


def session(target: SshTarget | ResolvedTarget) -> SshSession:
    """The pooled, connected session for `target` (connecting it if needed).

    Connecting happens outside the pool lock: one slow host must not hold up others.
    """
    resolved = target if isinstance(target, ResolvedTarget) else resolve(target)
    with _pool.lock:
        found = _pool.sessions.get(resolved.pool_key)
        if found is None:
            found = _pool.sessions[resolved.pool_key] = SshSession(resolved)
    found.transport()
    return found


def close_all() -> None:
    with _pool.lock:
        sessions = list(_pool.sessions.values())
        _pool.sessions.clear()
    for pooled in sessions:
        pooled.close()


def _forget_after_fork() -> None:
    # A forked child must not use the parent's sockets (nor a lock some parent thread
    # held at fork time): it starts with an empty pool.
    _pool.__init__()  # type: ignore[misc]


os.register_at_fork(after_in_child=_forget_after_fork)
atexit.register(close_all)
