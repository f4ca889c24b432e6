"""The "then edit it" step of docs/plain-pulumi.md, done for the QEMU test host.

The doc copies `stacks/Pulumi.existing.example.yaml` and tells the user to edit it. The test
keeps the template's host name and its first instance (`my-server`, `ci_` at
`/srv-dockyard/ci`) and changes only what differs on the test host: its address (the VM's
forwarded SSH port), the pinned host key, root as the user, and the test bed's Docker and
sysbox files uploaded from this machine (the VM has no internet). The template's
`members` (a `gitlab-runner` user the VM does not have) and its second instance are left out.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import yaml

from dockyard_resources.operate.deployed import unwrap_secrets
from tests.engine.existing_host import host_config
from tests.fixtures.vm import TestHost
from tests.hosts.checks import SshShell, dockyard_traces
from tools.testbed.artifacts import TestbedArtifacts
from tools.testimage import busybox_image

HOST = "my-server"
PREFIX = "ci_"
ROOT = "/srv-dockyard/ci"


def edit_for_test_host(stack_file: Path, host: TestHost, artifacts: TestbedArtifacts) -> None:
    document = yaml.safe_load(stack_file.read_text())
    template = document["config"]["dockyard:hosts"][0]
    assert template["name"] == HOST, f"the template's host is {template['name']!r}, not {HOST}"
    first = {k: v for k, v in template["instances"][0].items() if k != "members"}
    assert (first["prefix"], first["root"]) == (PREFIX, ROOT), first

    document["config"]["dockyard:hosts"] = [host_config(HOST, host, artifacts, [first])]
    stack_file.write_text(yaml.safe_dump(document, sort_keys=False))


def give_key(home: Path, host: TestHost) -> Path:
    """The user's `~/.ssh/id_ed25519`: the key the test host authorizes."""
    key = home / ".ssh" / "id_ed25519"
    key.write_text(host.vm.private_key)
    key.chmod(0o600)
    return key


def busybox_archive(host: TestHost, dest: Path) -> Path:
    """An image tagged `busybox` from the host's static busybox, as a `docker load` archive:
    what `docker run busybox` would pull, for a host without internet."""
    encoded = SshShell(host.target).out("base64 -w0 /bin/busybox")
    dest.write_bytes(busybox_image.image_archive(base64.b64decode(encoded), "busybox:latest"))
    return dest


def traces(host: TestHost) -> list[str]:
    return dockyard_traces(SshShell(host.target), [PREFIX], [ROOT])


def same_key(one: str | None, other: str) -> bool:
    """Compared by digest (a failed assertion must never print a key); Pulumi keeps a
    config value without its trailing newline."""
    if one is None:
        return False
    digest = [hashlib.sha256(text.strip().encode()).digest() for text in (one, other)]
    return digest[0] == digest[1]


def connection_key(exported: dict[str, Any]) -> str | None:
    """The private key in the state's SysboxHost connection (an export with secrets shown)."""
    for resource in (exported.get("deployment") or {}).get("resources") or []:
        if str(resource.get("urn", "")).endswith(f"::{HOST}-sysbox"):
            connection = unwrap_secrets(resource.get("inputs") or {}).get("connection") or {}
            key = connection.get("privateKey")
            return str(key) if key else None
    raise AssertionError(f"no {HOST}-sysbox resource in the state")
