"""SSH-level liveness probes, like OpenSSH's ServerAliveInterval / ServerAliveCountMax.

paramiko's own `set_keepalive` sends requests that want no reply, so it can never
notice a peer that stopped answering. Behind a forwarded port (QEMU user networking,
a bastion) the local TCP peer stays up while the machine behind it is gone: only an
answer-wanting request shows that. When no answer comes the transport is closed, which
wakes every reader on it, so a command fails with ConnectionLost instead of hanging.
"""

from __future__ import annotations

import logging
import threading

import paramiko

log = logging.getLogger(__name__)

_PROBE = "keepalive@openssh.com"  # any reply, even "unsupported", proves liveness


def answers(transport: paramiko.Transport, within: float) -> bool:
    done = threading.Event()

    def ask() -> None:
        try:
            transport.global_request(_PROBE, wait=True)
        except Exception as exc:  # a failing transport simply means "no answer"
            log.debug("keepalive probe failed: %s", exc)
        finally:
            done.set()

    threading.Thread(target=ask, name="ssh-probe", daemon=True).start()
    return done.wait(within) and transport.is_active()


class Watchdog:
    """Probe `transport` every `interval` s; close it after `count` silent intervals."""

    def __init__(self, transport: paramiko.Transport, address: str, interval: float) -> None:
        self._transport = transport
        self._address = address
        self._interval = interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"ssh-alive {address}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _loop(self) -> None:
        count = 3
        while not self._stopped.wait(self._interval):
            if not self._transport.is_active():
                return
            if answers(self._transport, self._interval * count):
                continue
            if self._stopped.is_set():
                return
            log.warning(
                "ssh %s: no answer to keepalive for %gs, closing the connection",
                self._address,
                self._interval * count,
            )
            self._transport.close()
            return
