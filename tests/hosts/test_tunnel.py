"""`tunnel` under real clients: docker-py and the Docker CLI through the tunnel to an instance
on the QEMU test host with the real Docker and sysbox (docs/operations.md, `tunnel`).

The tunnel is served from this process (operate/tunnel.py) with `Host` and `Instance` built
from the VM, as the command builds them from a deployed stack (the acceptance suite runs the
command itself). Each test ends by checking that the tunnel still answers; the tests run in
file order, the last one drops the tunnel's SSH connections on the VM.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.operate import tunnel
from dockyard_resources.operate.deployed import Host, Instance
from dockyard_resources.providers.instance import DockyardInstanceProvider
from dockyard_resources.transport import SshTarget, session
from tests.fixtures.vm import TestHost
from tests.hosts import docker_clients as dc
from tests.hosts.checks import SshShell
from tests.hosts.test_instances import _connection, _install_sysbox_host, _props, sysbox_host_vm
from tools.testbed.artifacts import TestbedArtifacts
from tools.testimage.busybox_image import DEFAULT_TAG, image_archive

# Not in `make test` (scripts/test.sh deselects the marker): `make test-outside-budget`.
pytestmark = [pytest.mark.vm, pytest.mark.outside_budget, pytest.mark.timeout(3600)]

IMAGE_ON_HOST = "/var/tmp/dockyard-busybox.tar"
STREAMS = 12  # long-lived `logs -f` connections held at once (sshd allows 10 sessions)


@pytest.fixture(scope="module")
def host(testbed_artifacts: TestbedArtifacts) -> Iterator[TestHost]:
    """A clone of the SysboxHost template: the install below only converges."""
    yield from sysbox_host_vm(testbed_artifacts)


@pytest.fixture(scope="module")
def instance(
    host: TestHost,
    testbed_artifacts: TestbedArtifacts,
    sh: SshShell,
    provider: DockyardInstanceProvider,
) -> Instance:
    """One instance with the tiny busybox image loaded (the VM goes away with it)."""
    _install_sysbox_host(host.target, testbed_artifacts)
    props = _props(_connection(host.target), 1, [])
    outs = provider.create(props).outs or {}
    busybox = base64.b64decode(sh.out("base64 -w0 /bin/busybox"))
    session(host.target).upload(image_archive(busybox), IMAGE_ON_HOST, 0o644)
    sh.out(f"{props['root']}/bin/docker load -i {IMAGE_ON_HOST}")
    return Instance(
        host="testhost", prefix=props["prefix"], root=props["root"],
        docker_host=outs["dockerHost"], socket_path=outs["socketPath"], group=outs["group"],
        service_name=outs["serviceName"], bridge_name=outs["bridgeName"],
        networks=outs["networks"], urn="",
    )  # fmt: skip


@contextmanager
def serving(target: SshTarget, inst: Instance, path: Path) -> Iterator[tunnel.Tunnel]:
    host = Host(
        name="testhost", provision="qemu", docker_version="29.2.1", sysbox_version="0.6.7",
        target=target, sysbox_urn="", instances=[inst],
    )  # fmt: skip
    served = tunnel.Tunnel(host, inst, path)
    served.open()
    thread = threading.Thread(target=served.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        served.close()
        thread.join(timeout=60)


@pytest.fixture(scope="module")
def sock(
    host: TestHost, instance: Instance, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The tunnel as root (the stack's usual login)."""
    path = tmp_path_factory.mktemp("tunnel") / "root.sock"
    with serving(host.target, instance, path):
        yield path


@pytest.fixture(scope="module")
def sudo_sock(
    host: TestHost, instance: Instance, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """The tunnel as the sudo user `dockyard` (dial-stdio runs through `sudo -n`)."""
    path = tmp_path_factory.mktemp("tunnel") / "sudo.sock"
    with serving(host.sudo_target, instance, path):
        yield path


def still_answers(path: Path) -> None:
    assert dc.docker_py(path).version()["Version"] == "29.2.1"
    assert dc.cli(path, "version", "--format", "{{.Server.Version}}") == b"29.2.1\n"


def test_the_issues_docker_py_sequences(sock: Path) -> None:
    client = dc.docker_py(sock)
    for _ in range(2):  # the failures came after a round or two on one client
        dc.issue_sequences(client, DEFAULT_TAG)
    still_answers(sock)


def test_pooled_and_parallel_requests(sock: Path) -> None:
    dc.parallel_runs(dc.docker_py(sock), DEFAULT_TAG, count=16, at_once=8)
    dc.parallel_cli_runs(sock, DEFAULT_TAG, count=8)
    still_answers(sock)


def test_long_lived_streams_held_while_more_requests_come_in(sudo_sock: Path) -> None:
    """12 `logs -f` (6 docker-py, 6 CLI) stay open and keep delivering while containers run
    8 at a time; over the sudo user's tunnel, so dial-stdio runs through `sudo -n`."""
    client = dc.docker_py(sudo_sock)
    ticker = client.containers.run(DEFAULT_TAG, dc.TICKER, detach=True, name=dc.unique("tick"))
    py_streams = [ticker.logs(stream=True, follow=True) for _ in range(STREAMS // 2)]
    cli_streams = [
        dc.cli_process(sudo_sock, "logs", "-f", ticker.id) for _ in range(STREAMS - STREAMS // 2)
    ]
    try:

        def next_line_of_each() -> None:
            for stream in py_streams:
                line = b""
                while not line.endswith(b"\n"):
                    line += next(stream)
                assert line.startswith(b"tick "), line
            for process in cli_streams:
                assert process.stdout is not None
                assert process.stdout.readline().startswith(b"tick ")

        next_line_of_each()
        dc.parallel_runs(client, DEFAULT_TAG, count=8, at_once=8)
        assert ticker.exec_run(["echo", "exec ok"]) == (0, b"exec ok\n")
        next_line_of_each()  # still flowing after all that
    finally:
        for stream in py_streams:
            stream.close()
        for process in cli_streams:
            process.terminate()
            process.wait()
        ticker.remove(force=True)
    still_answers(sudo_sock)


@pytest.fixture
def box(sock: Path) -> Iterator[Any]:
    client = dc.docker_py(sock)
    running = client.containers.run(DEFAULT_TAG, ["sleep", "3600"], detach=True)
    yield running
    running.remove(force=True)


def test_exec_with_stdin(sock: Path, box: Any) -> None:
    data = random.Random(7).randbytes(300_000)
    got = dc.cli(sock, "exec", "-i", box.id, "sh", "-c", "cat; echo end", stdin=data)
    assert got == data + b"end\n"
    assert dc.exec_with_stdin_docker_py(dc.docker_py(sock), box, data) == data + b"end\n"
    still_answers(sock)


def test_build_and_cp_both_ways(sock: Path, box: Any, tmp_path: Path) -> None:
    payload = random.Random(11).randbytes(1_000_000)
    context = tmp_path / "context"
    context.mkdir()
    (context / "payload.bin").write_bytes(payload)
    (context / "Dockerfile").write_text(
        f"FROM {DEFAULT_TAG}\nCOPY payload.bin /payload.bin\n"
        "RUN cat /payload.bin /payload.bin > /twice.bin\n"
    )
    tag = f"{dc.unique('built')}:1"
    dc.cli(sock, "build", "-q", "-t", tag, str(context))
    built = dc.cli(sock, "create", tag, "true").strip().decode()
    try:
        dc.cli(sock, "cp", f"{built}:/twice.bin", str(tmp_path / "twice.bin"))
    finally:
        dc.cli(sock, "rm", built)
    assert (tmp_path / "twice.bin").read_bytes() == payload + payload
    # This machine -> a running container -> back.
    dc.cli(sock, "cp", str(context / "payload.bin"), f"{box.id}:/in.bin")
    seen = dc.cli(sock, "exec", box.id, "busybox", "md5sum", "/in.bin").split()[0].decode()
    assert seen == hashlib.md5(payload).hexdigest()  # noqa: S324 - a checksum, not security
    dc.cli(sock, "cp", f"{box.id}:/in.bin", str(tmp_path / "back.bin"))
    assert (tmp_path / "back.bin").read_bytes() == payload
    dc.cli(sock, "rmi", tag)
    still_answers(sock)


def test_clients_killed_mid_request(sock: Path, box: Any) -> None:
    """Attached execs killed while their command runs silently (the host's dial-stdio then
    outlives its client), and a raw client killed halfway through sending a request."""
    execs = [dc.cli_process(sock, "exec", box.id, "sleep", "600") for _ in range(STREAMS)]

    def running() -> int:
        listed = box.exec_run(["ps"]).output.decode()  # busybox: PID USER TIME COMMAND
        return sum(line.rstrip().endswith(" sleep 600") for line in listed.splitlines())

    dc.wait_for(lambda: running() == STREAMS, "every exec running")
    for process in execs:
        process.send_signal(signal.SIGKILL)
        process.wait()
    half_sent = subprocess.Popen(
        [
            sys.executable, "-c",
            "import socket,sys,time; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]);"
            " s.sendall(b'POST /containers/create HTTP/1.1\\r\\nHost: d\\r\\n"
            "Content-Type: application/json\\r\\nContent-Length: 1000\\r\\n\\r\\n{\"Image\"');"
            " print('sent', flush=True); time.sleep(3600)",
            str(sock),
        ],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    assert half_sent.stdout is not None and half_sent.stdout.readline() == b"sent\n"
    half_sent.kill()
    half_sent.wait()
    for _ in range(3):
        dc.parallel_cli_runs(sock, DEFAULT_TAG, count=4)
    still_answers(sock)


def test_the_tunnel_answers_again_after_its_ssh_connections_dropped(
    sock: Path, sh: SshShell
) -> None:
    client = dc.docker_py(sock)
    ticker = client.containers.run(DEFAULT_TAG, dc.TICKER, detach=True, name=dc.unique("tick"))
    stream = ticker.logs(stream=True, follow=True)
    try:
        assert next(stream)
        # Every SSH connection on the VM but the one running this script: the tunnel's.
        killed = sh.out(
            'self=$$; mine=\' \'; while [ "$self" -gt 1 ]; do mine="$mine$self ";'
            " self=$(ps -o ppid= -p \"$self\" | tr -d ' '); done;"
            " for pid in $(pgrep -f '^sshd(-session)?: (root|dockyard)'); do"
            ' case "$mine" in *" $pid "*) ;; *) kill -KILL "$pid" && echo "$pid";; esac;'
            " done"
        )
        assert killed, "no SSH connection of the tunnel was found on the VM"
        # The stream on a dropped connection ends (an error or its end), it does not hang.
        with pytest.raises(Exception):  # noqa: B017 - whichever the client raises
            for _ in range(200):  # 100 s of lines: the stream would have survived the drop
                next(stream)
    finally:
        stream.close()
    still_answers(sock)
    dc.issue_sequences(dc.docker_py(sock), DEFAULT_TAG)
    ticker.remove(force=True)


def test_many_clients_at_once_each_get_a_connection(sock: Path) -> None:
    """More simultaneous clients than sshd allows sessions on one connection, each making
    its own connection and request at the same moment."""
    barrier = threading.Barrier(24)

    def ask(_: int) -> str:
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(sock))
        barrier.wait()
        client.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
        client.settimeout(dc.CLIENT_TIMEOUT)
        reply = b"".join(iter(lambda: client.recv(65536), b""))
        client.close()
        return reply.decode(errors="replace")

    with ThreadPoolExecutor(max_workers=24) as pool:
        replies = list(pool.map(ask, range(24)))
    assert all(r.split(" ")[1] == "200" and r.endswith("OK") for r in replies), replies
    assert os.path.exists(sock)
    still_answers(sock)
