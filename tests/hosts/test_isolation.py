"""Network isolation between instances on the QEMU test host (docs/security.md).

Two instances A and B, each with a web server on its default bridge and on a user-defined
network, plus a client on each of A's networks. What the instances' rules must decide:
A and B cannot open connections to each other's containers (either network kind, either
way), nor can a host on another interface; A's containers reach each other and the outside
world; a port published on A answers on the host (docker-proxy: local, not forwarded);
169.254.169.254 is dropped; deleting A removes every rule of A and leaves B working.

A refused connection must show as a timeout (the SYN dropped, not refused), and every DROP
is also proven by the counter of the instance's own rule, so a check fails when the rule is
missing rather than passing for another reason. The host did not forward before the first
instance came up: the instances turn forwarding on as Docker does, with FORWARD's policy
DROP, so the host routes nothing between its other interfaces, and every test of the
containers' own traffic runs under that policy. `br_netfilter` is loaded first (as on hosts
where Docker or Kubernetes runs): traffic between two containers on the same bridge then
passes through FORWARD too, so the own-network checks depend on the rules. The tests run in
file order on a VM of this module's own.
"""

from __future__ import annotations

import base64
import http.server
import re
import shlex
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest

from dockyard_resources.providers.instance import DockyardInstanceProvider
from dockyard_resources.render.instance import InstanceSpec
from dockyard_resources.transport import session
from tests.fixtures.vm import TestHost
from tests.hosts.checks import IptablesRules, SshShell
from tests.hosts.test_instances import (
    _connection,
    _install_sysbox_host,
    _props,
    sysbox_host_vm,
)
from tools.testbed.artifacts import TestbedArtifacts
from tools.testimage.busybox_image import DEFAULT_TAG, image_archive

pytestmark = [pytest.mark.vm, pytest.mark.timeout(1800)]

IMAGE_ON_HOST = "/var/tmp/dockyard-busybox.tar"
PORT = 8000  # every test server listens here inside its container
PUBLISHED = 8080  # A's bridge server, published on the host
METADATA = "169.254.169.254"
DROPPED_S = 2  # a dropped SYN: wget gives up after this
ANSWER_S = 15  # what an answer may take on a busy emulated host
# A network namespace standing for "another interface of the host" (a LAN, a VPN): its
# packets toward the containers arrive on `vout` and are forwarded, like eth0 traffic.
OUTSIDE_NS = "dyoutside"
OUTSIDE_HOST_IP = "192.168.77.1"
OUTSIDE_IP = "192.168.77.2"
# Two more namespaces, each behind a veth routed through the host: two other interfaces of the
# host (a LAN and a VPN, say) between which the host must not start routing.
LEFT_NS, RIGHT_NS = "dyleft", "dyright"
RIGHT_IP = "192.168.80.2"
# A namespace standing for the cloud's metadata service: link-local addresses behind the veth
# `vmeta`, routed through the host as a cloud's are; a web server answers on them.
META_NS = "dymeta"
META_VIA = "192.168.78.2"
# A name the test machine's resolver answers (as tests/acceptance resolves).
DNS_NAME = "deb.debian.org"
ECS_CREDENTIALS = "169.254.170.2"  # another link-local service (ECS task credentials)
META_TOKEN = "token-link-local"


# Fragments (iptables-save) of an instance's link-local DROPs: on every br-* bridge (its
# user-defined networks), and on its default bridge (_link_local_from_bridge).
LINK_LOCAL_FROM_POOLS = ("-d 169.254.0.0/16", "-i br-+ ", "-j DROP")


def _link_local_from_bridge(spec: InstanceSpec) -> tuple[str, ...]:
    return ("-d 169.254.0.0/16", f"-i {spec.bridge_name} ", "-j DROP")


@dataclass
class Inst:
    props: dict[str, Any]

    @property
    def spec(self) -> InstanceSpec:
        return InstanceSpec.from_props(self.props)

    def docker(self, args: str) -> str:
        return f"{self.spec.root}/bin/docker {args}"


@dataclass(frozen=True)
class Box:
    """A container: its instance, name and address; servers answer with their token."""

    inst: Inst
    name: str
    ip: str

    @property
    def token(self) -> str:
        return f"token-{self.name}"

    @property
    def url(self) -> str:
        return f"http://{self.ip}:{PORT}/"


def _forwarding(sh: SshShell) -> tuple[str, str]:
    """`net.ipv4.ip_forward` and the policy line of filter FORWARD."""
    return (
        sh.out("sysctl -n net.ipv4.ip_forward"),
        sh.out("iptables -w -S FORWARD | grep -m1 -- '^-P FORWARD'"),
    )


@pytest.fixture(scope="module")
def forwarding_before(host: TestHost, sh: SshShell) -> tuple[str, str]:
    """The host's forwarding before any instance exists (read before `instances`)."""
    return _forwarding(sh)


@pytest.fixture(scope="module")
def host(testbed_artifacts: TestbedArtifacts) -> Iterator[TestHost]:
    yield from sysbox_host_vm(testbed_artifacts)


@pytest.fixture(scope="module")
def instances(
    host: TestHost,
    testbed_artifacts: TestbedArtifacts,
    sh: SshShell,
    provider: DockyardInstanceProvider,
    forwarding_before: tuple[str, str],
) -> dict[str, Inst]:
    target = host.target
    _install_sysbox_host(target, testbed_artifacts)
    sh.out("modprobe br_netfilter && sysctl -q -w net.bridge.bridge-nf-call-iptables=1")
    conn = _connection(target)
    made = {
        name: Inst({**_props(conn, n, []), "owner": f"dockyard/isolation/testhost-dy{n}_"})
        for name, n in (("A", 1), ("B", 2))
    }
    # Absent networkIsolation = isolated, as for instances made before the option existed.
    assert all("networkIsolation" not in inst.props for inst in made.values())
    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(provider.create, inst.props) for inst in made.values()]:
            future.result()
    # No cleanup: the VM is this module's own and goes away with everything on it.
    return made


def _server(inst: Inst, name: str, network: str, publish: str = "") -> str:
    page = f"mkdir -p /www && echo token-{name} >/www/index.html"
    command = f"{page} && exec busybox httpd -f -p {PORT} -h /www"
    return inst.docker(
        f"run -d --name {name} {network} {publish} {DEFAULT_TAG} sh -c {shlex.quote(command)}"
    )


@pytest.fixture(scope="module")
def boxes(sh: SshShell, host: TestHost, instances: dict[str, Inst]) -> dict[str, Box]:
    """Servers on both networks of A and B (each also used as a client), one more on each
    of A's networks; A's bridge server is published on the host."""
    busybox = base64.b64decode(sh.out("base64 -w0 /bin/busybox"))
    session(host.target).upload(image_archive(busybox), IMAGE_ON_HOST, 0o644)
    a, b = instances["A"], instances["B"]
    plan = [
        (a, "a1", "", f"-p {PUBLISHED}:{PORT}"),
        (a, "a2", "", ""),
        (a, "an1", "--network anet", ""),
        (a, "an2", "--network anet", ""),
        (b, "b1", "", ""),
        (b, "bn1", "--network bnet", ""),
    ]
    setup = [
        f"{inst.docker(f'load -i {IMAGE_ON_HOST}')} >/dev/null && "
        f"{inst.docker(f'network create {net} >/dev/null')} && "
        + " && ".join(_server(i, n, w, p) + " >/dev/null" for i, n, w, p in plan if i is inst)
        for inst, net in ((a, "anet"), (b, "bnet"))
    ]
    # Both instances at once: starting a container takes seconds under emulation.
    sh.out("set -e\n(" + setup[0] + ") &\npid=$!\n" + setup[1] + "\nwait $pid")
    address = "'{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}'"
    return {
        name: Box(inst, name, sh.out(inst.docker(f"inspect -f {address} {name}")))
        for inst, name, _, _ in plan
    }


def _fetch(sh: SshShell, client: Box, urls: list[str], timeout: int = ANSWER_S) -> dict[str, str]:
    """One `docker exec` fetching each URL in turn: the body, or `FAIL <wget's message>`."""
    # $out unquoted: a message of several lines stays on the URL's line.
    loop = (
        f"for u in {' '.join(urls)}; do "
        f'if out=$(wget -T {timeout} -qO- "$u" 2>&1); then echo "$u OK" $out; '
        'else echo "$u FAIL" $out; fi; done'
    )
    out = sh.out(client.inst.docker(f"exec {client.name} sh -c {shlex.quote(loop)}"))
    results = {}
    for line in out.splitlines():
        url, _, rest = line.partition(" ")
        results[url] = rest
    assert set(results) == set(urls), out
    return results


def _assert_reaches(sh: SshShell, client: Box, servers: list[Box]) -> None:
    got = _fetch(sh, client, [s.url for s in servers])
    for server in servers:
        assert got[server.url] == f"OK {server.token}", (client.name, server.name, got)


def _assert_dropped(sh: SshShell, client: Box, urls: list[str]) -> None:
    got = _fetch(sh, client, urls, DROPPED_S)
    for url in urls:
        # Timed out: the SYN vanished (DROP); "refused" would mean it got somewhere.
        assert got[url].startswith("FAIL") and "timed out" in got[url], (client.name, url, got)


def _packets(sh: SshShell, tag: str, *fragments: str, before: bool = False) -> int:
    """Packet counter of the one rule tagged `tag` whose iptables-save line has `fragments`.

    `before`: a reading taken ahead of a probe, 0 when the rule is missing, so that the probe
    itself reports a missing DROP (the reading after it insists on the rule).
    """
    out = sh.out("iptables-save -c -t filter")
    found = []
    for line in out.splitlines():
        text = line.replace(f'"{tag}"', tag)
        if f"--comment {tag} " in text and all(f in text for f in fragments):
            match = re.match(r"\[(\d+):\d+\] ", text)
            assert match is not None, line
            found.append(int(match.group(1)))
    if before and not found:
        return 0
    assert len(found) == 1, (tag, fragments, out)
    return found[0]


def _link_local_pool_drops(sh: SshShell) -> int:
    """Packets dropped by the link-local DROPs on `br-+`: every instance has one, and the
    topmost (the last instance's to come up) takes the packets, so their counters add up."""
    total = 0
    for line in sh.out("iptables-save -c -t filter").splitlines():
        text = re.sub(r'--comment "([^"]*)"', r"--comment \1", line)
        if "--comment dockyard:" in text and all(f in text for f in LINK_LOCAL_FROM_POOLS):
            match = re.match(r"\[(\d+):\d+\] ", text)
            assert match is not None, line
            total += int(match.group(1))
    return total


def test_rules_of_both_instances_are_in_place(sh: SshShell, instances: dict[str, Inst]) -> None:
    listed = IptablesRules.of(sh)
    for inst in instances.values():
        spec = inst.spec
        assert len(listed.tagged(spec.tag)) == len(spec.rules())
        assert sh.ok(f"{spec.path('bin', 'dockyard-net')} check")


def test_an_instance_reaches_its_own_networks(sh: SshShell, boxes: dict[str, Box]) -> None:
    # Same bridge (through FORWARD with br_netfilter), bridge <-> user network, and
    # within the user network.
    _assert_reaches(sh, boxes["a2"], [boxes["a1"], boxes["an1"]])
    _assert_reaches(sh, boxes["an2"], [boxes["an1"], boxes["a1"]])
    _assert_reaches(sh, boxes["bn1"], [boxes["b1"]])


def test_instances_cannot_open_connections_to_each_other(
    sh: SshShell, instances: dict[str, Inst], boxes: dict[str, Box]
) -> None:
    a, b = instances["A"].spec, instances["B"].spec
    to_a_bridge = (f"-o {a.bridge_name} ", "-j DROP")
    to_a_pool = (f"-d {a.pool_base} -o br-+ -m comment", "-j DROP")
    to_b_bridge = (f"-o {b.bridge_name} ", "-j DROP")
    to_b_pool = (f"-d {b.pool_base} -o br-+ -m comment", "-j DROP")
    before = {
        key: _packets(sh, spec.tag, *frags, before=True)
        for key, spec, frags in (
            ("a", a, to_a_bridge),
            ("ap", a, to_a_pool),
            ("b", b, to_b_bridge),
            ("bp", b, to_b_pool),
        )
    }
    to_b = [boxes["b1"].url, boxes["bn1"].url]
    to_a = [boxes["a1"].url, boxes["an1"].url]
    _assert_dropped(sh, boxes["a2"], to_b)
    _assert_dropped(sh, boxes["an2"], to_b)
    _assert_dropped(sh, boxes["b1"], to_a)
    _assert_dropped(sh, boxes["bn1"], to_a)
    # Each SYN (and its retries) died in the receiving instance's own DROP.
    assert _packets(sh, b.tag, *to_b_bridge) >= before["b"] + 2
    assert _packets(sh, b.tag, *to_b_pool) >= before["bp"] + 2
    assert _packets(sh, a.tag, *to_a_bridge) >= before["a"] + 2
    assert _packets(sh, a.tag, *to_a_pool) >= before["ap"] + 2


@pytest.fixture(scope="module")
def outside(sh: SshShell) -> Iterator[str]:
    """A namespace behind a veth `vout` routed through the host: another host interface."""
    sh.out(
        "set -e\n"
        f"ip netns add {OUTSIDE_NS}\n"
        f"ip link add vout type veth peer name vout-in netns {OUTSIDE_NS}\n"
        f"ip addr add {OUTSIDE_HOST_IP}/30 dev vout && ip link set vout up\n"
        f"ip -n {OUTSIDE_NS} addr add {OUTSIDE_IP}/30 dev vout-in\n"
        f"ip -n {OUTSIDE_NS} link set vout-in up\n"
        f"ip -n {OUTSIDE_NS} route add default via {OUTSIDE_HOST_IP}\n"
    )
    yield f"ip netns exec {OUTSIDE_NS} busybox wget -qO-"
    sh.run(f"ip link del vout; ip netns del {OUTSIDE_NS}")


def test_other_interfaces_reach_published_ports_but_not_containers(
    sh: SshShell, instances: dict[str, Inst], boxes: dict[str, Box], outside: str
) -> None:
    a = instances["A"].spec
    # The published port answers on the host, also for the other interface (docker-proxy).
    assert (
        sh.out(f"{outside} -T {ANSWER_S} http://{OUTSIDE_HOST_IP}:{PUBLISHED}/")
        == boxes["a1"].token
    )
    before = _packets(sh, a.tag, f"-o {a.bridge_name} ", "-j DROP", before=True)
    code, out = sh.run(f"{outside} -T {DROPPED_S} {boxes['a1'].url} 2>&1")
    assert code != 0 and "timed out" in out, out
    assert _packets(sh, a.tag, f"-o {a.bridge_name} ", "-j DROP") > before
    before = _packets(sh, a.tag, f"-d {a.pool_base} -o br-+ -m comment", "-j DROP", before=True)
    code, out = sh.run(f"{outside} -T {DROPPED_S} {boxes['an1'].url} 2>&1")
    assert code != 0 and "timed out" in out, out
    assert _packets(sh, a.tag, f"-d {a.pool_base} -o br-+ -m comment", "-j DROP") > before


def test_published_port_answers_on_the_host_through_docker_proxy(
    sh: SshShell, boxes: dict[str, Box]
) -> None:
    assert sh.out(f"busybox wget -T 10 -qO- http://127.0.0.1:{PUBLISHED}/") == boxes["a1"].token
    # With --iptables=false Docker publishes through its userland proxy: the host connects
    # to the container (OUTPUT), nothing is forwarded, so the DROPs cannot get in the way.
    proxies = sh.out("ps -eo args | grep '[d]ocker-proxy' || true")
    assert f"-host-port {PUBLISHED}" in proxies and f"-container-ip {boxes['a1'].ip}" in proxies


class _Token(http.server.BaseHTTPRequestHandler):
    token = b""

    def do_GET(self) -> None:  # http.server names the handler
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.token)))
        self.end_headers()
        self.wfile.write(self.token)

    def log_message(self, *_args: Any) -> None:
        return None


@pytest.fixture(scope="module")
def test_machine_url() -> Iterator[tuple[str, str]]:
    """An HTTP server on the test machine: 127.0.0.1 here is 10.0.2.2 for the VM (slirp)."""
    _Token.token = f"dockyard-{time.monotonic_ns()}".encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Token)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://10.0.2.2:{server.server_address[1]}/", _Token.token.decode()
    finally:
        server.shutdown()


def test_containers_reach_the_outside_world(
    sh: SshShell, boxes: dict[str, Box], test_machine_url: tuple[str, str]
) -> None:
    # Under the policy the instances set: only their own ACCEPTs let their outbound traffic
    # and its replies through.
    assert _forwarding(sh) == ("1", "-P FORWARD DROP")
    url, token = test_machine_url
    for client in ("a2", "an2", "b1", "bn1"):
        assert _fetch(sh, boxes[client], [url])[url] == f"OK {token}", client
    # DNS is outbound traffic too: to slirp's resolver 10.0.2.3, straight from the default
    # bridge, through Docker's embedded resolver (in the container's namespace) from a
    # user-defined network.
    for client in ("a2", "an2"):
        out = sh.out(boxes[client].inst.docker(f"exec {client} nslookup {DNS_NAME}"))
        answer = out.split(f"Name:\t{DNS_NAME}", 1)
        assert len(answer) == 2, (client, out)
        assert re.search(r"Address( \d+)?:\s*\d+\.\d+\.\d+\.\d+", answer[1]), (client, out)


def _veth_namespace(sh: SshShell, ns: str, link: str, host_ip: str, ns_ip: str) -> None:
    """Namespace `ns` behind the veth `link` (host side `host_ip`/30), routed via the host."""
    sh.out(
        "set -e\n"
        f"ip netns add {ns}\n"
        f"ip link add {link} type veth peer name {link}-in netns {ns}\n"
        f"ip addr add {host_ip}/30 dev {link} && ip link set {link} up\n"
        f"ip -n {ns} addr add {ns_ip}/30 dev {link}-in\n"
        f"ip -n {ns} link set {link}-in up && ip -n {ns} link set lo up\n"
        f"ip -n {ns} route add default via {host_ip}\n"
    )


def _serve_in(sh: SshShell, ns: str, port: int, token: str) -> None:
    """busybox httpd in namespace `ns` (it daemonizes), answering `token`."""
    sh.out(
        f"mkdir -p /run/{ns}-www && echo {token} > /run/{ns}-www/index.html"
        f" && ip netns exec {ns} busybox httpd -p {port} -h /run/{ns}-www"
    )


def _drop_namespace(sh: SshShell, ns: str, link: str) -> None:
    sh.run(
        f"ip netns pids {ns} | xargs -r kill; ip link del {link}; ip netns del {ns};"
        f" rm -rf /run/{ns}-www"
    )


@pytest.fixture(scope="module")
def routed_pair(sh: SshShell) -> Iterator[str]:
    """Namespaces behind `vleft` and `vright`; yields the URL of a server in the right one."""
    _veth_namespace(sh, LEFT_NS, "vleft", "192.168.79.1", "192.168.79.2")
    _veth_namespace(sh, RIGHT_NS, "vright", "192.168.80.1", RIGHT_IP)
    _serve_in(sh, RIGHT_NS, PORT, "token-right")
    yield f"http://{RIGHT_IP}:{PORT}/"
    _drop_namespace(sh, LEFT_NS, "vleft")
    _drop_namespace(sh, RIGHT_NS, "vright")


def test_the_host_routes_only_the_instances_traffic(
    sh: SshShell,
    forwarding_before: tuple[str, str],
    instances: dict[str, Inst],
    routed_pair: str,
) -> None:
    # Debian's defaults before the first instance: no forwarding, policy ACCEPT.
    assert forwarding_before == ("0", "-P FORWARD ACCEPT")
    # Turned on as Docker does: forwarding with policy DROP.
    assert _forwarding(sh) == ("1", "-P FORWARD DROP")
    left = f"ip netns exec {LEFT_NS} busybox wget -qO-"
    code, out = sh.run(f"{left} -T {DROPPED_S} {routed_pair} 2>&1")
    assert code != 0 and "timed out" in out, out
    # Positive control: the path itself works once an admin lets it through (what a host
    # that must route adds, docs/security.md).
    accepts = ["-i vleft -o vright -j ACCEPT", "-i vright -o vleft -j ACCEPT"]
    for rule in accepts:
        sh.out(f"iptables -w -I FORWARD {rule}")
    try:
        assert sh.out(f"{left} -T {ANSWER_S} {routed_pair}") == "token-right"
    finally:
        for rule in accepts:
            sh.run(f"iptables -w -D FORWARD {rule}")


@pytest.fixture(scope="module")
def metadata_probe(sh: SshShell) -> Iterator[str]:
    """A counting rule (no target) for packets leaving the host toward the metadata address."""
    rule = f"-d {METADATA}/32 -m comment --comment dockyard-test-probe"
    sh.out(f"iptables -w -t mangle -I POSTROUTING {rule}")
    yield rule
    sh.run(f"iptables -w -t mangle -D POSTROUTING {rule}")


def _left_host(sh: SshShell) -> int:
    out = sh.out("iptables-save -c -t mangle | grep -F dockyard-test-probe")
    match = re.match(r"\[(\d+):\d+\] ", out)
    assert match is not None, out
    return int(match.group(1))


def test_cloud_metadata_is_dropped_before_it_leaves_the_host(
    sh: SshShell, instances: dict[str, Inst], boxes: dict[str, Box], metadata_probe: str
) -> None:
    # Positive control: the probe counts what the host itself sends there (to the discard
    # port: the test machine may be a cloud server whose real metadata service answers).
    sh.run(f"busybox wget -T 1 -qO- http://{METADATA}:9/ 2>&1")
    left = _left_host(sh)
    assert left >= 1
    a = instances["A"].spec
    from_bridge = _link_local_from_bridge(a)
    before = (_packets(sh, a.tag, *from_bridge, before=True), _link_local_pool_drops(sh))
    url = f"http://{METADATA}/latest/meta-data/"
    _assert_dropped(sh, boxes["a2"], [url])
    _assert_dropped(sh, boxes["an2"], [url])
    assert _packets(sh, a.tag, *from_bridge) > before[0]
    assert _link_local_pool_drops(sh) > before[1]
    assert _left_host(sh) == left, "a container's packet to the metadata address left the host"


@pytest.fixture(scope="module")
def link_local_service(sh: SshShell) -> Iterator[str]:
    """A web server on 169.254.169.254 and 169.254.170.2 in a namespace routed through the
    host, as a cloud's metadata service is; yields the mangle POSTROUTING comment of a
    counting rule that sees every packet the host sends to it."""
    _veth_namespace(sh, META_NS, "vmeta", "192.168.78.1", META_VIA)
    sh.out(
        "set -e\n"
        f"for a in {METADATA} {ECS_CREDENTIALS}; do\n"
        f"  ip -n {META_NS} addr add $a/32 dev lo\n"
        f"  ip route replace $a/32 via {META_VIA} dev vmeta\n"
        "done\n"
        "iptables -w -t mangle -I POSTROUTING -o vmeta -m comment --comment dockyard-test-meta\n"
    )
    _serve_in(sh, META_NS, 80, META_TOKEN)
    yield "dockyard-test-meta"
    sh.run(
        "iptables -w -t mangle -D POSTROUTING -o vmeta -m comment --comment dockyard-test-meta;"
        f" ip route del {METADATA}/32; ip route del {ECS_CREDENTIALS}/32"
    )
    _drop_namespace(sh, META_NS, "vmeta")


def _sent_to_link_local_service(sh: SshShell) -> int:
    out = sh.out("iptables-save -c -t mangle | grep -F dockyard-test-meta")
    match = re.match(r"\[(\d+):\d+\] ", out)
    assert match is not None, out
    return int(match.group(1))


@pytest.fixture(scope="module")
def spoofer(sh: SshShell, instances: dict[str, Inst], boxes: dict[str, Box]) -> Box:
    """A container on A's user-defined network that sends to 169.254.169.254 from its
    instance's fixed address (a1's, on the default bridge): what the old source-bound DROP
    let through. NET_ADMIN for `ip` (sysbox grants it anyway; the stand-in runtime not)."""
    a = instances["A"]
    sh.out(
        a.docker(
            f"run -d --name spoof --network anet --cap-add NET_ADMIN {DEFAULT_TAG} sleep 100000"
        )
    )
    gateway = sh.out(a.docker("network inspect -f '{{(index .IPAM.Config 0).Gateway}}' anet"))
    forged = boxes["a1"].ip
    sh.out(
        a.docker(
            "exec spoof sh -c "
            + shlex.quote(
                f"ip addr add {forged}/32 dev eth0 && "
                f"ip route add {METADATA}/32 via {gateway} src {forged}"
            )
        )
    )
    # The host must not drop the forged packets on its own (strict reverse-path filtering):
    # the instance's rule is what is tested.
    bridge = "br-" + sh.out(a.docker("network inspect -f '{{.Id}}' anet"))[:12]
    sh.out(
        "sysctl -q -w net.ipv4.conf.all.rp_filter=0"
        f" && sysctl -q -w net.ipv4.conf.{bridge}.rp_filter=0"
    )
    address = "'{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}'"
    return Box(a, "spoof", sh.out(a.docker(f"inspect -f {address} spoof")))


def test_link_local_is_dropped_whatever_source_a_container_forges(
    sh: SshShell,
    instances: dict[str, Inst],
    boxes: dict[str, Box],
    link_local_service: str,
    spoofer: Box,
    test_machine_url: tuple[str, str],
) -> None:
    a = instances["A"].spec
    meta_url, ecs_url = f"http://{METADATA}/", f"http://{ECS_CREDENTIALS}/"
    # Positive control: the service answers on both addresses, and the counter sees it.
    sent = _sent_to_link_local_service(sh)
    for url in (meta_url, ecs_url):
        assert sh.out(f"busybox wget -T {ANSWER_S} -qO- {url}") == META_TOKEN
    assert _sent_to_link_local_service(sh) > sent
    sent = _sent_to_link_local_service(sh)
    before = (
        _link_local_pool_drops(sh),
        _packets(sh, a.tag, *_link_local_from_bridge(a), before=True),
    )
    # A forged source (its instance's fixed address) on a user-defined network.
    _assert_dropped(sh, spoofer, [meta_url])
    # Any link-local address, not only 169.254.169.254, from either network kind.
    _assert_dropped(sh, boxes["an2"], [ecs_url])
    _assert_dropped(sh, boxes["a2"], [ecs_url])
    # Each died in the instances' link-local DROPs, and nothing reached the service.
    assert _link_local_pool_drops(sh) >= before[0] + 2
    assert _packets(sh, a.tag, *_link_local_from_bridge(a)) > before[1]
    assert _sent_to_link_local_service(sh) == sent
    # Outbound traffic of the same container still works.
    url, token = test_machine_url
    assert _fetch(sh, spoofer, [url])[url] == f"OK {token}"


def test_deleting_an_instance_removes_its_rules_and_the_other_keeps_working(
    sh: SshShell,
    provider: DockyardInstanceProvider,
    instances: dict[str, Inst],
    boxes: dict[str, Box],
    test_machine_url: tuple[str, str],
    outside: str,
) -> None:
    a, b = instances["A"], instances["B"]
    provider.delete("id", a.props)
    assert sh.out(f"iptables-save | grep -cF 'dockyard:{a.spec.prefix}' || true") == "0"
    assert sh.out(f"iptables-save | grep -cF 'dockyard:{b.spec.prefix}' || true") == str(
        len(b.spec.rules())
    )
    assert sh.ok(f"{b.spec.path('bin', 'dockyard-net')} check")
    url, token = test_machine_url
    got = _fetch(sh, boxes["bn1"], [boxes["b1"].url, url])
    assert got == {boxes["b1"].url: f"OK {boxes['b1'].token}", url: f"OK {token}"}
    # B's own guards are still there: another interface cannot reach its containers.
    before = _packets(sh, b.spec.tag, f"-o {b.spec.bridge_name} ", "-j DROP", before=True)
    code, out = sh.run(f"{outside} -T {DROPPED_S} {boxes['b1'].url} 2>&1")
    assert code != 0 and "timed out" in out, out
    assert _packets(sh, b.spec.tag, f"-o {b.spec.bridge_name} ", "-j DROP") > before
