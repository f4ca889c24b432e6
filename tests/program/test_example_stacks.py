"""The shipped stack files build a complete graph through the program."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard_resources.config import load_stack_file
from tests.program.harness import HOST_TYPE, run_program

STACKS = Path(__file__).resolve().parents[2] / "stacks"


@pytest.mark.parametrize(
    ("stack_file", "provision_types"),
    [
        ("Pulumi.hcloud.example.yaml", {"hcloud:index/server:Server", "command:remote:Command"}),
        ("Pulumi.aws.example.yaml", {"aws:ec2/instance:Instance", "command:remote:Command"}),
        ("Pulumi.local.yaml", {"pulumi-python:dynamic/dockyard:LocalVm"}),
    ],
)
def test_stack_file_builds_hosts_sysbox_and_instances(
    stack_file: str, provision_types: set[str]
) -> None:
    config = load_stack_file(STACKS / stack_file)
    raw_hosts = config["dockyard:hosts"]

    run = run_program(raw_hosts)

    assert [r.name for r in run.of_type(HOST_TYPE)] == [h["name"] for h in raw_hosts]
    assert provision_types <= {r.type for r in run.registrations}
    assert len(run.dynamic("SysboxHost")) == len(raw_hosts)
    for host in raw_hosts:
        prefixes = [i["prefix"] for i in host["instances"]]
        assert set(run.outputs[host["name"]]["instances"]) == set(prefixes)
