"""One SSH connection to one host, shared by all commands of a process.

Commands run as root through `bash` (directly for root, else through `sudo -n`), the
script travelling on stdin so that neither it nor the secrets in it show up in `ps`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import select
import shlex
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import paramiko

from . import trace
from .connect import CHANNEL_TIMEOUT, connect
from .errors import CommandFailed, CommandTimeout, ConnectionLost, TransportError
from .hostkeys import fingerprint_of, normalize_key_line
from .liveness import Watchdog
from .masking import mask, mask_pieces
from .output import OnLine, StreamCapture
from .target import ResolvedTarget, SshTarget, resolve
from .upload import upload_script

log = logging.getLogger(__name__)

# OpenSSH's MaxSessions defaults to 10 channels per connection; stay below it.
MAX_PARALLEL_CHANNELS = 8
# Extra time the local side waits after the remote `timeout` should have fired.
_TIMEOUT_GRACE = 10.0
_KILL_AFTER = 5
_EOF_AFTER_EXIT = 5.0
_CHUNK = 65536
# Reads the whole script first, then runs it with /dev/null as stdin so that a
# command in the script cannot swallow the rest of the script.
_RUN_STDIN_SCRIPT = 'dockyard_script=$(cat) && eval "$dockyard_script" </dev/null'


@dataclass(frozen=True)
class Result:
    exit_code: int
    stdout: str
    stderr: str


class SshSession:
    """Use `dockyard_resources.transport.session(target)` rather than building one."""

    def __init__(self, target: SshTarget | ResolvedTarget) -> None:
        self._resolved = target if isinstance(target, ResolvedTarget) else resolve(target)
        self._target = self._resolved.target
        self._lock = threading.RLock()  # guards (re)connecting
        self._channels = threading.BoundedSemaphore(MAX_PARALLEL_CHANNELS)
        self._client: paramiko.SSHClient | None = None
        self._watchdog: Watchdog | None = None
        self._host_key: str | None = (
            normalize_key_line(self._target.host_key) if self._target.host_key else None
        )
        self._closed = False
        self.connects = 0  # how many connections this session has opened
        self.connect_attempts = 0  # attempts the latest connection needed

    # -- connection ---------------------------------------------------------------

    @property
    def address(self) -> str:
        return self._resolved.address

    @property
    def user(self) -> str:
        return self._resolved.user

    @property
    def host_key(self) -> str:
        """The host's key line ("type base64"): the pin, or the key seen on first use."""
        self.transport()
        assert self._host_key is not None
        return self._host_key

    @property
    def seen_host_key(self) -> str | None:
        """The pin, or the key seen on first use; None before the first connection."""
        return self._host_key

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.host_key)

    def transport(self) -> paramiko.Transport:
        """The live transport, (re)connecting when there is none or it died."""
        with self._lock:
            if self._closed:
                raise TransportError(f"session to {self.address} is closed")
            client = self._client
            transport = client.get_transport() if client else None
            if transport is not None and transport.is_active():
                return transport
            if client is not None:
                log.info("ssh %s: connection lost, reconnecting", self.address)
                self._drop()
            return self._connect()

    def _connect(self) -> paramiko.Transport:
        # After the first connection the key seen then is pinned: trust on first use
        # covers the first connection only.
        pins = [self._host_key] if self._host_key else list(self._resolved.known_host_keys)
        started = time.monotonic()
        connected = connect(self._resolved, pins)
        trace.record_connect(self.address, started, time.monotonic())
        self._client = connected.client
        self._host_key = self._host_key or connected.host_key
        self.connects += 1
        self.connect_attempts = connected.attempts
        transport = connected.client.get_transport()
        assert transport is not None
        if self._target.keepalive > 0:
            self._watchdog = Watchdog(transport, self.address, self._target.keepalive)
        return transport

    def _drop(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
            self._watchdog = None
        if self._client is not None:
            client, self._client = self._client, None
            # Through a jump host, closing says goodbye over the jump host's connection,
            # which may be gone already: this connection is closed either way.
            with contextlib.suppress(EOFError, OSError, paramiko.SSHException):
                client.close()

    def drop_connection(self, transport: paramiko.Transport | None = None) -> None:
        """Close the connection (only if it is still `transport`); the next use reconnects."""
        with self._lock:
            current = self._client.get_transport() if self._client else None
            if transport is None or current is transport:
                self._drop()

    def close(self) -> None:
        with self._lock:
            self._drop()
            self._closed = True

    def _open_channel(self) -> paramiko.Channel:
        """A new session channel. A connection that cannot open one is treated as dead
        and replaced once: nothing has run on it yet, so retrying is safe."""
        transport = self.transport()
        try:
            return transport.open_session(timeout=CHANNEL_TIMEOUT)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            log.info("ssh %s: cannot open a channel (%s), reconnecting", self.address, exc)
            self.drop_connection(transport)
        try:
            return self.transport().open_session(timeout=CHANNEL_TIMEOUT)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectionLost(f"ssh {self.address}: cannot open a channel: {exc}") from None

    # -- commands -----------------------------------------------------------------

    def run(
        self,
        script: str,
        *,
        step: str,
        sudo: bool = True,
        timeout: float | None = 600,
        on_line: OnLine | None = None,
        check: bool = True,
        secrets: Iterable[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> Result:
        """Run a bash script (as root unless sudo=False) and return its output.

        Output lines go to on_line(stream, line), masked, as they arrive. With
        check=True a non-zero exit raises CommandFailed. Past `timeout` seconds the
        host's `timeout` kills the script's process group and CommandTimeout is raised.
        Result holds the unmasked output; errors and on_line only masked text.
        """
        prelude = "".join(
            f"export {name}={shlex.quote(value)}\n" for name, value in (env or {}).items()
        )
        for name in env or {}:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise TransportError(f"invalid environment variable name {name!r}")
        body = (prelude + script).encode()
        command = self._command(_RUN_STDIN_SCRIPT, sudo=sudo, timeout=timeout)
        return self._execute(
            command,
            iter([body]),
            step=step,
            timeout=timeout,
            on_line=on_line,
            check=check,
            secrets=secrets,
        )

    def upload(
        self,
        data: bytes | Path,
        remote_path: str,
        mode: int = 0o644,
        owner: str | None = None,
        *,
        step: str | None = None,
        timeout: float | None = 600,
    ) -> None:
        """Write `data` (bytes, or a local file) to `remote_path` as root: see
        `upload.upload_script`."""
        script = upload_script(remote_path, mode, owner)
        command = self._command(script, sudo=True, timeout=timeout)
        chunks = _file_chunks(data) if isinstance(data, Path) else _byte_chunks(data)
        self._execute(
            command,
            chunks,
            step=step or f"upload {remote_path}",
            timeout=timeout,
            on_line=None,
            check=True,
            secrets=(),
        )

    def _command(self, bash_script: str, *, sudo: bool, timeout: float | None) -> str:
        argv = ["bash", "-c", bash_script]
        if timeout is not None:
            # The host-side timeout kills the whole process group, which closing the
            # channel alone would not do.
            argv = ["timeout", "-k", str(_KILL_AFTER), f"{float(timeout):.3f}s", *argv]
        if sudo and self.user != "root":
            argv = ["sudo", "-n", "-H", "--", *argv]
        return shlex.join(argv)

    def _execute(
        self,
        command: str,
        stdin: Iterator[bytes],
        *,
        step: str,
        timeout: float | None,
        on_line: OnLine | None,
        check: bool,
        secrets: Iterable[str],
    ) -> Result:
        pieces = mask_pieces([*self._target.secrets(), *secrets])

        def hide(text: str) -> str:
            return mask(text, pieces)

        out = StreamCapture("stdout", on_line, hide)
        err = StreamCapture("stderr", on_line, hide)
        with self._channels:
            channel = self._open_channel()
            started = time.monotonic()
            writer: _StdinWriter | None = None
            try:
                channel.exec_command(command)
                writer = _StdinWriter(channel, stdin)
                exit_code = self._pump(
                    channel, out=out, err=err, started=started, timeout=timeout, step=step
                )
            finally:
                channel.close()  # also unblocks a writer stuck on a full window
                if writer is not None:
                    writer.join()
        stdout, stderr = out.finish(), err.finish()
        ended = time.monotonic()
        elapsed = ended - started
        sent = writer.sent if writer is not None else 0
        trace.record_command(
            self.address,
            step,
            started=started,
            ended=ended,
            sent=sent,
            received=out.bytes + err.bytes,
        )
        if timeout is not None and exit_code in (124, 137) and elapsed >= timeout:
            raise CommandTimeout(step, timeout, err.tail(), out.tail())
        if exit_code != 0 and check:
            raise CommandFailed(step, exit_code, err.tail(), out.tail())
        return Result(exit_code, stdout, stderr)

    def _pump(
        self,
        channel: paramiko.Channel,
        *,
        out: StreamCapture,
        err: StreamCapture,
        started: float,
        timeout: float | None,
        step: str,
    ) -> int:
        """Read both streams until the command exits; return its exit code."""
        give_up = None if timeout is None else started + timeout + _TIMEOUT_GRACE
        fd = channel.fileno()
        exited_at: float | None = None
        while True:
            if channel.recv_ready():
                out.feed(channel.recv(_CHUNK))
                continue
            if channel.recv_stderr_ready():
                err.feed(channel.recv_stderr(_CHUNK))
                continue
            now = time.monotonic()
            if channel.closed or (channel.eof_received and channel.exit_status_ready()):
                break
            if channel.exit_status_ready():
                # sshd may send the exit status before the last output: wait for EOF,
                # but not forever, as a background process may keep stdout open.
                exited_at = exited_at or now
                if now - exited_at > _EOF_AFTER_EXIT:
                    log.warning("ssh %s: step %r exited but left output open", self.address, step)
                    break
            if give_up is not None and now >= give_up:
                channel.close()
                assert timeout is not None
                raise CommandTimeout(step, timeout, err.tail(), out.tail())
            wait = 1.0 if give_up is None else min(1.0, give_up - now)
            if channel.eof_received:
                # The data pipe stays readable after EOF: wait for the status instead.
                channel.status_event.wait(wait)
            else:
                select.select([fd], [], [], wait)
        # Output can still sit in the buffers after the status arrived.
        while channel.recv_ready():
            out.feed(channel.recv(_CHUNK))
        while channel.recv_stderr_ready():
            err.feed(channel.recv_stderr(_CHUNK))
        return self._exit_code(channel, step, err)

    def _exit_code(self, channel: paramiko.Channel, step: str, err: StreamCapture) -> int:
        if channel.exit_status != -1:
            return channel.exit_status
        transport = channel.get_transport()
        if transport is None or not transport.is_active():
            raise ConnectionLost(
                f"ssh {self.address}: connection lost during step {step!r}\n{err.tail()}"
            )
        return 255  # killed by a signal: OpenSSH sent exit-signal, not exit-status


class _StdinWriter:
    """Feeds stdin from a thread so that a large input and a chatty command cannot
    block each other on the SSH window."""

    def __init__(self, channel: paramiko.Channel, chunks: Iterator[bytes]) -> None:
        self._channel = channel
        self._chunks = chunks
        self.error: BaseException | None = None
        self.sent = 0
        self._thread = threading.Thread(target=self._write, name="ssh-stdin", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        try:
            for chunk in self._chunks:
                self._channel.sendall(chunk)
                self.sent += len(chunk)
            self._channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            # The command stopped reading (exited, or the channel closed): its exit
            # status tells the story.
            self.error = exc

    def join(self) -> None:
        self._thread.join(timeout=CHANNEL_TIMEOUT)


def _byte_chunks(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), _CHUNK):
        yield data[start : start + _CHUNK]


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            yield chunk
