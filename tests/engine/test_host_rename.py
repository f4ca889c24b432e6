"""Renaming a host in the stack file (same machine) through the real engine.

Before owner markers, the new resources adopted the running instance and the old ones then
deleted it: `up` succeeded and the machine was left with nothing. Now Pulumi creates the
renamed host's resources first, the instance create is refused naming the owner it would
take over, the run stops before any delete, and everything keeps running. Renaming back
converges without touching the instance; destroy leaves the machine clean.

The machine is a QEMU clone used as an `existing` host (address, port and pinned host key
in the stack file, the login key as the secret `dockyard:sshPrivateKey`), cloned from the
template on which this stack's SysboxHost (`ext-a-sysbox`) is installed already: the first
`up` converges it in seconds instead of uploading Docker and sysbox (the install itself is
tested in tests/hosts and by the lifecycle). Hence the fixed stack name, part of its owner.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.transport import close_all
from dockyard_resources.vm import runner
from tests.engine.dockyard_stack import DockyardStack, copy_project
from tests.fixtures.pulumi_cli import PulumiCli
from tests.fixtures.sysbox_template import sysbox_host_props, sysbox_layer
from tests.fixtures.vm import TestHost, booted_vm
from tests.hosts.checks import Service, SshShell, dockyard_traces
from tools.testbed.artifacts import TestbedArtifacts

pytestmark = [pytest.mark.engine, pytest.mark.vm, pytest.mark.timeout(3600)]

# The module's backend is its own (pulumi_backend): a fixed name cannot meet another stack.
STACK_NAME = "rename"
FIRST_HOST = "ext-a"


@pytest.fixture(scope="module")
def machine(testbed_artifacts: TestbedArtifacts) -> Iterator[TestHost]:
    props = sysbox_host_props(
        testbed_artifacts.docker,
        testbed_artifacts.sysbox,
        owner=f"dockyard/{STACK_NAME}/{FIRST_HOST}-sysbox",
        host_name=FIRST_HOST,
    )
    with booted_vm(layer=sysbox_layer(props)) as booted:
        yield booted


def host_config(name: str, machine: TestHost, artifacts: TestbedArtifacts) -> dict[str, Any]:
    def artifact(version: str, path: Path) -> dict[str, str]:
        return {"version": version, "url": str(path), "sha256File": f"{path}.sha256"}

    return {
        "name": name,
        "provision": {
            "kind": "existing",
            "address": runner.SSH_HOST,
            "port": machine.port,
            "user": runner.ROOT_USER,
            "hostKey": machine.host_key,
        },
        "docker": artifact("29.2.1", artifacts.docker.path),
        "sysbox": artifact("0.6.7", artifacts.sysbox.path),
        "artifacts": "upload",
        "instances": [{"prefix": "dy1_", "root": "/dy1"}],
    }


@pytest.fixture(scope="module")
def stack(
    pulumi_backend: PulumiCli,
    machine: TestHost,
    testbed_artifacts: TestbedArtifacts,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DockyardStack]:
    # The test bed links its choice to these fixed paths (what the stack file names).
    work = copy_project(tmp_path_factory.mktemp("host-rename") / "project")
    deployed = DockyardStack(pulumi_backend, work, STACK_NAME)
    deployed.init()
    try:
        pulumi_backend.run(
            "config",
            "set",
            "--secret",
            "dockyard:sshPrivateKey",
            "--stack",
            deployed.name,
            cwd=work,
            input_text=machine.vm.private_key,  # read from stdin: never on a command line
        )
        deployed.set_hosts([host_config(FIRST_HOST, machine, testbed_artifacts)])
        yield deployed
    finally:
        deployed.destroy(check=False)
        deployed.pulumi("stack", "rm", "--yes", "--force", check=False)
        close_all()


def test_rename_is_refused_and_everything_keeps_running(
    stack: DockyardStack, machine: TestHost, testbed_artifacts: TestbedArtifacts
) -> None:
    sh = SshShell(machine.target)
    first = stack.up()
    assert first.change_summary.get("create", 0) >= 3, first.describe()
    assert Service.of(sh, "dy1_docker.service").active
    engine_id = sh.out("/dy1/bin/docker info --format '{{.ID}}'")

    stack.set_hosts([host_config("ext-b", machine, testbed_artifacts)])
    renamed = stack.up(check=False)
    assert renamed.returncode != 0, renamed.describe()
    owner = f"dockyard/{stack.name}/ext-a-dy1_"
    assert f"instance dy1_ on this host belongs to {owner}" in renamed.diagnostics(), (
        renamed.describe()
    )
    # An expected refusal reads as Dockyard's message, not as a Python traceback.
    assert "Traceback" not in renamed.diagnostics(), renamed.describe()
    assert renamed.steps("delete") == [], "the refused run must stop before any delete"
    # The same daemon (same engine id) kept running, with its data.
    assert Service.of(sh, "dy1_docker.service").active
    assert sh.out("/dy1/bin/docker info --format '{{.ID}}'") == engine_id
    assert sh.out("cat /dy1/.dockyard-instance").splitlines()[0] == f"owner={owner}"

    stack.set_hosts([host_config(FIRST_HOST, machine, testbed_artifacts)])
    back = stack.up()
    assert "update" not in back.change_summary, back.describe()
    assert sh.out("/dy1/bin/docker info --format '{{.ID}}'") == engine_id
    stack.pulumi("preview", "--expect-no-changes")

    gone = stack.destroy()
    assert gone.returncode == 0, gone.describe()
    assert dockyard_traces(sh, ["dy1_"], ["/dy1"]) == []
