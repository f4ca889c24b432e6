"""Secrets stay secret; the `hosts` stack output has the documented shape."""

from __future__ import annotations

import json

from tests.program.harness import (
    HOST_NETWORKS,
    SEEN_HOST_KEY,
    VM_PRIVATE_KEY,
    is_secret,
    new_ed25519_key,
    run_program,
)
from tests.program.test_graph import existing_host, qemu_host


def test_configured_private_key_reaches_every_connection_as_a_secret() -> None:
    private, _public = new_ed25519_key()
    run = run_program([existing_host("build-1", "192.0.2.10")], ssh_private_key=private)

    for name in ("build-1-sysbox", "build-1-dy1_", "build-1-dy2_"):
        resource = run.named(name)
        assert is_secret(resource.inputs["connection"]), name
        assert resource.plain("connection")["privateKey"] == private, name
        # Dynamic providers only re-mark outputs named like secret inputs: the whole
        # connection output must be listed explicitly.
        assert "connection" in resource.additional_secret_outputs, name
    assert not is_secret(run.named("build-1-dy1_").inputs["prefix"])


def test_without_a_configured_key_no_private_key_is_sent() -> None:
    run = run_program([existing_host("build-1", "192.0.2.10")])

    connection = run.named("build-1-sysbox").inputs["connection"]
    assert not is_secret(connection)
    assert "privateKey" not in connection


def test_vm_private_key_is_a_secret_output_and_input() -> None:
    run = run_program([qemu_host("local-1")])

    assert "privateKey" in run.named("local-1-vm").additional_secret_outputs
    sysbox = run.named("local-1-sysbox")
    assert is_secret(sysbox.inputs["connection"])
    assert sysbox.plain("connection")["privateKey"] == VM_PRIVATE_KEY
    assert is_secret(run.named("local-1-q1_").inputs["connection"])


def test_stack_outputs_describe_hosts_and_instances_without_secrets() -> None:
    private, _public = new_ed25519_key()
    run = run_program(
        [existing_host("build-1", "192.0.2.10"), qemu_host("local-1")], ssh_private_key=private
    )

    assert not run.outputs_secret
    text = json.dumps(run.outputs)
    assert private.splitlines()[1] not in text
    assert VM_PRIVATE_KEY.splitlines()[1] not in text
    assert set(run.outputs) == {"build-1", "local-1"}
    build = run.outputs["build-1"]
    assert {k: build[k] for k in ("provision", "address", "port", "user")} == {
        "provision": "existing",
        "address": "192.0.2.10",
        "port": 22,
        "user": "admin",
    }
    assert build["distro"] == "debian-13"
    assert build["kernel"] == "6.12.0"
    assert build["arch"] == "x86_64"
    assert build["dockerVersion"] == "29.2.1"
    assert build["sysboxVersion"] == "0.6.7"
    assert build["hostKey"] == SEEN_HOST_KEY
    assert build["hostKeyFingerprint"] == "SHA256:seen"
    assert set(build["instances"]) == {"dy1_", "dy2_"}
    dy1 = build["instances"]["dy1_"]
    assert dy1 == {
        "root": "/dy1",
        "dockerHost": "unix:///dy1/docker.sock",
        "socketPath": "/dy1/docker.sock",
        "group": "dy1_docker",
        "serviceName": "dy1_docker.service",
        "bridgeName": "dy1_docker0",
        "networks": dy1["networks"],
        "sshForward": "ssh -L /tmp/dy1_docker.sock:/dy1/docker.sock host",
    }
    # Its networks are the ones its host chose (none written in the stack file).
    assert run.named("build-1-dy1_").plain("bridgeCidr") is None
    assert dy1["networks"]["bridge"] == HOST_NETWORKS["bridgeCidr"]
    local = run.outputs["local-1"]
    assert (local["provision"], local["address"], local["port"], local["user"]) == (
        "qemu",
        "127.0.0.1",
        2222,
        "root",
    )
    assert set(local["instances"]) == {"q1_"}


def test_an_artifact_url_with_credentials_is_a_secret_input_and_output() -> None:
    """`https://user:token@...` or a signed query (`?X-Amz-Signature=...`) in a mirror URL is
    a credential: the SysboxHost gets that artifact spec as a secret, and its output too."""
    host = existing_host("build-1", "192.0.2.10")
    host["docker"] = {"url": "https://ci:tok3n@mirror.test/docker-{version}.tgz"}
    host["sysbox"] = {"url": "https://mirror.test/sysbox_{debArch}.deb?X-Amz-Signature=abc"}
    run = run_program([host])

    sysbox = run.named("build-1-sysbox")
    for key in ("docker", "sysbox"):
        assert is_secret(sysbox.inputs[key]), key
        assert key in sysbox.additional_secret_outputs, key
    assert sysbox.plain("docker")["artifacts"]["x86_64"]["url"] == (
        "https://ci:tok3n@mirror.test/docker-29.2.1.tgz"
    )


def test_plain_artifact_urls_stay_readable_in_the_preview() -> None:
    run = run_program([existing_host("build-1", "192.0.2.10")])

    sysbox = run.named("build-1-sysbox")
    assert not is_secret(sysbox.inputs["docker"]) and not is_secret(sysbox.inputs["sysbox"])
    assert "docker" not in sysbox.additional_secret_outputs
