"""Rendering of one Dockyard instance: daemon.json, containerd config, unit, scripts, rules."""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import random
import shlex
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.config.network_request import NetworkRequest
from dockyard_resources.errors import HostOutputError
from dockyard_resources.hostops import instance as hostops
from dockyard_resources.hostops import network_claims
from dockyard_resources.providers import instance as provider
from dockyard_resources.render import facts, iptables
from dockyard_resources.render import instance as render

PROPS: dict[str, Any] = {
    "prefix": "dy1_",
    "root": "/dy1",
    "dockerDir": "/usr/local/lib/dockyard/docker-29.2.1",
    "sysboxDir": "/usr/local/lib/dockyard/sysbox-0.6.7",
    "bridgeCidr": "172.22.147.1/24",
    "fixedCidr": "172.22.147.0/25",
    "poolBase": "172.28.0.0/16",
    "poolSize": 24.0,  # Pulumi hands numbers over as floats
    "members": ["alice", "bob"],
}


@pytest.fixture
def spec() -> render.InstanceSpec:
    return render.InstanceSpec.from_props(PROPS)


def test_names_and_paths_derive_from_prefix_and_root(spec: render.InstanceSpec) -> None:
    assert spec.pool_size == 24 and isinstance(spec.pool_size, int)
    assert spec.group == spec.user == "dy1_docker"
    assert spec.service_name == "dy1_docker.service"
    assert spec.bridge_name == "dy1_docker0"
    assert spec.socket_path == "/dy1/run/docker.sock"
    assert spec.docker_host == "unix:///dy1/run/docker.sock"
    assert spec.containerd_socket == "/dy1/run/containerd/containerd.sock"


def test_daemon_json_bridge_pools_runtime_and_no_iptables(spec: render.InstanceSpec) -> None:
    config = json.loads(render.daemon_json(spec))
    assert config["bridge"] == "dy1_docker0"
    assert "bip" not in config  # -b and --bip are mutually exclusive
    assert config["fixed-cidr"] == "172.22.147.0/25"
    assert config["default-address-pools"] == [{"base": "172.28.0.0/16", "size": 24}]
    assert config["iptables"] is False and config["ip6tables"] is False
    assert config["runtimes"] == {"sysbox-runc": {"path": "/dy1/bin/sysbox-runc"}}
    assert config["default-runtime"] == "sysbox-runc"
    # overlay2, not Docker 29's default containerd image store (docs/instances.md, storage).
    assert config["features"] == {"containerd-snapshotter": False}
    assert config["storage-driver"] == "overlay2"
    # Paths are flags of dockerd; dockerd refuses settings given both ways.
    for flag_only in ("data-root", "exec-root", "pidfile", "hosts", "group", "containerd"):
        assert flag_only not in config


def test_containerd_has_its_own_root_state_and_socket(spec: render.InstanceSpec) -> None:
    config = tomllib.loads(render.containerd_toml(spec))
    assert config["root"] == "/dy1/lib/containerd"
    assert config["state"] == "/dy1/run/containerd"
    assert config["grpc"]["address"] == "/dy1/run/containerd/containerd.sock"
    assert config["ttrpc"]["address"].startswith("/dy1/run/containerd/")


def test_start_script_flags(spec: render.InstanceSpec) -> None:
    script = render.start_script(spec)
    dockerd = script[script.index("exec dockerd") :]
    words = shlex.split(dockerd.replace("\\\n", " ").split(">>")[0])
    flags = dict(zip(words[2::2], words[3::2], strict=False))
    assert flags["--config-file"] == "/dy1/etc/daemon.json"
    assert flags["--data-root"] == "/dy1/lib/docker"
    assert flags["--exec-root"] == "/dy1/run/docker"
    assert flags["--pidfile"] == "/dy1/run/docker.pid"
    assert flags["-H"] == "unix:///dy1/run/docker.sock"
    assert flags["--group"] == "dy1_docker"
    assert "--config /dy1/etc/containerd.toml" in script
    # dockerd finds containerd-shim-runc-v2, runc, docker-init and docker-proxy on PATH.
    assert "export PATH=/usr/local/lib/dockyard/docker-29.2.1:/dy1/bin:" in script
    # containerd must not be the one reporting the unit ready.
    assert "NOTIFY_SOCKET= containerd" in script


def test_unit_file_lines(spec: render.InstanceSpec) -> None:
    unit = render.unit_file(spec)
    lines = unit.splitlines()
    assert lines[0] == "# dockyard-instance: dy1_"
    assert "Requires=dockyard-sysbox.service" in lines
    assert "After=dockyard-sysbox.service network-online.target" in lines
    assert "Type=notify" in lines
    assert "Restart=on-failure" in lines
    assert "WantedBy=multi-user.target" in lines
    assert "ExecStartPre=/dy1/bin/dockyard-net up" in lines
    assert (
        "ExecStartPre=/bin/rm -f /dy1/run/docker.sock /dy1/run/containerd/containerd.sock" in lines
    )
    assert "ExecStart=/dy1/bin/dockyard-start" in lines
    assert "ExecStartPost=/dy1/bin/dockyard-wait-ready" in lines
    assert "ExecStop=/dy1/bin/dockyard-stop $MAINPID" in lines
    # Nothing chowns sysbox-mgr's per-container directories: that raced the DinD daemon.
    assert "watcher" not in unit
    assert "ExecStopPost=/dy1/bin/dockyard-net down" in lines
    # The start counts only when the API answers: wait-ready runs after dockerd's READY.
    assert lines.index("ExecStart=/dy1/bin/dockyard-start") < lines.index(
        "ExecStartPost=/dy1/bin/dockyard-wait-ready"
    )


def test_docker_wrapper_talks_to_this_instance(spec: render.InstanceSpec) -> None:
    wrapper = render.docker_wrapper(spec)
    assert wrapper.startswith("#!/bin/sh\n")
    assert (
        'exec /usr/local/lib/dockyard/docker-29.2.1/docker -H unix:///dy1/run/docker.sock "$@"'
        in wrapper
    )


def test_rules_are_tagged_and_scoped(spec: render.InstanceSpec) -> None:
    rules = spec.rules()
    assert {(r.table, r.chain) for r in rules} == {("filter", "FORWARD"), ("nat", "POSTROUTING")}
    link_local_drop = ("-i", "br-+", "-d", iptables.LINK_LOCAL, "-j", "DROP")
    for rule in rules:
        args = rule.args(spec.tag)
        assert args[args.index("--comment") + 1] == "dockyard:dy1_"
        assert "DOCKER" not in " ".join(args)
        if rule.spec == link_local_drop:
            continue  # the one rule broader than the instance: it only ever drops
        # Every rule names this instance's bridge or pool, nothing broader.
        assert "dy1_docker0" in args or "172.28.0.0/16" in args or "172.22.147.0/25" in args
        # A user-defined network's bridge is only ever matched together with the pool.
        for flag in ("-i", "-o"):
            if flag in args and args[args.index(flag) + 1] == "br-+":
                pool_flag = "-s" if flag == "-i" else "-d"
                assert args[args.index(pool_flag) + 1] == "172.28.0.0/16", args
    masquerade = [r.spec for r in rules if r.spec[-1] == "MASQUERADE"]
    assert ("-s", "172.22.147.0/25", "!", "-o", "dy1_docker0", "-j", "MASQUERADE") in masquerade
    assert ("-s", "172.28.0.0/16", "!", "-d", "172.28.0.0/16", "-j", "MASQUERADE") in masquerade


# Every rule of dy1_, in the order it takes effect: "I" = at the top of the chain (guards),
# "A" = appended at its end (the containers' outbound ACCEPTs, below every instance's guards).
POOL = "172.28.0.0/16"
FROM_BRIDGE = "-i dy1_docker0"
FROM_POOL = f"-i br-+ -s {POOL}"
TO_BRIDGE = "-o dy1_docker0"
TO_POOL = f"-o br-+ -d {POOL}"
REPLIES = "-m conntrack --ctstate RELATED,ESTABLISHED"
GUARDS_BEFORE_DROPS = [
    f"filter FORWARD I {FROM_BRIDGE} -d 169.254.0.0/16 -j DROP",
    "filter FORWARD I -i br-+ -d 169.254.0.0/16 -j DROP",
    f"filter FORWARD I {TO_BRIDGE} {REPLIES} -j ACCEPT",
    f"filter FORWARD I {TO_POOL} {REPLIES} -j ACCEPT",
    f"filter FORWARD I {FROM_BRIDGE} {TO_BRIDGE} -j ACCEPT",
    f"filter FORWARD I {FROM_POOL} {TO_BRIDGE} -j ACCEPT",
    f"filter FORWARD I {FROM_BRIDGE} {TO_POOL} -j ACCEPT",
    f"filter FORWARD I {FROM_POOL} {TO_POOL} -j ACCEPT",
]
ISOLATION_DROPS = [
    f"filter FORWARD I {TO_BRIDGE} -j DROP",
    f"filter FORWARD I {TO_POOL} -j DROP",
]
EGRESS_AND_NAT = [
    f"filter FORWARD A {FROM_BRIDGE} -j ACCEPT",
    f"filter FORWARD A {FROM_POOL} -j ACCEPT",
    "nat POSTROUTING I -s 172.22.147.0/25 ! -o dy1_docker0 -j MASQUERADE",
    f"nat POSTROUTING I -s {POOL} ! -d {POOL} -j MASQUERADE",
]


def _listed(rules: list[iptables.Rule]) -> list[str]:
    return [f"{r.table} {r.chain} {'A' if r.append else 'I'} {' '.join(r.spec)}" for r in rules]


def test_isolated_instance_has_exactly_these_rules(spec: render.InstanceSpec) -> None:
    assert spec.network_isolation is True  # absent in the props: isolated
    assert _listed(spec.rules()) == GUARDS_BEFORE_DROPS + ISOLATION_DROPS + EGRESS_AND_NAT


def test_network_isolation_false_only_leaves_out_the_drops_toward_the_containers() -> None:
    relaxed = render.InstanceSpec.from_props({**PROPS, "networkIsolation": False})
    assert relaxed.network_isolation is False
    # Metadata stays blocked; replies and own traffic stay accepted.
    assert _listed(relaxed.rules()) == GUARDS_BEFORE_DROPS + EGRESS_AND_NAT
    assert render.InstanceSpec.from_props({**PROPS, "networkIsolation": True}).rules() == (
        render.InstanceSpec.from_props(PROPS).rules()
    )
    script = render.net_script(relaxed)
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    assert " -o dy1_docker0 -m comment --comment dockyard:dy1_ -j DROP" not in script
    assert " -o dy1_docker0 -m comment --comment dockyard:dy1_ -j DROP" in render.net_script(
        render.InstanceSpec.from_props(PROPS)
    )


def test_network_isolation_input_is_optional_boolean_and_updates_in_place() -> None:
    news = {
        **PROPS,
        "connection": {"host": "192.0.2.1"},
        "hostName": "build-1",
        "owner": "dockyard/prod/build-1-dy1_",
    }
    inputs, failures = provider.validate(news)
    assert failures == [] and inputs["networkIsolation"] is True
    inputs, failures = provider.validate({**news, "networkIsolation": False})
    assert failures == [] and inputs["networkIsolation"] is False
    _, failures = provider.validate({**news, "networkIsolation": "no"})
    assert [(f.property, f.reason) for f in failures] == [
        ("networkIsolation", "must be true or false (got 'no')")
    ]
    olds = provider.outputs(news)
    diff = provider.DockyardInstanceProvider().diff("id", olds, {**news, "networkIsolation": False})
    assert diff.changes is True and diff.replaces == []
    assert "networkIsolation" in provider.UPDATE_KEYS
    # State written before the option existed lacks the key; the checked news have it: the
    # next `pulumi up` updates such an instance in place, which installs the isolation rules.
    checked, _ = provider.validate(news)
    diff = provider.DockyardInstanceProvider().diff("id", olds, checked)
    assert olds["networkIsolation"] is None
    assert diff.changes is True and diff.replaces == []
    assert (
        not provider.DockyardInstanceProvider()
        .diff("id", provider.outputs(checked), checked)
        .changes
    )


def test_rule_insertion_is_check_then_add_guards_on_top_in_order(
    spec: render.InstanceSpec,
) -> None:
    text = iptables.add_commands(spec.rules(), spec.tag)
    ops = []
    for line in text.strip().splitlines():
        check, add = line.split(" 2>/dev/null || ")
        op = add.split()[4]
        assert check.replace(" -C ", f" {op} ", 1) == add
        ops.append((add.split()[5], op, " ".join(shlex.split(add)[6:])))
    top = [r for r in spec.rules() if not r.append]
    end = [r for r in spec.rules() if r.append]
    # Each -I lands on top: inserting last-first leaves the guards in the listed order.
    assert ops == [(r.chain, "-I", " ".join(r.args(spec.tag))) for r in reversed(top)] + [
        (r.chain, "-A", " ".join(r.args(spec.tag))) for r in end
    ]


def test_sweep_deletes_only_exactly_tagged_rules() -> None:
    """Run the sweep with a fake iptables: dy1_ rules go, dy10_, dy1_x and Docker's stay."""
    listing = {
        "filter": [
            "-P FORWARD ACCEPT",
            "-A FORWARD -j DOCKER-USER",
            "-A FORWARD -d 169.254.169.254/32 -i dy1_docker0"
            " -m comment --comment dockyard:dy1_ -j DROP",
            "-A FORWARD -i dy1_docker0 -o dy1_docker0 -m comment --comment dockyard:dy1_ -j ACCEPT",
            "-A FORWARD -d 172.29.0.0/16 -o br-+ -m comment --comment dockyard:dy10_ -j DROP",
            "-A FORWARD -d 172.28.0.0/16 -o br-+ -m comment --comment dockyard:dy1_ -j DROP",
            "-A FORWARD -s 172.30.0.0/16 -i br-+ -m comment --comment dockyard:dy1_x -j ACCEPT",
            '-A FORWARD -s 172.28.0.0/16 -i br-+ -m comment --comment "dockyard:dy1_" -j ACCEPT',
            "-A FORWARD -i dy10_docker0 -m comment --comment dockyard:dy10_ -j ACCEPT",
        ],
        "nat": [
            "-A POSTROUTING -s 172.22.147.0/25 -m comment --comment dockyard:dy1_ -j MASQUERADE"
        ],
    }
    filter_lines = " ".join(shlex.quote(x) for x in listing["filter"])
    nat_lines = " ".join(shlex.quote(x) for x in listing["nat"])
    fake = "\n".join(
        [
            "iptables() {",
            "  shift; local table=$2; shift 2",  # drop -w, read -t TABLE
            '  if [ "$1" = -S ]; then',
            '    case "$table/$2" in',
            f"      filter/FORWARD) printf '%s\\n' {filter_lines} ;;",
            f"      nat/POSTROUTING) printf '%s\\n' {nat_lines} ;;",
            "    esac",
            '  else echo "$table $*"; fi',
            "}",
        ]
    )
    script = fake + "\n" + iptables.sweep_function("dockyard:dy1_") + "dockyard_sweep_rules\n"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    deleted = out.stdout.strip().splitlines()
    assert deleted == [
        "filter -D FORWARD -d 169.254.169.254/32 -i dy1_docker0"
        " -m comment --comment dockyard:dy1_ -j DROP",
        "filter -D FORWARD -i dy1_docker0 -o dy1_docker0"
        " -m comment --comment dockyard:dy1_ -j ACCEPT",
        "filter -D FORWARD -d 172.28.0.0/16 -o br-+ -m comment --comment dockyard:dy1_ -j DROP",
        "filter -D FORWARD -s 172.28.0.0/16 -i br-+ -m comment --comment dockyard:dy1_ -j ACCEPT",
        "nat -D POSTROUTING -s 172.22.147.0/25 -m comment --comment dockyard:dy1_ -j MASQUERADE",
    ]


# --- what the rules of several instances decide, however their commands interleave ----------


@dataclass(frozen=True)
class Packet:
    """A forwarded packet: interfaces, addresses and its conntrack state."""

    iface_in: str
    iface_out: str
    src: str
    dst: str
    state: str = "NEW"


_address = functools.cache(ipaddress.IPv4Address)
_network = functools.cache(ipaddress.IPv4Network)


def _iface(pattern: str, name: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith("+") else name == pattern


def _matches(args: list[str], packet: Packet) -> bool:
    i, negate = 0, False
    while i < len(args):
        word = args[i]
        if word == "!":
            negate = True
            i += 1
            continue
        value = args[i + 1]
        if word == "-i":
            hit = _iface(value, packet.iface_in)
        elif word == "-o":
            hit = _iface(value, packet.iface_out)
        elif word in ("-s", "-d"):
            address = packet.src if word == "-s" else packet.dst
            hit = _address(address) in _network(value)
        elif word == "--ctstate":
            hit = packet.state in value.split(",")
        elif word in ("-m", "--comment", "-j"):
            hit = True
        else:
            raise AssertionError(f"the simulator does not know {word}")
        if hit == negate:
            return False
        negate = False
        i += 2
    return True


@functools.cache
def _parse_add(line: str) -> tuple[str, str, str, list[str]]:
    """`iptables -w -t T -C C ARGS 2>/dev/null || iptables -w -t T -I|-A C ARGS`."""
    check, add = line.split(" 2>/dev/null || ")
    words = shlex.split(add)
    assert shlex.split(check)[6:] == words[6:]
    return words[3], words[4], words[5], words[6:]


class FakeForward:
    """filter FORWARD as the rendered `iptables -C ... || iptables -I/-A ...` lines leave it."""

    def __init__(self, policy: str) -> None:
        self.policy = policy
        self.rules: list[list[str]] = []

    def run(self, line: str) -> None:
        table, op, chain, args = _parse_add(line)
        if (table, chain) != ("filter", "FORWARD") or args in self.rules:
            return
        if op == "-I":
            self.rules.insert(0, list(args))
        else:
            assert op == "-A"
            self.rules.append(list(args))

    def sweep(self, tag: str) -> None:
        self.rules = [r for r in self.rules if r[r.index("--comment") + 1] != tag]

    def verdict(self, packet: Packet) -> str:
        for args in self.rules:
            if _matches(args, packet):
                return args[-1]
        return self.policy


def _instance(n: int, **extra: Any) -> render.InstanceSpec:
    return render.InstanceSpec.from_props(
        {
            **PROPS,
            "prefix": f"dy{n}_",
            "root": f"/dy{n}",
            "bridgeCidr": f"172.22.{n}.1/24",
            "fixedCidr": f"172.22.{n}.0/24",
            "poolBase": f"172.23.{n * 16}.0/20",
            **extra,
        }
    )


def _lines(inst: render.InstanceSpec) -> list[str]:
    return iptables.add_commands(inst.rules(), inst.tag).strip().splitlines()


def _bridge(n: int) -> tuple[str, str]:
    return f"dy{n}_docker0", f"172.22.{n}.2"


def _pool(n: int, net: int = 1) -> tuple[str, str]:
    # Docker's bridge of a user-defined network: br-<12 hex>, an address from the pool.
    return f"br-{n:x}{net:011x}", f"172.23.{n * 16 + net}.2"


OUTSIDE = ("eth0", "203.0.113.7")
METADATA = ("eth0", "169.254.169.254")
ECS_CREDENTIALS = ("eth0", "169.254.170.2")  # another link-local service


def _to(src: tuple[str, str], dst: tuple[str, str], state: str = "NEW") -> Packet:
    return Packet(src[0], dst[0], src[1], dst[1], state)


# A and B isolated (dy1_, dy2_), C with networkIsolation false (dy3_).
EXPECTED: list[tuple[Packet, str | None]] = [
    # Between isolated instances: no new connection, on either bridge kind, either way.
    *[
        (_to(src, dst), "DROP")
        for a, b in ((1, 2), (2, 1), (3, 1), (3, 2))
        for src in (_bridge(a), _pool(a))
        for dst in (_bridge(b), _pool(b))
    ],
    # From outside, and a pool address spoofed on eth0: dropped.
    (_to(OUTSIDE, _bridge(1)), "DROP"),
    (_to(OUTSIDE, _pool(1)), "DROP"),
    (_to(("eth0", "172.23.17.9"), _pool(1)), "DROP"),
    (_to(("eth0", "172.23.17.9"), ("eth1", "198.51.100.1")), None),  # policy decides
    # An instance's own networks reach each other.
    (_to(_bridge(1), _bridge(1)), "ACCEPT"),
    (_to(_bridge(1), _pool(1)), "ACCEPT"),
    (_to(_pool(1), _bridge(1)), "ACCEPT"),
    (_to(_pool(1, 1), _pool(1, 2)), "ACCEPT"),
    # The outside world, and its replies.
    *[(_to(_bridge(n), OUTSIDE), "ACCEPT") for n in (1, 2, 3)],
    *[(_to(_pool(n), OUTSIDE), "ACCEPT") for n in (1, 2, 3)],
    *[(_to(OUTSIDE, _bridge(n), "ESTABLISHED"), "ACCEPT") for n in (1, 2, 3)],
    *[(_to(OUTSIDE, _pool(n), "RELATED"), "ACCEPT") for n in (1, 2, 3)],
    # Cloud metadata, or any link-local address: never, also not from the relaxed instance,
    # whatever source address a container forges (its instance's fixed address on a
    # user-defined network, another instance's, or none of the host's).
    *[
        (_to(src, dst), "DROP")
        for n in (1, 2, 3)
        for src in (_bridge(n), _pool(n))
        for dst in (METADATA, ECS_CREDENTIALS)
    ],
    *[
        (_to((_pool(n)[0], spoofed), dst), "DROP")
        for n in (1, 2, 3)
        for spoofed in (_bridge(n)[1], _bridge(n % 3 + 1)[1], "198.51.100.9")
        for dst in (METADATA, ECS_CREDENTIALS)
    ],
    (_to(("dy1_docker0", "198.51.100.9"), METADATA), "DROP"),
    # The relaxed instance takes new connections from the others (their own egress rules
    # accept them) and answers them.
    *[(_to(src, _bridge(3)), "ACCEPT") for src in (_bridge(1), _pool(2))],
    (_to(_pool(1), _pool(3)), "ACCEPT"),
    (_to(_bridge(3), _pool(1), "ESTABLISHED"), "ACCEPT"),
    (_to(OUTSIDE, _bridge(3)), None),
]


def _assert_verdicts(forward: FakeForward, expected: list[tuple[Packet, str | None]]) -> None:
    seen = [(packet, forward.verdict(packet), want or forward.policy) for packet, want in expected]
    wrong = [case for case in seen if case[1] != case[2]]
    assert wrong == [], "\n".join(map(str, [*wrong, "rules:", *forward.rules]))


@pytest.mark.parametrize("policy", ["ACCEPT", "DROP"])
def test_isolation_holds_however_instances_interleave(policy: str) -> None:
    instances = [_instance(1), _instance(2), _instance(3, networkIsolation=False)]
    rng = random.Random(13)
    for _ in range(200):
        # Created in parallel: each instance's commands in order, instances interleaved.
        queues = [_lines(inst) for inst in instances]
        forward = FakeForward(policy)
        while any(queues):
            forward.run(rng.choice([q for q in queues if q]).pop(0))
        _assert_verdicts(forward, EXPECTED)
        # One instance's rules drift away and come back (`up`: sweep, then add them again,
        # now below or above the others'): the verdicts stay the same.
        victim = rng.choice(instances)
        forward.sweep(victim.tag)
        for line in _lines(victim):
            forward.run(line)
        _assert_verdicts(forward, EXPECTED)


def test_removing_an_instance_leaves_the_others_working() -> None:
    forward = FakeForward("DROP")
    for n in (1, 2):
        for line in _lines(_instance(n)):
            forward.run(line)
    forward.sweep("dockyard:dy1_")
    assert all("dockyard:dy1_" not in r for r in forward.rules)
    _assert_verdicts(
        forward,
        [
            (_to(_bridge(2), OUTSIDE), "ACCEPT"),
            (_to(_pool(2), _bridge(2)), "ACCEPT"),
            (_to(OUTSIDE, _pool(2), "ESTABLISHED"), "ACCEPT"),
            (_to(OUTSIDE, _bridge(2)), "DROP"),
            (_to(_bridge(2), METADATA), "DROP"),
        ],
    )


@pytest.mark.parametrize("index", range(len(GUARDS_BEFORE_DROPS + ISOLATION_DROPS) + 2))
def test_every_filter_rule_is_needed(index: int) -> None:
    """Without any single filter rule of A, some expected verdict changes. (B lacks it too
    where B has the same rule: the link-local DROP on `br-+` is every instance's.)"""
    a, b = _instance(1), _instance(2)
    filter_rules = [r for r in a.rules() if r.table == "filter"]
    weakened = [r for r in a.rules() if r != filter_rules[index]]
    b_rules = [r for r in b.rules() if r.spec != filter_rules[index].spec]
    forward = FakeForward("DROP")
    for line in [
        *iptables.add_commands(weakened, a.tag).strip().splitlines(),
        *iptables.add_commands(b_rules, b.tag).strip().splitlines(),
    ]:
        forward.run(line)
    c = _instance(3)  # not installed here: leave out the packets about it
    about_c = [c.bridge_cidr.network, c.pool_base]
    relevant = [
        (p, v)
        for p, v in EXPECTED
        if not any(ipaddress.IPv4Address(a) in net for a in (p.src, p.dst) for net in about_c)
    ]
    with pytest.raises(AssertionError):
        _assert_verdicts(forward, relevant)


@pytest.mark.parametrize("name", ["install", "inspect", "stop", "remove", "claim", "files"])
def test_rendered_scripts_are_valid_bash(spec: render.InstanceSpec, name: str) -> None:
    scripts = {
        "install": [hostops._install_script(spec)],
        "inspect": [hostops._inspect_script(spec)],
        "stop": [hostops._stop_script(spec)],
        "remove": [hostops._remove_script(spec, ["br-0123456789ab"])],
        "claim": [
            network_claims.claim_script(
                spec,
                NetworkRequest(None, None, None, 24),
                guards=hostops.guards(),
                dir_guard=hostops._system_dir_patterns(),
            )
        ],
        "files": [f.content for f in render.instance_files(spec) if "/bin/" in f.path],
    }[name]
    for script in scripts:
        subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_directories_belong_to_root_and_only_root_and_lib_are_traversable(
    spec: render.InstanceSpec,
) -> None:
    script = hostops._install_script(spec)
    made = [line.split() for line in script.splitlines() if line.startswith("install -d ")]
    modes = {words[-1]: (words[3], words[5], words[7]) for words in made}
    assert modes == {
        "/dy1": ("root", "dy1_docker", "0751"),
        "/dy1/bin": ("root", "dy1_docker", "0750"),
        "/dy1/etc": ("root", "dy1_docker", "0750"),
        "/dy1/lib": ("root", "dy1_docker", "0751"),
        "/dy1/log": ("root", "dy1_docker", "0750"),
        "/dy1/run": ("root", "dy1_docker", "0750"),
    }
    assert script.index("no such user") < script.index("install -d ")


def test_install_script_checks_members_before_any_change(spec: render.InstanceSpec) -> None:
    script = hostops._install_script(spec)
    assert script.index("no such user") < script.index("groupadd")
    assert "gpasswd -M alice,bob dy1_docker" in script


def test_remove_script_never_leaves_the_root(spec: render.InstanceSpec) -> None:
    script = hostops._remove_script(spec, [])
    # The instance's rules go: the sweep is defined and called, for exactly its tag.
    assert "dockyard_sweep_rules() {" in script and "\ndockyard_sweep_rules\n" in script
    assert "--comment dockyard:dy1_ " in script
    assert 'rm -rf --one-file-system -- "$root"' in script
    assert "root=/dy1\n" in script
    # Shared containerd state is only touched per container id, never wholesale.
    assert "rm -rf /run/containerd\n" not in script
    assert 'rm -rf "/run/containerd/runc/$ns/$id"' in script


# A stand-in for ssh: records its arguments and the directory the local socket goes to.
FAKE_SSH = r"""#!/bin/sh
printf '%s\n' "$@" > "$SSH_ARGS"
local_end=$(printf '%s\n' "$@" | sed -n '/^-L$/{n;p;}' | cut -d: -f1)
stat -c '%a %u %F' "$(dirname "$local_end")" > "$SSH_DIR"
"""


def run_ssh_forward(text: str, tmp_path: Path) -> tuple[str, list[str], str]:
    """Paste the sshForward text into bash, ssh stubbed: (stdout, ssh's argv, its dir)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "ssh").write_text(FAKE_SSH)
    (bin_dir / "ssh").chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "TMPDIR": str(tmp_path),
        "SSH_ARGS": str(tmp_path / "args"),
        "SSH_DIR": str(tmp_path / "dir"),
    }
    out = subprocess.run(
        ["bash", "-c", text], env=env, capture_output=True, text=True, check=True
    ).stdout
    argv = (tmp_path / "args").read_text().splitlines()
    return out, argv, (tmp_path / "dir").read_text().strip()


def test_ssh_forward_binds_in_a_fresh_private_directory(
    spec: render.InstanceSpec, tmp_path: Path
) -> None:
    """Pasted as printed: ssh forwards into a new 0700 directory of the user's (never a
    fixed /tmp name another user could bind first or after), and the command prints the
    DOCKER_HOST line that goes with it."""
    text = render.ssh_forward(spec, {"host": "203.0.113.5", "port": 2222.0, "user": "ops"})
    out, argv, directory = run_ssh_forward(text, tmp_path)
    local_end, _, remote = argv[argv.index("-L") + 1].partition(":")
    assert out == f"export DOCKER_HOST=unix://{local_end}\n"
    assert remote == "/dy1/run/docker.sock"
    assert Path(local_end).name == "dy1_docker.sock"
    assert Path(local_end).parent.parent == tmp_path  # made by mktemp -d under $TMPDIR
    assert directory == f"700 {os.geteuid()} directory"
    assert argv[:4] == ["-N", "-o", "ExitOnForwardFailure=yes", "-L"]
    assert argv[-3:] == ["-p", "2222", "ops@203.0.113.5"]
    # Another paste, another directory: there is no name to take over in advance.
    again = run_ssh_forward(text, tmp_path)[1]
    assert again[again.index("-L") + 1] != argv[argv.index("-L") + 1]


def test_pool_bridges_are_found_by_address(spec: render.InstanceSpec) -> None:
    addrs = [
        {
            "ifname": "br-aaaaaaaaaaaa",
            "addr_info": [{"family": "inet", "local": "172.28.1.1", "prefixlen": 24}],
        },
        {
            "ifname": "br-bbbbbbbbbbbb",
            "addr_info": [{"family": "inet", "local": "172.29.1.1", "prefixlen": 24}],
        },
        {
            "ifname": "eth0",
            "addr_info": [{"family": "inet", "local": "172.28.9.9", "prefixlen": 24}],
        },
    ]
    assert hostops.pool_bridges(spec, addrs) == ["br-aaaaaaaaaaaa"]


def test_parse_state_and_problems(spec: render.InstanceSpec) -> None:
    healthy = {
        "unit": "1",
        "root": "1",
        "user": "1",
        "group": "1",
        "active": "active",
        "enabled": "enabled",
        "members": "alice,bob",
        "socket": "root:dy1_docker:660",
        "bridge": "1",
        "rules": "1",
        "runtime": "sysbox-runc",
        "files": "1",
    }
    # Recorded output: other lines around the fact are ignored.
    state = hostops.parse_state(f"noise\n{facts.line('instance', healthy)}\nmore\n")
    assert state.exists and state.members == ("alice", "bob")
    assert state.problems(spec) == []
    drifted = hostops.parse_state(
        facts.line("instance", healthy | {"rules": "0", "active": "inactive"})
    )
    assert drifted.problems(spec) == [
        "dy1_docker.service is inactive",
        "iptables rules tagged dockyard:dy1_ are incomplete",
    ]
    gone = {"unit": "0", "root": "0", "user": "0", "group": "0"}
    assert not hostops.parse_state(facts.line("instance", gone)).exists
    with pytest.raises(HostOutputError, match="no 'instance' fact"):
        hostops.parse_state("unit=1\nroot=1\n")
