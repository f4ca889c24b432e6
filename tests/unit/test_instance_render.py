"""Rendering of one Dockyard instance: daemon.json, containerd config, unit, scripts, rules."""

from __future__ import annotations

import json
import shlex
import subprocess
import tomllib
from typing import Any

import pytest

from dockyard_resources.hostops import instance as hostops
from dockyard_resources.render import instance as render
from dockyard_resources.render import iptables

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
    assert "ExecStartPost=/dy1/bin/dockyard-dind-watcher start" in lines
    assert "ExecStopPost=/dy1/bin/dockyard-dind-watcher stop" in lines
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
    for rule in rules:
        args = rule.args(spec.tag)
        assert args[args.index("--comment") + 1] == "dockyard:dy1_"
        # Every rule names this instance's bridge or pool, nothing broader.
        assert "dy1_docker0" in args or "172.28.0.0/16" in args or "172.22.147.0/25" in args
        assert "DOCKER" not in " ".join(args)
    masquerade = [r.spec for r in rules if r.spec[-1] == "MASQUERADE"]
    assert ("-s", "172.22.147.0/25", "!", "-o", "dy1_docker0", "-j", "MASQUERADE") in masquerade
    assert ("-s", "172.28.0.0/16", "!", "-d", "172.28.0.0/16", "-j", "MASQUERADE") in masquerade


def test_rule_insertion_is_check_then_insert(spec: render.InstanceSpec) -> None:
    text = iptables.add_commands(spec.rules(), spec.tag)
    for line in text.strip().splitlines():
        check, insert = line.split(" 2>/dev/null || ")
        assert check.replace(" -C ", " -I ", 1) == insert


def test_sweep_deletes_only_exactly_tagged_rules() -> None:
    """Run the sweep with a fake iptables: dy1_ rules go, dy10_ and Docker's stay."""
    listing = {
        "filter": [
            "-P FORWARD ACCEPT",
            "-A FORWARD -j DOCKER-USER",
            "-A FORWARD -i dy1_docker0 -o dy1_docker0 -m comment --comment dockyard:dy1_ -j ACCEPT",
            '-A FORWARD -s 172.28.0.0/16 -m comment --comment "dockyard:dy1_" -j ACCEPT',
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
        "filter -D FORWARD -i dy1_docker0 -o dy1_docker0"
        " -m comment --comment dockyard:dy1_ -j ACCEPT",
        "filter -D FORWARD -s 172.28.0.0/16 -m comment --comment dockyard:dy1_ -j ACCEPT",
        "nat -D POSTROUTING -s 172.22.147.0/25 -m comment --comment dockyard:dy1_ -j MASQUERADE",
    ]


@pytest.mark.parametrize("name", ["install", "inspect", "stop", "remove", "probe", "files"])
def test_rendered_scripts_are_valid_bash(spec: render.InstanceSpec, name: str) -> None:
    scripts = {
        "install": [hostops._install_script(spec)],
        "inspect": [hostops._inspect_script(spec)],
        "stop": [hostops._stop_script(spec)],
        "remove": [hostops._remove_script(spec, ["br-0123456789ab"])],
        "probe": [hostops._probe_script(spec)],
        "files": [f.content for f in render.instance_files(spec) if "/bin/" in f.path],
    }[name]
    for script in scripts:
        subprocess.run(["bash", "-n"], input=script, text=True, check=True)


def test_install_script_checks_members_before_any_change(spec: render.InstanceSpec) -> None:
    script = hostops._install_script(spec)
    assert script.index("no such user") < script.index("groupadd")
    assert "gpasswd -M alice,bob dy1_docker" in script


def test_remove_script_never_leaves_the_root(spec: render.InstanceSpec) -> None:
    script = hostops._remove_script(spec, [])
    assert 'rm -rf --one-file-system -- "$root"' in script
    assert "root=/dy1\n" in script
    # Shared containerd state is only touched per container id, never wholesale.
    assert "rm -rf /run/containerd\n" not in script
    assert 'rm -rf "/run/containerd/runc/$ns/$id"' in script


def test_ssh_forward(spec: render.InstanceSpec) -> None:
    text = render.ssh_forward(spec, {"host": "203.0.113.5", "port": 2222.0, "user": "ops"})
    command, _, hint = text.partition("  # then: ")
    assert shlex.split(command) == [
        "ssh",
        "-N",
        "-o",
        "ExitOnForwardFailure=yes",
        "-o",
        "StreamLocalBindUnlink=yes",
        "-L",
        "/tmp/dy1_docker.sock:/dy1/run/docker.sock",
        "-p",
        "2222",
        "ops@203.0.113.5",
    ]
    assert hint == "export DOCKER_HOST=unix:///tmp/dy1_docker.sock"


def _host(routes: list[dict[str, Any]], addrs: list[dict[str, Any]], **kw: Any) -> Any:
    return hostops.HostNetworks(
        routes=routes,
        addrs=addrs,
        own_devices=frozenset(kw.get("own", ())),
        others=kw.get("others", []),
    )


def test_conflicts_name_the_overlapping_route(spec: render.InstanceSpec) -> None:
    routes = [
        {"dst": "default", "gateway": "10.0.2.2", "dev": "eth0"},
        {"dst": "10.0.2.0/24", "dev": "eth0"},
        {"dst": "172.22.0.0/16", "dev": "br-other"},
    ]
    problems = hostops.find_conflicts(spec, _host(routes, []))
    assert problems == [
        "bridgeCidr 172.22.147.0/24 overlaps the host route 172.22.0.0/16 dev br-other"
    ]


def test_conflicts_ignore_own_bridge_but_not_foreign_addresses(spec: render.InstanceSpec) -> None:
    addrs = [
        {
            "ifname": "dy1_docker0",
            "addr_info": [{"family": "inet", "local": "172.22.147.1", "prefixlen": 24}],
        },
        {
            "ifname": "docker0",
            "addr_info": [{"family": "inet", "local": "172.28.5.1", "prefixlen": 24}],
        },
    ]
    problems = hostops.find_conflicts(spec, _host([], addrs, own={"dy1_docker0"}))
    assert problems == ["poolBase 172.28.0.0/16 overlaps address 172.28.5.1/24 on docker0"]


def test_conflicts_with_instances_made_elsewhere(spec: render.InstanceSpec) -> None:
    others = [
        {"prefix": "dy1_", "root": "/dy1", "manifest": None},  # ourselves on a re-run
        {
            "prefix": "zz_",
            "root": "/zz",
            "manifest": {
                "networks": {"bridgeNetwork": "172.30.0.0/24", "poolBase": "172.28.128.0/17"}
            },
        },
        {"prefix": "yy_", "root": "/dy1", "manifest": None},
    ]
    problems = hostops.find_conflicts(spec, _host([], [], others=others))
    assert problems == [
        "poolBase 172.28.0.0/16 overlaps poolBase 172.28.128.0/17"
        " of Dockyard instance zz_ (root /zz)",
        "root /dy1 is already used on this host by instance yy_",
    ]


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
    healthy = "\n".join(
        [
            "unit=1",
            "root=1",
            "user=1",
            "group=1",
            "active=active",
            "enabled=enabled",
            "members=alice,bob",
            "socket=root:dy1_docker:660",
            "bridge=1",
            "rules=1",
            "runtime=sysbox-runc",
            "files=1",
        ]
    )
    state = hostops.parse_state(healthy)
    assert state.exists and state.members == ("alice", "bob")
    assert state.problems(spec) == []
    drifted = hostops.parse_state(
        healthy.replace("rules=1", "rules=0").replace("active=active", "active=inactive")
    )
    assert drifted.problems(spec) == [
        "dy1_docker.service is inactive",
        "iptables rules tagged dockyard:dy1_ are incomplete",
    ]
    assert not hostops.parse_state("unit=0\nroot=0\nuser=0\ngroup=0\n").exists
