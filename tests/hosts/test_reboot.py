"""A reboot of a host with Dockyard instances (the acceptance suite's reboot check, cheaper).

Two instances created in parallel on a clone of the SysboxHost template, a `--restart
always` container on each that ignores SIGTERM (so dockerd's shutdown at the reboot gives up
on it: "Force shutdown daemon", its task left behind as after a crash), then a reboot. Both
units come back at boot (started together by systemd, not by Dockyard), both `--restart
always` containers run again and reach the outside world (a server on this machine, 10.0.2.2
through QEMU's user networking), as does a new container. An instance's `run/` directory
is on disk, where Docker keeps that state on tmpfs: it must start empty in the new boot (a
file planted there before the reboot is gone), else containerd and runc find the containers
of the earlier boot and a restart fails with "container with id exists" (the acceptance
suite's reboot check failed that way). About 9 min under TCG (setup 200 s: clone, two
creates; the test 360 s, of which the reboot 150 s).
"""

from __future__ import annotations

import base64
import http.server
import shlex
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from dockyard_resources.providers.instance import DockyardInstanceProvider
from dockyard_resources.transport import session
from tests.fixtures.vm import TestHost
from tests.hosts.checks import IptablesRules, Service, SshShell
from tests.hosts.test_instances import (
    RULES_PER_INSTANCE,
    Inst,
    _connection,
    _install_sysbox_host,
    _props,
    sysbox_host_vm,
)
from tools.testbed.artifacts import TestbedArtifacts
from tools.testimage.busybox_image import DEFAULT_TAG, image_archive

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]

IMAGE_ON_HOST = "/var/tmp/dockyard-busybox.tar"
SLIRP_HOST = "10.0.2.2"  # this machine, seen from a QEMU VM with user networking
SURVIVOR = "always"
STALE = "left-by-the-earlier-boot"


@pytest.fixture(scope="module")
def host(testbed_artifacts: TestbedArtifacts) -> Iterator[TestHost]:
    yield from sysbox_host_vm(testbed_artifacts)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """A server on this machine answering a token: what a container fetches to prove
    outbound traffic."""
    token = f"dockyard-reboot-{time.monotonic_ns()}".encode()

    class Token(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(token)))
            self.end_headers()
            self.wfile.write(token)

        def log_message(self, *_args: Any) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Token)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://{SLIRP_HOST}:{server.server_address[1]}/#{token.decode()}"
    finally:
        server.shutdown()
        server.server_close()


def _expect(url: str) -> str:
    return url.partition("#")[2]


@pytest.fixture(scope="module")
def instances(
    host: TestHost,
    testbed_artifacts: TestbedArtifacts,
    sh: SshShell,
    provider: DockyardInstanceProvider,
) -> dict[str, Inst]:
    _install_sysbox_host(host.target, testbed_artifacts)
    conn = _connection(host.target)
    wanted = {
        name: {**_props(conn, n, []), "owner": f"dockyard/reboot/testhost-dy{n}_"}
        for name, n in (("A", 1), ("B", 2))
    }
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(provider.create, props) for name, props in wanted.items()}
        made = {
            name: Inst(name, wanted[name], f.result().outs or {}) for name, f in futures.items()
        }
    busybox = base64.b64decode(sh.out("base64 -w0 /bin/busybox"))
    session(host.target).upload(image_archive(busybox), IMAGE_ON_HOST, 0o644)
    for inst in made.values():
        sh.out(inst.docker(f"load -i {IMAGE_ON_HOST}"))
    # No cleanup: the VM is this module's own and goes away with everything on it.
    return made


def _wait(condition: Callable[[], bool], what: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for: {what}")
        time.sleep(3)


def _fetch_in(sh: SshShell, inst: Inst, where: str, url: str) -> tuple[int, str]:
    """`wget` of `url` in a new container (`where` empty) or in the running container."""
    get = f"wget -T 10 -qO- {shlex.quote(url.partition('#')[0])}"
    if where:
        return sh.run(inst.docker(f"exec {where} {get}") + " 2>&1")
    return sh.run(inst.docker(f"run --rm {DEFAULT_TAG} {get}") + " 2>&1")


def _diagnostics(sh: SshShell) -> str:
    return sh.run(
        "set -x; sysctl net.ipv4.ip_forward; grep -H . /proc/sys/net/ipv4/conf/*/forwarding;"
        " iptables-save -c; ip -br addr; ip route;"
        " systemctl list-units --no-pager 'dy*' dockyard-sysbox.service;"
        " journalctl -b --no-pager -u 'dy*_docker.service' | tail -n 40;"
        " lsmod | grep -E 'br_netfilter|nf_|ip_tables|x_tables' || true"
    )[1]


def test_reboot_brings_back_instances_and_their_traffic(
    host: TestHost, sh: SshShell, instances: dict[str, Inst], url: str
) -> None:
    a, b = instances["A"], instances["B"]
    for inst in (a, b):
        # `sleep` as the container's pid 1 has no SIGTERM handler: only SIGKILL ends it.
        sh.out(
            inst.docker(f"run -d --name {SURVIVOR} --restart always {DEFAULT_TAG} sleep 1000000")
        )
        code, out = _fetch_in(sh, inst, "", url)
        assert code == 0 and _expect(url) in out, ("before the reboot", inst.name, out)
        sh.out(f"touch {inst.spec.path('run', 'docker', STALE)}")
    before = host.boot_id()
    started = time.monotonic()
    assert host.reboot() != before
    print(f"\n[reboot] back after {time.monotonic() - started:.0f} s")
    try:
        for inst in (a, b):
            _wait(lambda i=inst: Service.of(sh, i.spec.service_name).active, f"{inst.name} active")
            assert len(IptablesRules.of(sh).tagged(inst.spec.tag)) == RULES_PER_INSTANCE
            assert not sh.ok(f"test -e {inst.spec.path('run', 'docker', STALE)}"), (
                f"{inst.name}: run/ keeps state of the earlier boot"
            )
        for inst in (a, b):
            running = inst.docker(f"inspect -f '{{{{.State.Running}}}}' {SURVIVOR}")
            _wait(
                lambda r=running: sh.out(r) == "true",
                f"{inst.name}: {SURVIVOR} (--restart always) running after the reboot",
            )
        for inst, where in ((a, SURVIVOR), (b, SURVIVOR), (b, "")):
            code, out = _fetch_in(sh, inst, where, url)
            assert code == 0 and _expect(url) in out, ("after the reboot", inst.name, where, out)
    except AssertionError:
        print(_diagnostics(sh))
        raise
