"""DockyardInstance on the QEMU test host (stand-in Docker + sysbox), end to end.

One module-scoped host; the tests run in file order and build on each other, like the
original tool's 27-step suite: create three instances at once, run containers, prove
networking and isolation, drift + repair, stop/start, destroy under load, reboot, and
finally the last delete letting the shared sysbox service stop.
"""

from __future__ import annotations

import base64
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from dockyard_resources.hostops import instance as hostops
from dockyard_resources.hostops import sysbox_host
from dockyard_resources.providers.instance import DockyardInstanceProvider
from dockyard_resources.render import sysbox_host as sysbox_render
from dockyard_resources.render.instance import InstanceSpec
from dockyard_resources.transport import SshTarget, close_all, session
from tests.fixtures.vm import TestHost, booted_vm
from tests.hosts.checks import File, Group, IptablesRules, Link, Service, Socket, SshShell, User
from tools.testimage.busybox_image import DEFAULT_TAG, image_archive

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3600)]

DOCKER_VERSION = "29.2.1"
SYSBOX_VERSION = "0.6.7"
SYSBOX_UNIT = "dockyard-sysbox.service"
MEMBER_A = "dyuser_a"  # in A's group only
OUTSIDER = "dyuser_none"  # in no instance group
IMAGE_ON_HOST = "/var/tmp/dockyard-busybox.tar"
# A name the test machine's resolver answers (package registries are reachable here);
# the container must get the same answer through Docker's DNS path and slirp's 10.0.2.3.
DNS_NAME = "deb.debian.org"


@dataclass
class Inst:
    name: str
    props: dict[str, Any]
    outs: dict[str, Any]

    @property
    def spec(self) -> InstanceSpec:
        return InstanceSpec.from_props(self.props)

    def docker(self, args: str) -> str:
        return f"{self.spec.root}/bin/docker {args}"


def _connection(target: SshTarget) -> dict[str, Any]:
    key = target.private_key
    if key is None and target.key_file:
        with open(target.key_file) as handle:
            key = handle.read()
    return {
        "host": target.host,
        "port": target.port or 22,
        "user": target.user or "root",
        "privateKey": key,
        "hostKey": target.host_key or session(target).host_key,
    }


def _props(conn: dict[str, Any], n: int, members: list[str]) -> dict[str, Any]:
    return {
        "connection": conn,
        "hostName": "testhost",
        "dockerDir": sysbox_render.docker_dir(DOCKER_VERSION),
        "sysboxDir": sysbox_render.sysbox_dir(SYSBOX_VERSION),
        "prefix": f"dy{n}_",
        "root": f"/dy{n}",
        "bridgeCidr": f"172.22.{n}.1/24",
        "fixedCidr": f"172.22.{n}.0/24",
        "poolBase": f"172.23.{n * 16}.0/20",
        "poolSize": 24.0,
        "members": members,
    }


def _install_sysbox_host(target: SshTarget, standins: Any) -> None:
    def artifact(version: str, art: Any) -> dict[str, Any]:
        return {
            "version": version,
            "artifacts": {"x86_64": {"url": str(art.path), "sha256": art.sha256}},
        }

    request = sysbox_host.HostRequest.from_props(
        {
            "hostName": "testhost",
            "connection": {"host": target.host},
            "docker": artifact(DOCKER_VERSION, standins.docker),
            "sysbox": artifact(SYSBOX_VERSION, standins.sysbox),
            "artifactsMode": "upload",
        }
    )
    sysbox_host.install(target, request)


def _wait(condition: Any, what: str, seconds: float = 120) -> None:
    """Poll until `condition()` holds (state, not timing, is what the tests assert)."""
    for attempt in Retrying(
        stop=stop_after_delay(seconds),
        wait=wait_fixed(2),
        retry=retry_if_exception_type(AssertionError),
        reraise=True,
    ):
        with attempt:
            assert condition(), what


@pytest.fixture(scope="module")
def host() -> Iterator[TestHost]:
    """A VM of this module's own: the tests reboot it and leave users behind."""
    with booted_vm() as booted:
        yield booted


@pytest.fixture(scope="module")
def sh(host: TestHost) -> SshShell:
    return SshShell(host.target)


@pytest.fixture(scope="module")
def provider() -> DockyardInstanceProvider:
    return DockyardInstanceProvider()


@pytest.fixture(scope="module")
def instances(
    host: TestHost, standins: Any, sh: SshShell, provider: DockyardInstanceProvider
) -> Iterator[dict[str, Inst]]:
    target = host.target
    _install_sysbox_host(target, standins)
    sh.out(f"for u in {MEMBER_A} {OUTSIDER}; do id -u $u >/dev/null 2>&1 || useradd -m $u; done")
    conn = _connection(target)
    wanted = {
        "A": _props(conn, 1, [MEMBER_A]),
        "B": _props(conn, 2, []),
        "C": _props(conn, 3, []),
    }
    # Pulumi creates the instances of one host in parallel: so do we.
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(provider.create, props) for name, props in wanted.items()}
        made = {
            name: Inst(name, wanted[name], f.result().outs or {}) for name, f in futures.items()
        }
    yield made
    # Teardown registered first thing: whatever a failed test left behind goes.
    for inst in made.values():
        provider.delete("", inst.props)


@pytest.fixture(scope="module")
def image_loaded(sh: SshShell, host: TestHost, instances: dict[str, Inst]) -> str:
    """The tiny busybox image, loaded into every instance."""
    if not sh.ok("test -x /bin/busybox && dpkg -s busybox-static >/dev/null 2>&1"):
        pytest.fail("the test VM image lacks busybox-static (needed for the tiny test image)")
    busybox = base64.b64decode(sh.out("base64 -w0 /bin/busybox"))
    session(host.target).upload(image_archive(busybox), IMAGE_ON_HOST, 0o644)
    for inst in instances.values():
        sh.out(inst.docker(f"load -i {IMAGE_ON_HOST}"))
    return DEFAULT_TAG


def test_three_instances_created_concurrently_are_active(
    sh: SshShell, instances: dict[str, Inst]
) -> None:
    assert Service.of(sh, SYSBOX_UNIT).active
    for inst in instances.values():
        service = Service.of(sh, inst.spec.service_name)
        assert service.active and service.enabled, service
        assert inst.outs["dockerHost"] == f"unix://{inst.spec.root}/run/docker.sock"
        assert sh.out(inst.docker("info --format '{{.DefaultRuntime}}'")) == "sysbox-runc"
        root = File.of(sh, inst.spec.root)
        assert (root.owner, root.group, root.mode) == (inst.spec.user, inst.spec.group, 0o750)
        assert Link.of(sh, inst.spec.bridge_name).addresses == (inst.props["bridgeCidr"],)
        assert len(IptablesRules.of(sh).tagged(inst.spec.tag)) == len(inst.spec.rules())


def test_socket_is_root_group_0660(sh: SshShell, instances: dict[str, Inst]) -> None:
    for inst in instances.values():
        sock = Socket.of(sh, inst.outs["socketPath"])
        assert sock.exists
        assert (sock.owner, sock.group, sock.mode) == ("root", f"{inst.spec.prefix}docker", 0o660)


def test_read_reports_a_healthy_instance(
    provider: DockyardInstanceProvider, instances: dict[str, Inst]
) -> None:
    inst = instances["A"]
    result = provider.read("id", {**inst.props, **inst.outs})
    assert result.outs is not None
    assert result.outs["healthy"] is True, result.outs["health"]
    assert result.outs["members"] == [MEMBER_A]


def test_docker_run_on_each_instance(
    sh: SshShell, instances: dict[str, Inst], image_loaded: str
) -> None:
    for inst in instances.values():
        out = sh.out(inst.docker(f"run --rm {image_loaded} echo hello-{inst.name}"))
        assert out.splitlines()[-1] == f"hello-{inst.name}"


class _Token(http.server.BaseHTTPRequestHandler):
    token = b""

    def do_GET(self) -> None:  # http.server names the handler
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.token)))
        self.end_headers()
        self.wfile.write(self.token)

    def log_message(self, *_args: Any) -> None:
        return None


def test_container_reaches_a_server_on_the_test_machine(
    sh: SshShell, instances: dict[str, Inst], image_loaded: str
) -> None:
    _Token.token = f"dockyard-{time.monotonic_ns()}".encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Token)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        # slirp maps the test machine's 127.0.0.1 to 10.0.2.2 for the VM; the container's
        # packets leave through this instance's FORWARD + MASQUERADE rules.
        out = sh.out(
            instances["A"].docker(f"run --rm {image_loaded} wget -qO- http://10.0.2.2:{port}/")
        )
        assert out.strip() == _Token.token.decode()
    finally:
        server.shutdown()


def test_container_resolves_names(
    sh: SshShell, instances: dict[str, Inst], image_loaded: str
) -> None:
    try:
        expected = {a[4][0] for a in socket.getaddrinfo(DNS_NAME, 80, socket.AF_INET)}
    except socket.gaierror as exc:
        pytest.skip(f"the test machine itself cannot resolve {DNS_NAME}: {exc}")
    out = sh.out(instances["B"].docker(f"run --rm {image_loaded} nslookup {DNS_NAME}"))
    answers = out.split(f"Name:\t{DNS_NAME}")[-1] if "Name:" in out else out
    assert any(addr in answers for addr in expected), out


def test_daemons_and_sockets_are_isolated(
    sh: SshShell, instances: dict[str, Inst], image_loaded: str
) -> None:
    a, b = instances["A"], instances["B"]
    sh.out(a.docker(f"run -d --name keeper --restart always {image_loaded} sleep 100000"))
    assert "keeper" in sh.out(a.docker("ps --format '{{.Names}}'")).split()
    assert "keeper" not in sh.out(b.docker("ps -a --format '{{.Names}}'")).split()
    assert Group.of(sh, a.spec.group).members == (MEMBER_A,)
    assert User.of(sh, MEMBER_A).groups.count(b.spec.group) == 0
    # A member of A's group uses A's socket, not B's; a user in no group uses none.
    assert sh.ok(f"runuser -u {MEMBER_A} -- {a.docker('ps -q')}")
    cli = f"{a.spec.docker_dir}/docker"
    assert not sh.ok(f"runuser -u {MEMBER_A} -- {cli} -H {b.outs['dockerHost']} ps -q")
    for inst in instances.values():
        assert not sh.ok(f"runuser -u {OUTSIDER} -- {cli} -H {inst.outs['dockerHost']} ps -q")


def test_drift_shows_in_read_and_update_repairs_it(
    sh: SshShell, provider: DockyardInstanceProvider, instances: dict[str, Inst]
) -> None:
    c = instances["C"]
    rule = c.spec.rules()[0]
    args = " ".join(rule.args(c.spec.tag))
    sh.out(f"iptables -w -t {rule.table} -D {rule.chain} {args}")
    read = provider.read("id", {**c.props, **c.outs})
    assert read.outs is not None and read.outs["healthy"] is False
    assert any("iptables" in p for p in read.outs["health"]["problems"])
    assert provider.diff("id", read.outs, c.props).changes is True
    provider.update("id", read.outs, c.props)
    assert len(IptablesRules.of(sh).tagged(c.spec.tag)) == len(c.spec.rules())
    again = provider.read("id", {**c.props, **c.outs})
    assert again.outs is not None and again.outs["healthy"] is True, again.outs["health"]


def test_stop_start_brings_back_restart_policy_containers(
    sh: SshShell, instances: dict[str, Inst]
) -> None:
    a = instances["A"]
    sh.out(f"systemctl stop {a.spec.service_name}")
    assert not Service.of(sh, a.spec.service_name).active
    assert IptablesRules.of(sh).tagged(a.spec.tag) == []  # rules go with the daemon
    assert Service.of(sh, instances["B"].spec.service_name).active
    sh.out(f"systemctl start {a.spec.service_name}")
    _wait(
        lambda: "keeper" in sh.out(a.docker("ps --format '{{.Names}}'")).split(),
        "container with --restart always is running again",
    )


def test_create_refuses_conflicts_before_changing_anything(
    sh: SshShell, provider: DockyardInstanceProvider, instances: dict[str, Inst]
) -> None:
    conn = instances["A"].props["connection"]
    sh.out(
        "ip link show fake0 >/dev/null 2>&1 || { ip link add fake0 type bridge &&"
        " ip addr add 172.22.9.1/24 dev fake0; }"
    )
    try:
        with pytest.raises(hostops.InstanceError, match="fake0"):
            provider.create(_props(conn, 9, []))
        with pytest.raises(Exception, match="no such user on this host: ghost"):
            provider.create(_props(conn, 8, ["ghost"]))
    finally:
        sh.out("ip link del fake0")
    for n in (8, 9):
        assert not Group.of(sh, f"dy{n}_docker").exists
        assert not File.of(sh, f"/dy{n}").exists
        assert not Service.of(sh, f"dy{n}_docker.service").unit_file_exists


def _no_trace(sh: SshShell, inst: Inst) -> None:
    spec = inst.spec
    assert not Service.of(sh, spec.service_name).unit_file_exists
    assert not Link.of(sh, spec.bridge_name).exists
    assert IptablesRules.of(sh).tagged(spec.tag) == []
    assert not User.of(sh, spec.user).exists
    assert not Group.of(sh, spec.group).exists
    assert not File.of(sh, spec.root).exists


def test_delete_under_load_twice_leaves_others_healthy(
    sh: SshShell, provider: DockyardInstanceProvider, instances: dict[str, Inst]
) -> None:
    a = instances["A"]
    assert "keeper" in sh.out(a.docker("ps --format '{{.Names}}'")).split()
    provider.delete("id", a.props)
    provider.delete("id", a.props)  # a second delete is a no-op
    _no_trace(sh, a)
    assert User.of(sh, MEMBER_A).exists  # members are only taken out of the group
    assert Service.of(sh, SYSBOX_UNIT).active
    for name in ("B", "C"):
        inst = instances[name]
        read = provider.read("id", {**inst.props, **inst.outs})
        assert read.outs is not None and read.outs["healthy"] is True, read.outs["health"]


def test_reboot_brings_back_the_remaining_instances(
    host: TestHost, sh: SshShell, instances: dict[str, Inst], image_loaded: str
) -> None:
    host.reboot()
    close_all()  # the provider's pooled sessions died with the old boot too
    for name in ("B", "C"):
        inst = instances[name]
        _wait(lambda i=inst: Service.of(sh, i.spec.service_name).active, f"{name} active")
        out = sh.out(inst.docker(f"run --rm {image_loaded} echo back-{name}"))
        assert out.splitlines()[-1] == f"back-{name}"
    assert not File.of(sh, instances["A"].spec.root).exists


def test_deleting_the_last_instance_lets_sysbox_stop(
    sh: SshShell, provider: DockyardInstanceProvider, instances: dict[str, Inst]
) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda n: provider.delete("id", instances[n].props), ("B", "C")))
    for name in ("B", "C"):
        _no_trace(sh, instances[name])
    _wait(lambda: not Service.of(sh, SYSBOX_UNIT).active, "sysbox stopped when unneeded")
