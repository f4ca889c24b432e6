"""`python -m dockyard_resources tunnel HOST/PREFIX`: an instance's Docker on a local socket.

A unix socket on this machine, in a directory only this user can enter (private_dir.py);
every connection to it becomes one SSH channel to the host (the stack's own connection
settings: pinned host key, the stack's login key) running the instance's
`docker system dial-stdio`, which joins the channel to the instance's socket. Docker's own
`ssh://` transport works the same way. Channels are spread over as many SSH connections as
sshd's per-connection session limit needs, and a connection that dies is replaced for the
next client (transport/channels.py). Ctrl-C closes the socket and removes its file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shlex
import socket
import threading
from pathlib import Path

import paramiko

from dockyard_resources.errors import DockyardError
from dockyard_resources.operate.deployed import Host, Instance
from dockyard_resources.operate.private_dir import runtime_dir
from dockyard_resources.operate.relay import relay
from dockyard_resources.transport.channels import ChannelPool

log = logging.getLogger(__name__)

# accept() failures that pass once other connections end: wait a little, do not stop.
_TRANSIENT_ACCEPT = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
# accept() failures of one client that left before it was taken: next one.
_CLIENT_GONE = {errno.ECONNABORTED, errno.EPROTO}


class TunnelError(DockyardError):
    """The local socket cannot be opened."""


def default_socket(stack: str, host: str, prefix: str) -> Path:
    """The socket's default path, in the user's private runtime directory (made if needed)."""
    return runtime_dir() / f"dockyard-{stack}-{host}-{prefix.rstrip('_')}.sock"


def dial_command(inst: Instance, ssh_user: str) -> str:
    """The host-side command one connection runs (as root: the socket is root:group 0660)."""
    command = f"{shlex.quote(inst.root + '/bin/docker')} system dial-stdio"
    return command if ssh_user == "root" else f"sudo -n -- {command}"


def refusal(message: str) -> bytes:
    """What a client that gets no channel reads: an HTTP error the Docker clients show
    ("Error response from daemon: ..."), rather than a reset connection."""
    body = json.dumps({"message": f"dockyard tunnel: {message}"}).encode()
    head = (
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class Tunnel:
    """Serves `path` until `close()`; each client gets its own SSH channel."""

    def __init__(self, host: Host, inst: Instance, path: Path) -> None:
        self.host, self.inst, self.path = host, inst, path
        self.channels = ChannelPool(host.target)
        # Known once connected: the stack's user, or ~/.ssh/config's User (sshConfig).
        self._command = dial_command(inst, host.target.user or "root")
        self._server: socket.socket | None = None
        self._closed = threading.Event()

    def open(self) -> None:
        self._remove_stale_socket()
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is root-equivalent on the host: owner only
        try:
            server.bind(str(self.path))
        except OSError as exc:
            server.close()
            raise TunnelError(f"cannot open {self.path}: {exc.strerror or exc}") from None
        finally:
            os.umask(old_umask)
        server.listen(socket.SOMAXCONN)  # clients that connect in bursts wait, not fail
        self._server = server
        try:
            user = self.channels.connect()  # errors (key, address) show before the first client
            self._command = dial_command(self.inst, user)
        except BaseException:
            self.close()
            raise

    def _remove_stale_socket(self) -> None:
        if not (self.path.exists() or self.path.is_symlink()):
            return
        if not self.path.is_socket():
            raise TunnelError(f"{self.path} exists and is not a socket: choose --socket PATH")
        try:
            self.path.unlink()  # a socket left by an earlier tunnel
        except OSError as exc:
            raise TunnelError(
                f"{self.path} exists and cannot be removed ({exc.strerror}): choose --socket PATH"
            ) from None

    def serve_forever(self) -> None:
        assert self._server is not None, "open() first"
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError as exc:
                if self._closed.is_set():
                    return
                if exc.errno in _CLIENT_GONE:
                    continue
                if exc.errno not in _TRANSIENT_ACCEPT:
                    raise
                log.warning("cannot take a new connection (%s): retrying", exc.strerror)
                self._closed.wait(0.5)
                continue
            try:
                threading.Thread(
                    target=self._serve, args=(client,), name="tunnel-client", daemon=True
                ).start()
            except RuntimeError as exc:  # no thread to be had: this client waits no longer
                log.warning("cannot serve a new connection: %s", exc)
                client.close()

    def _serve(self, client: socket.socket) -> None:
        """One client, start to end; nothing it or its channel does escapes this thread."""
        try:
            with self.channels.channel(self._command) as channel:
                relay(client, channel)
                failed = _dial_failure(channel)
            if failed:
                log.warning("%s", failed)
        except DockyardError as exc:
            log.warning("a client got no channel: %s", exc)
            with contextlib.suppress(OSError):
                client.sendall(refusal(str(exc)))
        except Exception:
            log.exception("a client's connection failed")
        finally:
            client.close()

    def close(self) -> None:
        self._closed.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in accept()
            with contextlib.suppress(OSError):
                self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self.channels.close()


def _dial_failure(channel: paramiko.Channel) -> str | None:
    """Why the host-side command failed (exit status and stderr), if it did."""
    # -1: no status (the channel closed first, e.g. its client left).
    status = channel.exit_status if channel.exit_status_ready() else -1
    if status <= 0:
        return None
    stderr = b""
    while channel.recv_stderr_ready():
        stderr += channel.recv_stderr(65536)
    tail = stderr.decode(errors="replace").strip()[-500:]
    return f"docker system dial-stdio on the host exited {status}: {tail}"
