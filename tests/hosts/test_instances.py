"""DockyardInstance's provider on the QEMU test host, with the test bed's artifacts.

What only the provider level shows: read and drift repair, refusals before any change, and
the last delete letting the shared sysbox service stop. The original tool's end-to-end suite
(containers, networking, Docker-in-Docker, isolation, stop/start, destroy under load, reboot)
runs against a deployed stack in tests/acceptance. The tests run in file order.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from dockyard_resources.hostops import instance as hostops
from dockyard_resources.hostops import network_claims, sysbox_host
from dockyard_resources.providers.instance import DockyardInstanceProvider
from dockyard_resources.render import sysbox_host as sysbox_render
from dockyard_resources.render.instance import InstanceSpec
from dockyard_resources.render.layout import SYSBOX_SERVICE
from dockyard_resources.transport import CommandFailed, SshTarget, session
from tests.fixtures.sysbox_template import sysbox_host_props, sysbox_layer
from tests.fixtures.vm import TestHost, booted_vm
from tests.hosts.checks import (
    File,
    Group,
    IptablesRules,
    Link,
    Service,
    Socket,
    SshShell,
    User,
    dockyard_traces,
)
from tools.testbed.artifacts import TestbedArtifacts
from tools.testbed.props import instance_props

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3600)]

DOCKER_VERSION = "29.2.1"
SYSBOX_VERSION = "0.6.7"
SYSBOX_UNIT = SYSBOX_SERVICE
MEMBER_A = "dyuser_a"  # in A's group only
OUTSIDER = "dyuser_none"  # in no instance group
# An isolated instance's rules on the host, counted independently of the renderer: 12 in
# filter FORWARD and 2 in nat POSTROUTING (docs/security.md lists them).
RULES_PER_INSTANCE = 14


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
    return instance_props(
        conn, n, host_name="testhost", owner=f"tests/hosts/testhost-dy{n}_", members=members
    )


SYSBOX_OWNER = "tests/hosts/testhost-sysbox"


def _install_sysbox_host(
    target: SshTarget, chosen: TestbedArtifacts, owner: str = SYSBOX_OWNER
) -> None:
    props = sysbox_host_props(chosen.docker, chosen.sysbox, owner=owner)
    request = sysbox_host.HostRequest.from_props({**props, "connection": {"host": target.host}})
    sysbox_host.install(target, request)


def sysbox_host_vm(chosen: TestbedArtifacts) -> Iterator[TestHost]:
    """A VM of its own, cloned from the template on which `_install_sysbox_host(target,
    chosen)` already ran: the install the fixtures then run only converges, in seconds (the
    install itself is tested by test_sysbox_host.py)."""
    props = sysbox_host_props(chosen.docker, chosen.sysbox, owner=SYSBOX_OWNER)
    with booted_vm(layer=sysbox_layer(props)) as booted:
        yield booted


@pytest.fixture(scope="module")
def host(testbed_artifacts: TestbedArtifacts) -> Iterator[TestHost]:
    yield from sysbox_host_vm(testbed_artifacts)


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
def instances(
    host: TestHost,
    testbed_artifacts: TestbedArtifacts,
    sh: SshShell,
    provider: DockyardInstanceProvider,
) -> Iterator[dict[str, Inst]]:
    target = host.target
    _install_sysbox_host(target, testbed_artifacts)
    sh.out(f"for u in {MEMBER_A} {OUTSIDER}; do id -u $u >/dev/null 2>&1 || useradd -m $u; done")
    conn = _connection(target)
    wanted = {"A": _props(conn, 1, [MEMBER_A]), "B": _props(conn, 2, [])}
    # Pulumi creates the instances of one host in parallel: so do we.
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {name: pool.submit(provider.create, props) for name, props in wanted.items()}
        made = {
            name: Inst(name, wanted[name], f.result().outs or {}) for name, f in futures.items()
        }
    yield made
    # Teardown registered first thing: whatever a failed test left behind goes.
    for inst in made.values():
        provider.delete("", inst.props)


def test_instances_created_concurrently_are_active(
    sh: SshShell, instances: dict[str, Inst]
) -> None:
    assert Service.of(sh, SYSBOX_UNIT).active
    for inst in instances.values():
        service = Service.of(sh, inst.spec.service_name)
        assert service.active and service.enabled, service
        assert inst.outs["dockerHost"] == f"unix://{inst.spec.root}/run/docker.sock"
        assert sh.out(inst.docker("info --format '{{.DefaultRuntime}}'")) == "sysbox-runc"
        root = File.of(sh, inst.spec.root)
        assert (root.owner, root.group, root.mode) == ("root", inst.spec.group, 0o751)
        assert Link.of(sh, inst.spec.bridge_name).addresses == (inst.props["bridgeCidr"],)
        assert len(IptablesRules.of(sh).tagged(inst.spec.tag)) == RULES_PER_INSTANCE


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


def test_drift_shows_in_read_and_update_repairs_it(
    sh: SshShell, provider: DockyardInstanceProvider, instances: dict[str, Inst]
) -> None:
    c = instances["B"]
    rule = c.spec.rules()[0]
    args = " ".join(rule.args(c.spec.tag))
    sh.out(f"iptables -w -t {rule.table} -D {rule.chain} {args}")
    read = provider.read("id", {**c.props, **c.outs})
    assert read.outs is not None and read.outs["healthy"] is False
    assert any("iptables" in p for p in read.outs["health"]["problems"])
    assert provider.diff("id", read.outs, c.props).changes is True
    provider.update("id", read.outs, c.props)
    assert len(IptablesRules.of(sh).tagged(c.spec.tag)) == RULES_PER_INSTANCE
    again = provider.read("id", {**c.props, **c.outs})
    assert again.outs is not None and again.outs["healthy"] is True, again.outs["health"]


def test_create_refuses_conflicts_before_changing_anything(
    sh: SshShell, provider: DockyardInstanceProvider, instances: dict[str, Inst]
) -> None:
    conn = instances["A"].props["connection"]
    sh.out(
        "ip link show fake0 >/dev/null 2>&1 || { ip link add fake0 type bridge &&"
        " ip addr add 172.22.9.1/24 dev fake0; }"
    )
    try:
        # Refused by the network claim, under the host lock, naming the address in the way.
        with pytest.raises(Exception, match=r"172\.22\.9\.1/24 overlaps the address \S+ on fake0"):
            provider.create(_props(conn, 9, []))
        with pytest.raises(Exception, match="no such user on this host: ghost"):
            provider.create(_props(conn, 8, ["ghost"]))
    finally:
        sh.out("ip link del fake0")
    for n in (8, 9):
        assert not Group.of(sh, f"dy{n}_docker").exists
        assert not File.of(sh, f"/dy{n}").exists
        assert not Service.of(sh, f"dy{n}_docker.service").unit_file_exists
        assert not File.of(sh, network_claims.claim_file(f"dy{n}_")).exists


def _refused(provider: DockyardInstanceProvider, props: dict[str, Any], words: str) -> None:
    with pytest.raises(Exception, match=words):
        provider.create(props)


def test_create_never_takes_over_foreign_directories_or_instances(
    sh: SshShell, provider: DockyardInstanceProvider, instances: dict[str, Inst]
) -> None:
    conn = instances["A"].props["connection"]
    sh.out(
        "mkdir -p /srv/preexisting /srv/real && echo keep > /srv/preexisting/data"
        " && ln -sfn /srv/real /srv/link"
        " && { id -u dyhome >/dev/null 2>&1 || useradd -m dyhome; }"
    )
    cases = [
        ({"root": "/srv/preexisting"}, "not a Dockyard instance root"),
        ({"root": "/srv/link/dy5"}, "/srv/link is a symbolic link"),
        ({"root": "/home/dyhome/dy5"}, "parent /home/dyhome belongs to uid"),
        ({"root": "/dy1/nested"}, "lies inside /dy1, the root of Dockyard instance dy1_"),
    ]
    for changes, words in cases:
        _refused(provider, {**_props(conn, 5, []), **changes}, words)
    # The same prefix as A, claimed by another stack's resource: refused, naming A's owner.
    foreign = {**instances["A"].props, "owner": "otherproject/otherstack/h-dy1_"}
    _refused(provider, foreign, "instance dy1_ on this host belongs to tests/hosts/testhost-dy1_")
    # A group of the instance's name that was there before: never adopted.
    sh.out("getent group dy6_docker >/dev/null || groupadd dy6_docker")
    _refused(provider, _props(conn, 6, []), "group dy6_docker already exists and is not this")
    assert Group.of(sh, "dy6_docker").exists and not File.of(sh, "/dy6").exists
    sh.out("groupdel dy6_docker")
    # Binaries root would run from a directory a local user can change: refused.
    untrusted = sysbox_render.docker_dir("0.0.1-untrusted")
    sh.out(
        f"mkdir -p {untrusted} && printf '#!/bin/sh\\n' > {untrusted}/dockerd"
        f" && chmod 755 {untrusted}/dockerd && chmod 757 {untrusted}"
    )
    try:
        _refused(
            provider,
            {**_props(conn, 5, []), "dockerDir": untrusted},
            f"dockerDir {untrusted}: {untrusted} belongs to uid 0, gid 0 with mode 757",
        )
    finally:
        sh.out(f"rm -rf {untrusted}")
    assert sh.out("cat /srv/preexisting/data") == "keep"
    assert not Group.of(sh, "dy5_docker").exists
    assert not Service.of(sh, "dy5_docker.service").unit_file_exists
    assert not File.of(sh, "/srv/real/dy5").exists and not File.of(sh, "/dy1/nested").exists
    marker = sh.out(f"cat {instances['A'].spec.marker_path}")
    assert marker == "owner=tests/hosts/testhost-dy1_\nprefix=dy1_"
    assert Service.of(sh, instances["A"].spec.service_name).active


def test_a_create_whose_daemon_cannot_start_leaves_nothing_behind(
    sh: SshShell, provider: DockyardInstanceProvider, instances: dict[str, Inst]
) -> None:
    """dockerd exits at once, so the unit fails to start and the create fails. Pulumi keeps
    no state of it: the create itself removes what it made, instead of leaving an enabled
    unit that systemd restarts every 5 s."""
    conn = instances["A"].props["connection"]
    good = instances["A"].spec.docker_dir
    broken = sysbox_render.docker_dir(f"{DOCKER_VERSION}-broken")
    # Hard links: the same root-owned binaries, but a dockerd of its own that fails.
    sh.out(
        f"cp -al {good} {broken} && rm {broken}/dockerd"
        f" && printf '#!/bin/sh\\nexit 1\\n' > {broken}/dockerd && chmod 755 {broken}/dockerd"
    )
    failed = Inst("failed", {**_props(conn, 7, []), "dockerDir": broken}, {})
    try:
        with pytest.raises(CommandFailed, match=r"dy7_docker\.service"):
            provider.create(failed.props)
        _no_trace(sh, failed)
        assert Service.of(sh, failed.spec.service_name) == Service(
            failed.spec.service_name, active=False, enabled=False, unit_file_exists=False
        )
        # Nothing of it runs any more, nor is about to (a restart would show as activating).
        assert sh.out(f"systemctl is-active {failed.spec.service_name} || true") == "inactive"
        assert not sh.ok(f"pgrep -f {failed.spec.path('etc', 'containerd.toml')}")
    finally:
        sh.out(f"rm -rf {broken}")
    assert Service.of(sh, instances["A"].spec.service_name).active


def test_delete_leaves_another_owners_instance_alone(
    sh: SshShell, provider: DockyardInstanceProvider, instances: dict[str, Inst]
) -> None:
    a = instances["A"]
    foreign = {**a.props, "owner": "otherproject/otherstack/h-dy1_"}
    runner = session(SshTarget.from_props(a.props["connection"]))
    kept = hostops.remove(runner, InstanceSpec.from_props(foreign))
    assert kept and "belongs to tests/hosts/testhost-dy1_" in kept[0], kept
    assert Service.of(sh, a.spec.service_name).active
    assert File.of(sh, a.spec.root).exists
    assert len(IptablesRules.of(sh).tagged(a.spec.tag)) == RULES_PER_INSTANCE


def _no_trace(sh: SshShell, inst: Inst) -> None:
    spec = inst.spec
    assert not Service.of(sh, spec.service_name).unit_file_exists
    assert not Link.of(sh, spec.bridge_name).exists
    assert IptablesRules.of(sh).tagged(spec.tag) == []
    assert not User.of(sh, spec.user).exists
    assert not Group.of(sh, spec.group).exists
    assert not File.of(sh, spec.root).exists


def test_delete_twice_spares_a_process_a_stale_pid_file_names(
    sh: SshShell, provider: DockyardInstanceProvider, instances: dict[str, Inst]
) -> None:
    """Delete under load (containers running) is the acceptance suite's destroy check; here
    what it cannot set up: a pid file of the instance naming a process not its own."""
    a = instances["A"]
    # A stale pid file naming a stranger (after a reboot the number may be anybody's).
    stranger = sh.out("setsid sleep 100000 >/dev/null 2>&1 < /dev/null & echo $!")
    sh.out(f"echo {stranger} > {a.spec.path('run', 'containerd.pid')}")
    provider.delete("id", a.props)
    assert sh.ok(f"kill -0 {stranger}"), "delete killed a process that was not the instance's"
    sh.out(f"kill {stranger}")
    provider.delete("id", a.props)  # a second delete is a no-op
    _no_trace(sh, a)
    assert User.of(sh, MEMBER_A).exists  # members are only taken out of the group
    assert Service.of(sh, SYSBOX_UNIT).active
    b = instances["B"]
    read = provider.read("id", {**b.props, **b.outs})
    assert read.outs is not None and read.outs["healthy"] is True, read.outs["health"]


def test_deleting_the_last_instance_lets_sysbox_stop(
    sh: SshShell, provider: DockyardInstanceProvider, instances: dict[str, Inst]
) -> None:
    provider.delete("id", instances["B"].props)
    _no_trace(sh, instances["B"])
    _wait(lambda: not Service.of(sh, SYSBOX_UNIT).active, "sysbox stopped when unneeded")


def test_shared_layer_stays_while_another_sysbox_host_uses_the_host(
    host: TestHost, sh: SshShell, testbed_artifacts: TestbedArtifacts
) -> None:
    """Two SysboxHost resources on one machine (another stack, or a host renamed in the
    stack file): deleting one keeps Docker and sysbox for the other; the last one removes."""
    target = host.target
    other = "otherproject/otherstack/renamed-sysbox"
    _install_sysbox_host(target, testbed_artifacts, owner=other)
    first = sysbox_host.remove(target, SYSBOX_OWNER)
    assert first.other_owners == [other], first
    assert File.of(sh, sysbox_render.docker_dir(DOCKER_VERSION)).exists
    last = sysbox_host.remove(target, other)
    assert last.other_owners == [] and last.kept_for == [], last
    assert not File.of(sh, sysbox_render.LIB_ROOT).exists
    assert dockyard_traces(sh, [], []) == []
