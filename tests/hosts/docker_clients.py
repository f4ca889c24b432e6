"""What real Docker clients do through the tunnel: docker-py (the client testcontainers and
most Python tooling use) and the Docker CLI, against a socket path on this machine.

Shared by tests/hosts/test_tunnel.py (the QEMU test host) and the acceptance suite (a
deployed stack). Every helper asserts what it got back; waits poll for a state with a
generous limit (a busy emulated host), they never assert on time.
"""

from __future__ import annotations

import io
import itertools
import os
import shutil
import socket
import subprocess
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
import pytest
from docker.utils.socket import consume_socket_output, frames_iter
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

CLIENT_TIMEOUT = 300  # docker-py's socket timeout: a stalled stream fails, never hangs
_names = itertools.count(1)
# Prints a numbered line twice a second until stopped.
TICKER = ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.5; done"]


def unique(name: str) -> str:
    return f"tun-{name}-{os.getpid()}-{next(_names)}"


def docker_py(sock: Path) -> docker.DockerClient:
    return docker.DockerClient(base_url=f"unix://{sock}", version="auto", timeout=CLIENT_TIMEOUT)


def docker_cli() -> str:
    found = shutil.which("docker")
    if found is None:
        pytest.fail("the tunnel tests need the Docker CLI (`docker`) on this machine")
    return found


def cli(sock: Path, *args: str, stdin: bytes | None = None, check: bool = True) -> bytes:
    """`docker ARGS` against the socket (legacy builder: this machine has no buildx)."""
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_BUILDKIT": "0"}
    done = subprocess.run(
        [docker_cli(), *args], input=stdin, env=env, capture_output=True, timeout=600, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {done.returncode}: {done.stderr!r}")
    return done.stdout


def cli_process(sock: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}"}
    return subprocess.Popen([docker_cli(), *args], env=env, stdout=subprocess.PIPE)


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 180) -> None:
    for attempt in Retrying(
        stop=stop_after_delay(seconds),
        wait=wait_fixed(1),
        retry=retry_if_exception_type(AssertionError),
        reraise=True,
    ):
        with attempt:
            assert condition(), what


# --- the issue's two sequences ------------------------------------------------------------


def detached_run_then_polled(client: docker.DockerClient, image: str) -> None:
    """A detached run, then polling its logs, exec, one-shot stats and an archive."""
    box = client.containers.run(image, TICKER, detach=True, name=unique("ticker"))
    try:
        wait_for(lambda: b"tick 3\n" in box.logs(), "the detached container's 4th line")
        assert box.exec_run(["echo", "exec ok"]) == (0, b"exec ok\n")
        stats = box.stats(stream=False)
        assert stats["id"] == box.id and "memory_stats" in stats, stats
        bits, info = box.get_archive("/etc/passwd")
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
            member = tar.extractfile("passwd")
            assert member is not None and b"root:x:0:0" in member.read()
        assert info["name"] == "passwd"
        assert b"tick" in box.logs(tail=2)
        box.reload()
        assert box.status == "running"
    finally:
        box.remove(force=True)


def volume_and_network(client: docker.DockerClient, image: str) -> None:
    """A volume and a network; two containers sharing the volume; a server and a client
    on the network."""
    volume = client.volumes.create(unique("vol"))
    network = client.networks.create(unique("net"), driver="bridge")
    server_name = unique("server")
    mount = {volume.name: {"bind": "/data", "mode": "rw"}}
    try:
        wrote = ["sh", "-c", "echo shared > /data/f"]
        assert client.containers.run(image, wrote, volumes=mount, remove=True) == b""
        read = client.containers.run(image, ["cat", "/data/f"], volumes=mount, remove=True)
        assert read == b"shared\n"
        serve = "mkdir -p /www && echo token > /www/index.html && exec busybox httpd -f -p 8000"
        server = client.containers.run(
            image, ["sh", "-c", f"{serve} -h /www"], detach=True, name=server_name,
            network=network.name,
        )  # fmt: skip
        server.reload()
        address = server.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]
        # The server may take a moment to listen: the client retries inside its container.
        fetch = (
            f"i=0; until wget -qO- http://{address}:8000/; do i=$((i+1));"
            " [ $i -lt 60 ] || exit 1; sleep 1; done"
        )
        got = client.containers.run(image, ["sh", "-c", fetch], network=network.name, remove=True)
        assert got == b"token\n"
    finally:
        for box in client.containers.list(all=True, filters={"name": server_name}):
            box.remove(force=True)
        network.remove()
        volume.remove(force=True)


def issue_sequences(client: docker.DockerClient, image: str) -> None:
    detached_run_then_polled(client, image)
    volume_and_network(client, image)
    assert client.version()["Version"]


# --- more than one client does at a time --------------------------------------------------


def parallel_runs(client: docker.DockerClient, image: str, count: int, at_once: int) -> None:
    """`count` containers run (create, attach logs, start, wait, remove), `at_once` at a time
    on one pooled docker-py client."""

    def run(n: int) -> bytes:
        return bytes(client.containers.run(image, ["echo", f"run {n}"], remove=True))

    with ThreadPoolExecutor(max_workers=at_once) as pool:
        outputs = list(pool.map(run, range(count)))
    assert outputs == [f"run {n}\n".encode() for n in range(count)]


def parallel_cli_runs(sock: Path, image: str, count: int) -> None:
    """`count` `docker run --rm` processes at once, each with its own connections."""

    def run(n: int) -> bytes:
        return cli(sock, "run", "--rm", image, "echo", f"cli {n}")

    with ThreadPoolExecutor(max_workers=count) as pool:
        outputs = list(pool.map(run, range(count)))
    assert outputs == [f"cli {n}\n".encode() for n in range(count)]


def exec_with_stdin_docker_py(client: docker.DockerClient, container: Any, data: bytes) -> bytes:
    """An exec whose stdin is written, then half-closed, through docker-py's raw socket."""
    exec_id = client.api.exec_create(container.id, ["sh", "-c", "cat; echo end"], stdin=True)
    raw = client.api.exec_start(exec_id, socket=True)
    sock: socket.socket = raw._sock
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)  # stdin ends; the answer must still come back
    output = consume_socket_output(data for _, data in frames_iter(raw, tty=False))
    raw.close()
    assert isinstance(output, bytes)
    return output
