"""A QEMU clone as an `existing` host of a Dockyard stack: its stack-file entry (address,
port and pinned host key; the test bed's artifacts, uploaded) and its login key, stored as
the secret `dockyard:sshPrivateKey` (read from stdin: never on a command line)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dockyard_resources.vm import runner
from tests.engine.dockyard_stack import DockyardStack
from tests.fixtures.vm import TestHost
from tools.testbed.artifacts import TestbedArtifacts


def host_config(
    name: str,
    machine: TestHost,
    artifacts: TestbedArtifacts,
    instances: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The stack file's entry for `machine` named `name` (one instance dy1_ by default)."""
    provision = {
        "kind": "existing",
        "address": runner.SSH_HOST,
        "port": machine.port,
        "user": runner.ROOT_USER,
        "hostKey": machine.host_key,
    }
    return stack_host(name, provision, artifacts, instances)


def stack_host(
    name: str,
    provision: dict[str, Any],
    artifacts: TestbedArtifacts,
    instances: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A stack file's host entry that uploads the test bed's artifacts."""

    def artifact(version: str, path: Path) -> dict[str, str]:
        return {"version": version, "url": str(path), "sha256File": f"{path}.sha256"}

    return {
        "name": name,
        "provision": provision,
        "docker": artifact("29.2.1", artifacts.docker.path),
        "sysbox": artifact("0.6.7", artifacts.sysbox.path),
        "artifacts": "upload",
        "instances": [{"prefix": "dy1_", "root": "/dy1"}] if instances is None else instances,
    }


def set_login_key(stack: DockyardStack, machine: TestHost) -> None:
    stack.cli.run(
        "config",
        "set",
        "--secret",
        "dockyard:sshPrivateKey",
        "--stack",
        stack.name,
        cwd=stack.work_dir,
        input_text=machine.vm.private_key,
    )
