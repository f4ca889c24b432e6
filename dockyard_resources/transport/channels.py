"""Session channels for long-lived streams, over as many SSH connections as they need.

sshd allows `MaxSessions` session channels per connection (10 by default, less on some
hosts) and counts a session until its command exits, even after the channel was closed.
One connection therefore runs out for a client that holds many streams (pooled HTTP
connections, `logs -f`, attach/exec), and stays out when commands outlive their clients.
So each connection carries at most `MAX_PARALLEL_CHANNELS`; a new one is opened when all
are full; a connection that fails to open a channel (refused, timed out, dead) takes no
new ones and is closed once its last channel is done. Every connection pins the host key
the first one was given or saw.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import paramiko
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

from .connect import CHANNEL_TIMEOUT
from .errors import ConnectionLost, TransportError
from .session import MAX_PARALLEL_CHANNELS, SshSession
from .target import SshTarget

log = logging.getLogger(__name__)

# Connections tried for one channel before the caller is told it cannot have one.
OPEN_ATTEMPTS = 8


class _ChannelRefused(Exception):
    """This connection cannot open a channel now: try another one."""


@dataclasses.dataclass(eq=False)
class _Link:
    session: SshSession
    in_use: int = 0  # channels open or being opened
    opened: int = 0  # channels open
    retired: bool = False  # takes no new channels; closed when its last one is done
    # One channel open request at a time: when sshd refuses one, `opened` is exact.
    opening: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class ChannelPool:
    """Open `command` channels to one host; `close()` ends every connection."""

    def __init__(self, target: SshTarget, per_connection: int = MAX_PARALLEL_CHANNELS) -> None:
        self._target = target
        self._per_connection = per_connection
        self._lock = threading.Lock()
        self._links: list[_Link] = []
        self._closed = False

    def connect(self) -> str:
        """Connect now, so that a wrong key or an unreachable host shows before a client;
        the user logged in as (the target's, or ~/.ssh/config's User)."""
        link = self._reserve()
        try:
            link.session.transport()
            return link.session.user
        finally:
            self._release(link)

    @contextmanager
    def channel(self, command: str) -> Iterator[paramiko.Channel]:
        """A channel running `command`, closed (and its slot freed) on exit."""
        channel, link = self._open(command)
        try:
            yield channel
        finally:
            channel.close()
            with self._lock:
                link.opened -= 1
            self._release(link)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            links, self._links = self._links, []
        for link in links:
            link.session.close()

    def _open(self, command: str) -> tuple[paramiko.Channel, _Link]:
        retrying = Retrying(
            retry=retry_if_exception_type(_ChannelRefused),
            stop=stop_after_attempt(OPEN_ATTEMPTS),
            reraise=True,
        )
        try:
            return retrying(self._open_once, command)
        except _ChannelRefused as exc:
            raise ConnectionLost(str(exc)) from None

    def _open_once(self, command: str) -> tuple[paramiko.Channel, _Link]:
        link = self._reserve()
        where = link.session.address
        with link.opening:
            if link.retired:  # another client's channel was refused here meanwhile
                self._release(link)
                raise _ChannelRefused(f"ssh {where}: this connection takes no more channels")
            try:
                transport = link.session.transport()  # reconnects a connection that died
            except BaseException:
                self._release(link, retire=True)
                raise
            try:
                channel = transport.open_session(timeout=CHANNEL_TIMEOUT)
            except paramiko.ChannelException as exc:
                # Refused: sshd's MaxSessions is lower than ours, or sessions of commands
                # that outlived their channels still count on this connection.
                self._learn_limit(link)
                log.info("ssh %s: channel refused (%s): using another connection", where, exc)
                self._release(link, retire=True)
                raise _ChannelRefused(f"ssh {where}: cannot open a channel: {exc}") from None
            except (paramiko.SSHException, EOFError, OSError) as exc:
                # No answer, or the connection is gone.
                log.info("ssh %s: no channel (%s): using another connection", where, exc)
                self._release(link, retire=True)
                raise _ChannelRefused(f"ssh {where}: cannot open a channel: {exc}") from None
            with self._lock:
                link.opened += 1
        try:
            channel.exec_command(command)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            channel.close()
            with self._lock:
                link.opened -= 1
            self._release(link, retire=True)
            raise _ChannelRefused(f"ssh {where}: cannot run the command: {exc}") from None
        return channel, link

    def _learn_limit(self, link: _Link) -> None:
        """The channels open when the host refused one are what it allows (or fewer, when
        sessions linger): ask no connection for more. A refusal with none open only tells
        of lingering sessions on that connection."""
        with self._lock:
            if link.opened > 0:
                self._per_connection = min(self._per_connection, link.opened)

    def _reserve(self) -> _Link:
        with self._lock:
            if self._closed:
                raise TransportError(f"the channels to {self._target.host} are closed")
            for link in self._links:
                if not link.retired and link.in_use < self._per_connection:
                    link.in_use += 1
                    return link
            link = _Link(SshSession(self._next_target()), in_use=1)
            self._links.append(link)
            return link

    def _next_target(self) -> SshTarget:
        """The target, pinned to the host key the first connection was given or saw."""
        if self._target.host_key is None:
            for link in self._links:
                seen = link.session.seen_host_key
                if seen is not None:
                    return dataclasses.replace(self._target, host_key=seen)
        return self._target

    def _release(self, link: _Link, *, retire: bool = False) -> None:
        with self._lock:
            link.in_use -= 1
            link.retired = link.retired or retire
            # Keep one idle connection for the next client; close retired and surplus ones.
            surplus = len([other for other in self._links if not other.retired]) > 1
            drop = link.in_use == 0 and (link.retired or surplus) and link in self._links
            if drop:
                self._links.remove(link)
        if drop:
            link.session.close()
