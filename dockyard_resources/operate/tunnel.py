"""`python -m dockyard_resources tunnel HOST/PREFIX`: an instance's Docker on a local socket.

A unix socket on this machine; every connection to it becomes one SSH channel to the host
(the stack's own connection: pinned host key, the stack's login key) running the instance's
`docker system dial-stdio`, which joins the channel to the instance's socket. Docker's own
`ssh://` transport works the same way. Ctrl-C closes the socket and removes its file.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import paramiko

from dockyard_resources.errors import DockyardError
from dockyard_resources.operate.deployed import Host, Instance
from dockyard_resources.transport import session

_CHUNK = 65536


class TunnelError(DockyardError):
    """The local socket cannot be opened."""


def default_socket(stack: str, host: str, prefix: str) -> Path:
    runtime = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    return Path(runtime) / f"dockyard-{stack}-{host}-{prefix.rstrip('_')}.sock"


def dial_command(inst: Instance, ssh_user: str) -> str:
    """The host-side command one connection runs (as root: the socket is root:group 0660)."""
    command = f"{shlex.quote(inst.root + '/bin/docker')} system dial-stdio"
    return command if ssh_user == "root" else f"sudo -n -- {command}"


def _pump(
    source: Callable[[int], bytes], sink: Callable[[bytes], None], done: Callable[[], None]
) -> None:
    try:
        while data := source(_CHUNK):
            sink(data)
    except OSError:
        pass
    finally:
        done()


class Tunnel:
    """Serves `path` until `close()`; each client gets its own SSH channel."""

    def __init__(self, host: Host, inst: Instance, path: Path) -> None:
        self.host, self.inst, self.path = host, inst, path
        self._server: socket.socket | None = None
        self._closed = threading.Event()

    def open(self) -> None:
        if self.path.exists() or self.path.is_symlink():
            if not self.path.is_socket():
                raise TunnelError(f"{self.path} exists and is not a socket: choose --socket PATH")
            self.path.unlink()  # a socket left by an earlier tunnel
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket is root-equivalent on the host: owner only
        try:
            server.bind(str(self.path))
        except OSError as exc:
            server.close()
            raise TunnelError(f"cannot open {self.path}: {exc}") from exc
        finally:
            os.umask(old_umask)
        server.listen(16)
        self._server = server
        session(self.host.target).transport()  # connect now: errors show before the first client

    def serve_forever(self) -> None:
        assert self._server is not None, "open() first"
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                break
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        try:
            ssh = session(self.host.target)  # its user: the stack's, or ~/.ssh/config's User
            channel = ssh.transport().open_session()
            channel.exec_command(dial_command(self.inst, ssh.user))
        except (paramiko.SSHException, OSError, DockyardError):
            client.close()
            return

        def close_both() -> None:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            channel.close()

        def to_remote(size: int) -> bytes:
            return client.recv(size)

        def to_local(size: int) -> bytes:
            return bytes(channel.recv(size))

        up = threading.Thread(
            target=_pump, args=(to_remote, channel.sendall, channel.shutdown_write), daemon=True
        )
        up.start()
        _pump(to_local, client.sendall, close_both)
        up.join(timeout=5)
        client.close()

    def close(self) -> None:
        self._closed.set()
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
