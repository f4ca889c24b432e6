"""The tunnel's channel handling against a real sshd (operate/tunnel.py, transport/channels.py).

The instance's `docker system dial-stdio` is stood in for by a script in a fake instance root:
`cat` echoes the client's bytes (and ends at the client's EOF, like dial-stdio when the daemon
closes), `cat; sleep` echoes and then lingers like a dial-stdio whose daemon keeps a hijacked
connection open after its client left. What the real Docker does through the tunnel is proven
on the QEMU test host (tests/hosts/test_tunnel.py).
"""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.operate import tunnel
from dockyard_resources.operate.deployed import Host, Instance
from tests.fixtures.sshd import SshdServer
from tests.transport.proxy import FreezableProxy

ECHO = "#!/bin/sh\nexec cat\n"
# Echoes, then keeps the session (and sshd's MaxSessions slot) after the client's EOF.
LINGER = "#!/bin/sh\ncat\nexec sleep 600\n"
CLIENT_TIMEOUT = 120.0  # a hang guard for the test's own sockets, not an assertion


def fake_instance(root: Path, dial_stdio: str) -> Instance:
    (root / "bin").mkdir(parents=True)
    docker = root / "bin" / "docker"
    docker.write_text(dial_stdio)
    docker.chmod(0o755)
    return Instance(
        host="h", prefix="dy1_", root=str(root), docker_host="", socket_path="", group="",
        service_name="", bridge_name="", networks={}, urn="",
    )  # fmt: skip


@contextmanager
def serving(tmp_path: Path, dial_stdio: str, **target: Any) -> Iterator[tuple[Path, Any]]:
    """A tunnel to the fake instance, served from a thread; yields its socket and itself."""
    sshd: SshdServer = target.pop("sshd")
    inst = fake_instance(tmp_path / "root", dial_stdio)
    host = Host(
        name="h", provision="existing", docker_version="", sysbox_version="",
        target=sshd.target(**target), sysbox_urn="", instances=[inst],
    )  # fmt: skip
    path = tmp_path / "t.sock"
    served = tunnel.Tunnel(host, inst, path)
    served.open()
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    try:
        yield path, served
    finally:
        served.close()
        thread.join(timeout=CLIENT_TIMEOUT)
    assert not thread.is_alive(), "close() must end serve_forever"
    assert not path.exists(), "close() removes the socket"


def connect(path: Path) -> socket.socket:
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(str(path))  # blocking: waits for room in the listen backlog
    client.settimeout(CLIENT_TIMEOUT)
    return client


def recv_exactly(client: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = client.recv(size - len(data))
        assert chunk, f"the tunnel ended the connection after {len(data)} of {size} bytes"
        data += chunk
    return data


def recv_all(client: socket.socket) -> bytes:
    return b"".join(iter(lambda: client.recv(65536), b""))


def echo(path: Path, payload: bytes) -> bytes:
    """Send, half-close, read until the far end closes: what the far end sent back."""
    with connect(path) as client:
        client.sendall(payload)
        client.shutdown(socket.SHUT_WR)
        return recv_all(client)


@pytest.mark.parametrize("max_sessions", [10, 2], ids=["sshd-default", "sshd-MaxSessions-2"])
def test_more_clients_at_once_than_sshd_allows_sessions_per_connection(
    sshd: SshdServer, tmp_path: Path, max_sessions: int
) -> None:
    """sshd refuses the 11th session of one connection (MaxSessions 10; some hosts set
    less): every client held open at once must still get its own working channel."""
    if max_sessions != 10:
        sshd.extra_config = f"MaxSessions {max_sessions}\n"
        sshd.restart()
    clients = 24
    with serving(tmp_path, ECHO, sshd=sshd) as (path, _):
        held = [connect(path) for _ in range(clients)]
        try:
            for n, client in enumerate(held):
                client.sendall(f"client {n:03d}\n".encode())
            for n, client in enumerate(held):
                assert recv_exactly(client, 11) == f"client {n:03d}\n".encode()
        finally:
            for client in held:
                client.close()
        # Half-close: each client still gets everything it sent back, then EOF.
        payload = bytes(range(256)) * 1024
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(lambda _: echo(path, payload), range(16)))
        assert all(answer == payload for answer in answers)


def test_remote_commands_that_outlive_their_clients_do_not_use_up_the_tunnel(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """sshd counts a session until its command exits, even after the channel closed: a
    command that lingers after its client left (a dial-stdio on a silent hijacked exec)
    must not leave later clients without a channel."""
    with serving(tmp_path, LINGER, sshd=sshd) as (path, _):
        for n in range(30):
            with connect(path) as client:
                client.sendall(f"client {n:03d}\n".encode())
                assert recv_exactly(client, 11) == f"client {n:03d}\n".encode()


def test_a_client_killed_mid_request_leaves_the_tunnel_answering(
    sshd: SshdServer, tmp_path: Path
) -> None:
    """Each client has its channel (its first bytes came back), sends more and is gone
    before the answer: the tunnel writes to a dead client, the command lingers."""
    with serving(tmp_path, LINGER, sshd=sshd) as (path, _):
        for _ in range(12):
            client = connect(path)
            client.sendall(b"half a ")
            assert recv_exactly(client, 7) == b"half a "
            client.sendall(b"request")
            client.close()  # what the kernel does for a killed client
        with connect(path) as client:
            client.sendall(b"still here\n")
            assert recv_exactly(client, 11) == b"still here\n"


@pytest.fixture
def proxy(sshd: SshdServer) -> Iterator[FreezableProxy]:
    forwarder = FreezableProxy(sshd.host, sshd.port)
    yield forwarder
    forwarder.close()


def test_new_clients_get_a_new_connection_when_the_old_one_stops_answering(
    sshd: SshdServer, proxy: FreezableProxy, tmp_path: Path
) -> None:
    """A connection whose far end vanished without a FIN (a host that hung, NAT state lost,
    a laptop that slept) cannot open channels any more: the next client must be served
    over a new connection (same pinned host key) instead of being reset. keepalive=0: the
    liveness probes, which would close the dead connection sooner, are not what is tested."""
    with serving(tmp_path, ECHO, sshd=sshd, port=proxy.port, keepalive=0) as (path, _):
        assert echo(path, b"before\n") == b"before\n"
        proxy.freeze_existing()
        assert echo(path, b"after\n") == b"after\n"
        assert echo(path, b"and again\n") == b"and again\n"


def test_new_clients_are_served_after_sshd_dropped_the_connection(
    sshd: SshdServer, tmp_path: Path
) -> None:
    with serving(tmp_path, ECHO, sshd=sshd) as (path, _):
        streaming = connect(path)
        streaming.sendall(b"open\n")
        assert recv_exactly(streaming, 5) == b"open\n"
        sshd.drop_connections()
        # The client on the dropped connection sees its end, not a hang ...
        assert recv_all(streaming) == b""
        streaming.close()
        # ... and the next ones are served over a new connection.
        for n in range(3):
            assert echo(path, f"after {n}\n".encode()) == f"after {n}\n".encode()


class _AcceptFailsOnce:
    """The listening socket, whose next accept() fails as when the process is out of file
    descriptors (EMFILE: many clients at once, a low `ulimit -n`)."""

    def __init__(self, real: socket.socket) -> None:
        self._real = real
        self.failed = False

    def accept(self) -> tuple[socket.socket, Any]:
        if not self.failed:
            self.failed = True
            raise OSError(errno.EMFILE, "Too many open files")
        return self._real.accept()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def test_running_out_of_file_descriptors_does_not_end_the_tunnel(
    sshd: SshdServer, tmp_path: Path
) -> None:
    inst = fake_instance(tmp_path / "root", ECHO)
    host = Host(
        name="h", provision="existing", docker_version="", sysbox_version="",
        target=sshd.target(), sysbox_urn="", instances=[inst],
    )  # fmt: skip
    served = tunnel.Tunnel(host, inst, tmp_path / "t.sock")
    served.open()
    flaky = _AcceptFailsOnce(served._server)  # type: ignore[arg-type]
    served._server = flaky  # type: ignore[assignment]
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    try:
        assert echo(served.path, b"served\n") == b"served\n"
        assert flaky.failed and thread.is_alive()
    finally:
        served.close()
        thread.join(timeout=CLIENT_TIMEOUT)
