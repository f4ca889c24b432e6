"""Two stacks (two teams) deploying to one host at the same time, through the real engine.

Each stack has one instance whose networks its stack file leaves out. Before network claims
both got 172.16.0.0/24 and pool 172.18.0.0/19, and two `up`s at once both passed the
unlocked conflict probe. Now each instance's networks are chosen and claimed on the host
under its lock: both `up`s, started together, succeed with disjoint networks, each claim
names its own stack's resource, a container of one stack cannot open a connection to a
container of the other (the receiving instance's own DROP counts the SYNs) while it reaches
its own, and destroying both stacks leaves no claim (and nothing else) behind.

The machine is a QEMU clone used as an `existing` host by both stacks, with the test bed's
Docker and sysbox (the real ones when DOCKYARD_TEST_ARTIFACTS is set).
"""

from __future__ import annotations

import base64
import ipaddress
import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from dockyard_resources.render.layout import NETWORK_CLAIMS_DIR, STATE_DIR
from dockyard_resources.transport import close_all, session
from tests.engine.dockyard_stack import DockyardStack, Run, copy_project
from tests.engine.existing_host import host_config, set_login_key
from tests.fixtures.pulumi_cli import PulumiCli, unique_stack_name
from tests.fixtures.vm import TestHost, booted_vm
from tests.hosts.checks import SshShell, dockyard_traces
from tests.hosts.test_isolation import (
    IMAGE_ON_HOST,
    Box,
    Inst,
    _assert_dropped,
    _assert_reaches,
    _packets,
    _server,
)
from tools.testbed.artifacts import TestbedArtifacts
from tools.testimage.busybox_image import DEFAULT_TAG, image_archive

# Not in `make test` (scripts/test.sh deselects the marker): `make test-outside-budget`.
pytestmark = [
    pytest.mark.engine, pytest.mark.vm, pytest.mark.outside_budget, pytest.mark.timeout(3600)
]  # fmt: skip

HOST = "shared"  # the same name in both stack files: owners still differ by stack
TEAMS = {"a": ("dya_", "/dya"), "b": ("dyb_", "/dyb")}


@pytest.fixture(scope="module")
def machine() -> Iterator[TestHost]:
    with booted_vm() as booted:
        yield booted


@pytest.fixture(scope="module")
def sh(machine: TestHost) -> SshShell:
    return SshShell(machine.target)


@pytest.fixture(scope="module")
def stacks(
    pulumi_backend: PulumiCli,
    machine: TestHost,
    testbed_artifacts: TestbedArtifacts,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, DockyardStack]]:
    made: dict[str, DockyardStack] = {}
    try:
        for team, (prefix, root) in TEAMS.items():
            work = copy_project(tmp_path_factory.mktemp(f"team-{team}") / "project")
            stack = DockyardStack(pulumi_backend, work, unique_stack_name(f"team-{team}"))
            stack.init()
            made[team] = stack
            set_login_key(stack, machine)
            instances = [{"prefix": prefix, "root": root}]
            stack.set_hosts([host_config(HOST, machine, testbed_artifacts, instances)])
        yield made
    finally:
        for stack in made.values():
            stack.destroy(check=False)
            stack.pulumi("stack", "rm", "--yes", "--force", check=False)
        close_all()


def instance_of(stack: DockyardStack, team: str) -> Inst:
    """The deployed instance as the isolation helpers take it (its networks from the stack
    outputs: what the host chose)."""
    prefix, root = TEAMS[team]
    out = stack.outputs()["hosts"][HOST]["instances"][prefix]
    nets = out["networks"]
    return Inst(
        {
            "prefix": prefix,
            "root": root,
            "dockerDir": "/usr/local/lib/dockyard/docker-29.2.1",
            "sysboxDir": "/usr/local/lib/dockyard/sysbox-0.6.7",
            "bridgeCidr": nets["bridge"],
            "fixedCidr": nets["fixedCidr"],
            "poolBase": nets["poolBase"],
            "poolSize": nets["poolSize"],
        }
    )


def test_both_stacks_up_at_the_same_time_get_disjoint_claimed_networks(
    stacks: dict[str, DockyardStack], sh: SshShell
) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs: dict[str, Run] = dict(
            zip(stacks, pool.map(lambda s: s.up(check=False), stacks.values()), strict=True)
        )
    for run in runs.values():
        assert run.returncode == 0, run.describe()
        # The stack, its host component, the SysboxHost and the instance.
        assert run.change_summary == {"create": 4}, run.describe()
    insts = {team: instance_of(stack, team) for team, stack in stacks.items()}
    nets = [
        ipaddress.ip_network(n)
        for inst in insts.values()
        for n in (inst.spec.bridge_cidr.network, inst.spec.pool_base)
    ]
    for one, other in itertools.combinations(nets, 2):
        assert not one.overlaps(other), (one, other)
    # Each instance's claim on the host names its own stack's resource and its networks.
    for team, stack in stacks.items():
        spec = insts[team].spec
        claim = sh.out(f"cat {NETWORK_CLAIMS_DIR}/{spec.prefix}").splitlines()
        assert f"owner=dockyard/{stack.name}/{HOST}-{spec.prefix}" in claim
        assert f"bridgeCidr={spec.bridge_cidr}" in claim
        assert f"poolBase={spec.pool_base}" in claim
    assert sh.out(f"stat -c '%U %a' {NETWORK_CLAIMS_DIR}") == "root 700"
    # A second run of either stack keeps what its host chose.
    for stack in stacks.values():
        stack.pulumi("preview", "--expect-no-changes")


@pytest.fixture(scope="module")
def boxes(stacks: dict[str, DockyardStack], sh: SshShell, machine: TestHost) -> dict[str, Box]:
    """In each stack's instance: a server on its default bridge and one on a user-defined
    network (an address of its pool), and a client on its default bridge."""
    busybox = base64.b64decode(sh.out("base64 -w0 /bin/busybox"))
    session(machine.target).upload(image_archive(busybox), IMAGE_ON_HOST, 0o644)
    made: dict[str, Box] = {}
    address = "'{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}'"
    for team, stack in stacks.items():
        inst = instance_of(stack, team)
        sh.out(inst.docker(f"load -i {IMAGE_ON_HOST} >/dev/null"))
        sh.out(inst.docker(f"network create {team}net >/dev/null"))
        for name, network in ((f"{team}1", ""), (f"{team}n1", f"--network {team}net")):
            sh.out(_server(inst, name, network) + " >/dev/null")
            made[name] = Box(inst, name, sh.out(inst.docker(f"inspect -f {address} {name}")))
        client = f"{team}c"
        sh.out(inst.docker(f"run -d --name {client} {DEFAULT_TAG} sleep 100000 >/dev/null"))
        made[client] = Box(inst, client, sh.out(inst.docker(f"inspect -f {address} {client}")))
    return made


def test_a_container_of_one_stack_cannot_reach_the_other_stacks_containers(
    stacks: dict[str, DockyardStack], sh: SshShell, boxes: dict[str, Box]
) -> None:
    for mine, theirs in (("a", "b"), ("b", "a")):
        client = boxes[f"{mine}c"]
        own = [boxes[f"{mine}1"], boxes[f"{mine}n1"]]
        other = [boxes[f"{theirs}1"], boxes[f"{theirs}n1"]]
        # Positive control: its own containers answer, on both of its networks.
        _assert_reaches(sh, client, own)
        spec = other[0].inst.spec
        to_bridge = (f"-o {spec.bridge_name} ", "-j DROP")
        to_pool = (f"-d {spec.pool_base} -o br-+ -m comment", "-j DROP")
        before = [_packets(sh, spec.tag, *f, before=True) for f in (to_bridge, to_pool)]
        _assert_dropped(sh, client, [box.url for box in other])
        # Each SYN (and its retries) died in the receiving instance's own DROP.
        after = [_packets(sh, spec.tag, *f) for f in (to_bridge, to_pool)]
        assert after[0] >= before[0] + 2 and after[1] >= before[1] + 2, (before, after)


def test_destroying_both_stacks_leaves_no_claim_behind(
    stacks: dict[str, DockyardStack], sh: SshShell
) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        runs = list(pool.map(lambda s: s.destroy(check=False), stacks.values()))
    for run in runs:
        assert run.returncode == 0, run.describe()
    assert sh.out(f"ls -A {STATE_DIR} 2>&1 || true").endswith("No such file or directory")
    prefixes = [prefix for prefix, _ in TEAMS.values()]
    roots = [root for _, root in TEAMS.values()]
    assert dockyard_traces(sh, prefixes, roots) == []
