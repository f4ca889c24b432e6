"""Day-2 commands without a host: status parsing and hints, log scripts, parked instances."""

from __future__ import annotations

import io
import json
import subprocess
from typing import Any

import pytest
from rich.console import Console

from dockyard_resources.cli import main
from dockyard_resources.config import validate_hosts
from dockyard_resources.hostops import instance as hostops
from dockyard_resources.operate import logs, status, tunnel
from dockyard_resources.operate.deployed import Host, Instance, UnknownInstance
from dockyard_resources.providers.instance import DockyardInstanceProvider, outputs
from dockyard_resources.render import facts
from dockyard_resources.render.instance import InstanceSpec
from dockyard_resources.transport import SshTarget
from tests.unit.config_builders import host, instance


def make_instance(prefix: str = "dy1_", root: str = "/dy1") -> Instance:
    return Instance(
        host="build-1",
        prefix=prefix,
        root=root,
        docker_host=f"unix://{root}/run/docker.sock",
        socket_path=f"{root}/run/docker.sock",
        group=f"{prefix}docker",
        service_name=f"{prefix}docker.service",
        bridge_name=f"{prefix}docker0",
        networks={"bridge": "172.16.0.1/24", "poolBase": "172.18.0.0/19", "poolSize": 24},
        urn=f"urn:x::build-1-{prefix}",
    )


def make_host(*instances: Instance) -> Host:
    return Host(
        name="build-1",
        provision="existing",
        docker_version="29.2.1",
        sysbox_version="0.6.7",
        target=SshTarget(host="192.0.2.10", port=22, user="root"),
        sysbox_urn="urn:x::build-1-sysbox",
        instances=list(instances),
    )


def recorded(**instances: dict[str, Any]) -> str:
    lines = [{"kind": "host", "sysboxService": "active", "sysboxVersion": "0.6.7", "kernel": "6"}]
    for prefix, seen in instances.items():
        lines.append({"kind": "instance", "prefix": prefix, **seen})
    return "\n".join(json.dumps(line) for line in lines) + "\n"


HEALTHY = {
    "active": "active",
    "enabled": "enabled",
    "socket": "root:dy1_docker:660",
    "dockerVersion": "29.2.1",
    "running": "2",
    "containers": "3",
    "forwardRules": "12",
}


def test_status_script_is_valid_bash_and_shellcheck_clean() -> None:
    subprocess.run(["bash", "-n"], input=status.status_script(), text=True, check=True)
    subprocess.run(
        ["shellcheck", "-s", "bash", "-S", "warning", "-"],
        input=status.status_script(),
        text=True,
        check=True,
    )


def test_a_healthy_instance_has_no_hints_and_counts_its_containers() -> None:
    parsed = status.parse(make_host(make_instance()), recorded(dy1_=HEALTHY))
    assert parsed.reachable and parsed.sysbox_service == "active"
    (inst,) = parsed.instances
    assert (inst.running, inst.containers, inst.hints) == (2, 3, [])
    assert inst.pool == "172.18.0.0/19/24"


@pytest.mark.parametrize(
    ("changes", "hint"),
    [
        ({"active": "failed"}, "service failed"),
        ({"active": "inactive", "enabled": "disabled"}, "disabled"),
        ({"socket": "root:root:666"}, "socket root:root:666 (want root:dy1_docker:660)"),
        ({"dockerVersion": "26.1.5"}, "runs Docker 26.1.5, host has 29.2.1"),
        ({"dockerVersion": ""}, "Docker API does not answer"),
        ({"forwardRules": "0"}, "no iptables rules"),
    ],
)
def test_what_looks_wrong_is_named(changes: dict[str, str], hint: str) -> None:
    parsed = status.parse(make_host(make_instance()), recorded(dy1_={**HEALTHY, **changes}))
    assert hint in parsed.instances[0].hints


def test_an_instance_the_host_does_not_report_is_missing() -> None:
    parsed = status.parse(make_host(make_instance()), recorded())
    assert parsed.instances[0].hints == ["service missing"]


def test_table_and_json_show_unreachable_hosts_with_the_others() -> None:
    good = status.parse(make_host(make_instance()), recorded(dy1_=HEALTHY))
    down = status.HostStatus("build-2", "192.0.2.11:22", False, "connection refused")
    text = io.StringIO()
    Console(file=text, width=200).print(status.table("prod", [good, down]))
    assert "unreachable: connection refused" in text.getvalue()
    assert "dy1_" in text.getvalue() and "2/3 running" in text.getvalue()
    data = json.loads(status.as_json([good, down]))
    assert [h["reachable"] for h in data] == [True, False]
    assert data[0]["instances"][0]["docker_version"] == "29.2.1"


def test_logs_scripts_read_journal_and_daemon_logs() -> None:
    inst = make_instance()
    script = logs.logs_script(inst, 20, follow=False)
    assert "journalctl --no-pager -o short-iso -n 20 -u dy1_docker.service" in script
    assert "tail -n 20 /dy1/log/dockerd.log" in script
    assert "tail -n 20 /dy1/log/containerd.log" in script
    follow = logs.logs_script(inst, 5, follow=True)
    assert " -f " in follow and "tail -n 5 -F /dy1/log/dockerd.log" in follow
    for text in (script, follow):
        subprocess.run(["bash", "-n"], input=text, text=True, check=True)


def test_tunnel_dials_the_instances_socket_as_root() -> None:
    inst = make_instance()
    assert tunnel.dial_command(inst, "root") == "/dy1/bin/docker system dial-stdio"
    assert tunnel.dial_command(inst, "ops").startswith("sudo -n -- /dy1/bin/docker")


def test_unknown_instance_names_what_exists() -> None:
    with pytest.raises(UnknownInstance, match=r"has no instance 'dy9_' \(instances: dy1_\)"):
        make_host(make_instance()).instance("dy9_")


def test_commands_say_what_is_missing_without_a_traceback(capsys: Any) -> None:
    assert main(["status", "--stack", "nosuch", "--project-dir", "/nonexistent"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "holds no Pulumi.yaml" in err
    assert "Traceback" not in err


# --- parking an instance (enabled: false) ----------------------------------------------


PROPS: dict[str, Any] = {
    "prefix": "dy1_",
    "root": "/dy1",
    "dockerDir": "/usr/local/lib/dockyard/docker-29.2.1",
    "sysboxDir": "/usr/local/lib/dockyard/sysbox-0.6.7",
    "bridgeCidr": "172.22.1.1/24",
    "fixedCidr": "172.22.1.0/24",
    "poolBase": "172.23.0.0/20",
    "poolSize": 24,
    "owner": "dockyard/prod/build-1-dy1_",
}


def test_a_parked_instance_is_installed_but_disabled() -> None:
    spec = InstanceSpec.from_props(PROPS)
    parked = hostops._install_script(spec, enabled=False)
    assert "systemctl disable -q --no-reload dy1_docker.service" in parked
    assert "systemctl enable -q" not in parked
    running = hostops._install_script(spec, enabled=True)
    assert "systemctl enable -q --no-reload dy1_docker.service" in running
    assert "systemctl stop dy1_docker.service" in hostops._park_script(spec)


def test_a_parked_instance_is_healthy_when_stopped_and_disabled() -> None:
    spec = InstanceSpec.from_props(PROPS)
    present = {"unit": "1", "root": "1", "user": "1", "group": "1", "bridge": "1", "files": "1"}
    stopped = hostops.parse_state(
        facts.line("instance", present | {"active": "inactive", "enabled": "disabled"})
    )
    assert stopped.problems(spec, enabled=False) == []
    assert "dy1_docker.service is inactive" in stopped.problems(spec, enabled=True)
    running = hostops.parse_state(
        facts.line("instance", present | {"active": "active", "enabled": "enabled"})
    )
    assert running.problems(spec, enabled=False) == [
        "dy1_docker.service runs but enabled is false",
        "dy1_docker.service starts at boot",
    ]


def test_enabled_false_flows_from_the_stack_file_to_an_update() -> None:
    [spec] = validate_hosts([host(instances=[instance(enabled=False)])])
    assert spec.instances[0].props()["enabled"] is False
    [default] = validate_hosts([host(instances=[instance()])])
    assert "enabled" not in default.instances[0].props()
    provider = DockyardInstanceProvider()
    olds = outputs(
        {**PROPS, "connection": {"host": "192.0.2.10"}, "hostName": "build-1", "members": []}
    )
    result = provider.diff("id", olds, {**olds, "enabled": False})
    assert result.changes is True and result.replaces == []
