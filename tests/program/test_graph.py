"""The resource graph of the program: types, names, parents, dependencies and inputs."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from dockyard_resources.config import validate_hosts
from tests.program.harness import (
    HOST_TYPE,
    PROJECT,
    SEEN_HOST_KEY,
    STACK,
    VM_HOST_KEY,
    VM_PRIVATE_KEY,
    ProgramRun,
    new_ed25519_key,
    run_program,
)

SYSBOX_TYPE = "pulumi-python:dynamic/dockyard:SysboxHost"
HOST_KEY = new_ed25519_key()[1]


def existing_host(name: str, address: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provision": {"kind": "existing", "address": address, "user": "admin", **extra},
        "instances": [
            {"prefix": "dy1_", "root": "/dy1"},
            {"prefix": "dy2_", "root": "/dy2", "members": ["ci"]},
        ],
    }


def qemu_host(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "provision": {"kind": "qemu", "memoryMb": 3072, "cpus": 2, "diskGb": 12},
        "instances": [{"prefix": "q1_", "root": "/q1"}],
    }


def children_of(run: ProgramRun, component: str) -> set[str]:
    parent = run.urn(component)
    return {r.name for r in run.registrations if r.parent == parent}


def test_one_host_groups_sysbox_and_instances_under_its_component() -> None:
    run = run_program([existing_host("build-1", "192.0.2.10")])

    component = run.named("build-1")
    assert component.type == HOST_TYPE
    assert component.parent.endswith("::pulumi:pulumi:Stack::dockyard-test")
    assert children_of(run, "build-1") == {
        "build-1-sysbox",
        "build-1-dy1_",
        "build-1-dy2_",
    }
    assert run.named("build-1-sysbox").type == SYSBOX_TYPE
    assert [r.name for r in run.dynamic("DockyardInstance")] == ["build-1-dy1_", "build-1-dy2_"]
    # Every resource is named in the preview, not `pulumi-python:dynamic:Resource`.
    assert run.named("build-1-dy1_").type == "pulumi-python:dynamic/dockyard:DockyardInstance"
    # An existing machine needs nothing provisioned: no VM, no cloud resources.
    assert len(run.registrations) == 4


def test_instances_depend_on_the_sysbox_host_and_not_on_each_other() -> None:
    run = run_program([existing_host("build-1", "192.0.2.10")])

    sysbox = run.urn("build-1-sysbox")
    one, two = run.named("build-1-dy1_"), run.named("build-1-dy2_")
    assert sysbox in one.dependencies
    assert sysbox in two.dependencies
    assert two.urn not in one.dependencies
    assert one.urn not in two.dependencies
    assert run.named("build-1-sysbox").dependencies == []


def test_sysbox_host_inputs_come_from_the_validated_spec() -> None:
    raw = [existing_host("build-1", "192.0.2.10", port=2200, hostKey=HOST_KEY)]
    raw[0]["artifacts"] = "upload"
    raw[0]["allowSysboxRestart"] = True
    run = run_program(raw)
    (spec,) = validate_hosts(raw)

    sysbox = run.named("build-1-sysbox")
    assert sysbox.plain("connection") == {
        "host": "192.0.2.10",
        "port": 2200,
        "user": "admin",
        "hostKey": HOST_KEY,
        "connectDeadline": 30,
    }
    assert sysbox.plain("hostName") == "build-1"
    assert sysbox.plain("owner") == f"{PROJECT}/{STACK}/build-1-sysbox"
    assert sysbox.plain("docker") == spec.artifact_props("docker")
    assert sysbox.plain("sysbox") == spec.artifact_props("sysbox")
    assert sysbox.plain("docker")["version"] == "29.2.1"
    assert sysbox.plain("artifactsMode") == "upload"
    assert sysbox.plain("allowSysboxRestart") is True


def test_instance_inputs_carry_written_networks_and_the_pinned_connection() -> None:
    raw = [existing_host("build-1", "192.0.2.10")]
    raw[0]["instances"][1]["poolBase"] = "10.20.0.0/16"
    run = run_program(raw)
    (spec,) = validate_hosts(raw)

    for instance in spec.instances:
        resource = run.named(f"build-1-{instance.prefix}")
        inputs = resource.plain
        for key, value in instance.props().items():
            # Networks the stack file leaves out are the host's to choose: no input.
            wanted = None if key in instance.allocated else value
            assert inputs(key) == wanted, key
        assert inputs("hostName") == "build-1"
        # Directories and the host key come from the SysboxHost's outputs.
        assert inputs("dockerDir") == "/usr/local/lib/dockyard/docker-29.2.1"
        assert inputs("sysboxDir") == "/usr/local/lib/dockyard/sysbox-0.6.7"
        assert inputs("connection") == {
            "host": "192.0.2.10",
            "port": 22,
            "user": "admin",
            "hostKey": SEEN_HOST_KEY,
            "connectDeadline": 30,
        }
        assert inputs("owner") == f"{PROJECT}/{STACK}/build-1-{instance.prefix}"


def test_several_hosts_are_independent_and_each_has_its_own_tree() -> None:
    run = run_program([existing_host("build-1", "192.0.2.10"), qemu_host("local-1")])

    assert [r.name for r in run.of_type(HOST_TYPE)] == ["build-1", "local-1"]
    assert children_of(run, "local-1") == {
        "local-1-vm",
        "local-1-sysbox",
        "local-1-q1_",
    }
    build_urns = {r.urn for r in run.registrations if r.name.startswith("build-1")}
    local_urns = {r.urn for r in run.registrations if r.name.startswith("local-1")}
    for registration in run.registrations:
        crossing = build_urns if registration.name.startswith("local-1") else local_urns
        assert not crossing & set(registration.dependencies), registration.name


def test_qemu_host_boots_a_local_vm_before_the_sysbox_host() -> None:
    run = run_program([qemu_host("local-1")])

    (vm,) = run.dynamic("LocalVm")
    assert vm.name == "local-1-vm"
    assert vm.plain("vmName") == f"{STACK}-local-1"  # per stack: stacks never share a VM
    assert (vm.plain("memoryMb"), vm.plain("cpus"), vm.plain("diskGb")) == (3072, 2, 12)
    assert vm.plain("suite") == "trixie"
    sysbox = run.named("local-1-sysbox")
    assert vm.urn in sysbox.dependencies
    # The VM's outputs are the connection, its host key pinned from the start.
    assert sysbox.plain("connection") == {
        "host": "127.0.0.1",
        "port": 2222,
        "user": "root",
        "privateKey": VM_PRIVATE_KEY,
        "hostKey": VM_HOST_KEY,
    }


def test_network_isolation_reaches_the_instance_only_when_relaxed() -> None:
    raw = [existing_host("build-1", "192.0.2.10")]
    raw[0]["instances"][1]["networkIsolation"] = False
    run = run_program(raw)

    # The default (true) needs no input: the provider's check and render treat absent as
    # isolated, so instances made before the option existed keep their inputs.
    assert "networkIsolation" not in run.named("build-1-dy1_").inputs
    assert run.named("build-1-dy2_").plain("networkIsolation") is False


def test_network_isolation_must_be_a_real_boolean() -> None:
    raw = [existing_host("build-1", "192.0.2.10")]
    raw[0]["instances"][0]["networkIsolation"] = "no"
    with pytest.raises(pulumi.RunError, match=r"hosts\[0\]\.instances\[0\]\.networkIsolation"):
        run_program(raw)


def test_protect_and_the_data_loss_opt_in_reach_only_the_instance_that_asks() -> None:
    raw = [existing_host("build-1", "192.0.2.10")]
    raw[0]["instances"][0]["protect"] = True
    raw[0]["instances"][1]["allowDataLoss"] = True
    run = run_program(raw)
    first, second = run.named("build-1-dy1_"), run.named("build-1-dy2_")
    assert first.protect is True and second.protect is False
    assert "allowDataLoss" not in first.inputs or first.plain("allowDataLoss") is None
    assert second.plain("allowDataLoss") is True
    assert run.named("build-1-sysbox").protect is False


@pytest.mark.parametrize("key", ["protect", "allowDataLoss"])
def test_protect_and_the_opt_in_must_be_real_booleans(key: str) -> None:
    raw = [existing_host("build-1", "192.0.2.10")]
    raw[0]["instances"][1][key] = "yes"
    with pytest.raises(pulumi.RunError, match=rf"hosts\[0\]\.instances\[1\]\.{key}"):
        run_program(raw)
