"""NewHostKey, HostKeyRotation and MetadataBlock: check and diff (local only) and the
drift of what their scripts report."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from pulumi.output import Unknown

from dockyard_resources.hostops.host_key import KeyFiles
from dockyard_resources.hostops.metadata_block import BlockState
from dockyard_resources.providers.host_key import HostKeyRotationProvider, NewHostKeyProvider
from dockyard_resources.providers.metadata_block import MetadataBlockProvider
from dockyard_resources.render import facts
from dockyard_resources.render import metadata_block as block_render
from tests.program.harness import new_ed25519_key

OLD = new_ed25519_key()[1]
NEW = new_ed25519_key()[1]
OTHER = new_ed25519_key()[1]


def connection(host_key: Any = OLD) -> dict[str, Any]:
    return {"host": "203.0.113.9", "port": 22.0, "user": "dockyard", "privateKey": "K",
            "hostKey": host_key}  # fmt: skip


def new_key_inputs(**changes: Any) -> dict[str, Any]:
    return {"connection": connection(), "hostName": "ec2-1", "serverId": "i-0123", **changes}


def rotation_inputs(**changes: Any) -> dict[str, Any]:
    return {"connection": connection(), "hostName": "ec2-1", "newHostKey": NEW, **changes}


def failures(result: Any) -> dict[str, str]:
    return {failure.property: failure.reason for failure in result.failures}


def test_host_key_resources_refuse_a_connection_without_a_pinned_key() -> None:
    for provider, inputs in (
        (NewHostKeyProvider(), new_key_inputs(connection=connection(host_key=None))),
        (HostKeyRotationProvider(), rotation_inputs(connection=connection(host_key=""))),
    ):
        found = failures(provider.check({}, inputs))
        assert "no trust on first use" in found["connection.hostKey"]


def test_rotation_takes_an_ed25519_new_key_only() -> None:
    assert failures(HostKeyRotationProvider().check({}, rotation_inputs())) == {}
    missing = HostKeyRotationProvider().check({}, rotation_inputs(newHostKey=None))
    assert "required" in failures(missing)["newHostKey"]
    assert failures(HostKeyRotationProvider().check({}, rotation_inputs(newHostKey="nope")))
    # During a preview the new key is not known yet: nothing to refuse.
    assert (
        failures(HostKeyRotationProvider().check({}, rotation_inputs(newHostKey=Unknown()))) == {}
    )


@pytest.mark.parametrize("path", ["etc/ssh/sshd_config", "/etc/ssh/../x", "/etc/ssh/a b", "/a'b"])
def test_sshd_config_must_be_a_plain_absolute_path(path: str) -> None:
    found = failures(NewHostKeyProvider().check({}, new_key_inputs(sshdConfig=path)))
    assert "sshdConfig" in found


def _outputs(inputs: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**inputs, **extra}


@pytest.mark.parametrize(
    ("changes", "replaces"),
    [
        ({"serverId": "i-0456"}, ["serverId"]),
        ({"connection": connection(host_key=NEW)}, ["connection.hostKey"]),
        ({"connection": {**connection(), "host": "203.0.113.10"}}, ["connection.host"]),
        ({"connection": {**connection(), "privateKey": "K2"}}, []),
        ({"sshdConfig": "/etc/ssh/other_config"}, []),
    ],
)
def test_new_host_key_is_replaced_only_for_another_server_or_first_key(
    changes: dict[str, Any], replaces: list[str]
) -> None:
    olds = _outputs(new_key_inputs(), publicKey=NEW, fingerprint="SHA256:x", keyFile="/etc/k")
    diff = NewHostKeyProvider().diff("id", olds, new_key_inputs(**changes))
    assert diff.changes
    assert diff.replaces == replaces


def test_unchanged_inputs_are_no_change_and_a_comment_on_the_pin_is_none() -> None:
    olds = _outputs(new_key_inputs(), publicKey=NEW)
    same = new_key_inputs(connection=connection(host_key=OLD + " root@cloud"))
    assert not NewHostKeyProvider().diff("id", olds, same).changes
    rotated = _outputs(rotation_inputs(), hostKey=NEW, drift=[])
    assert not HostKeyRotationProvider().diff("id", rotated, rotation_inputs()).changes


def test_new_host_key_update_keeps_the_recorded_key() -> None:
    olds = _outputs(new_key_inputs(), publicKey=NEW, fingerprint="SHA256:x", keyFile="/etc/k")
    news = new_key_inputs(connection={**connection(), "privateKey": "K2"})
    outs = NewHostKeyProvider().update("id", olds, news).outs
    assert outs["publicKey"] == NEW and outs["connection"]["privateKey"] == "K2"


@pytest.mark.parametrize(
    ("olds_extra", "changes", "replaces", "changed"),
    [
        ({}, {"newHostKey": OLD}, ["newHostKey"], True),
        ({}, {"newHostKey": Unknown()}, ["newHostKey"], True),
        ({}, {"connection": connection(host_key=OTHER)}, ["connection.hostKey"], True),
        ({"drift": ["no host key file of sshd holds the rotated key"]}, {}, [], True),
        ({}, {"connection": {**connection(), "user": "admin"}}, [], True),
    ],
)
def test_rotation_diff(
    olds_extra: dict[str, Any], changes: dict[str, Any], replaces: list[str], changed: bool
) -> None:
    olds = _outputs(rotation_inputs(), hostKey=NEW, **{"drift": [], **olds_extra})
    diff = HostKeyRotationProvider().diff("id", olds, rotation_inputs(**changes))
    assert diff.changes is changed
    assert diff.replaces == replaces


def test_key_files_drift() -> None:
    assert KeyFiles(new_file="/etc/ssh/k", old_file="").drift() == []
    assert len(KeyFiles(new_file="", old_file="").drift()) == 1
    both = KeyFiles(new_file="/etc/ssh/k", old_file="/etc/ssh/j").drift()
    assert both == ["/etc/ssh/j holds the old (user-data) host key again"]


def _state(**changes: Any) -> BlockState:
    def sha(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    fact = {
        "programSha256": sha(block_render.render_program()),
        "unitSha256": sha(block_render.render_unit()),
        "enabled": True,
        "rule": True,
        **changes,
    }
    return BlockState.from_output("noise\n" + facts.line(block_render.STATE_FACT, fact) + "\n")


def test_metadata_block_drift() -> None:
    assert _state().drift() == []
    assert _state(rule=False).drift() == [
        "the OUTPUT rule rejecting non-root users' packets to 169.254.169.254 is missing"
    ]
    assert _state(enabled=False).drift()
    assert _state(programSha256="").drift() == [f"{block_render.PROGRAM_PATH}: missing"]
    assert "differs" in _state(unitSha256="0" * 64).drift()[0]


def test_metadata_block_diff_and_check() -> None:
    provider = MetadataBlockProvider()
    inputs = {"connection": connection(), "hostName": "ec2-1"}
    checked = provider.check({}, inputs)
    assert checked.inputs["throwaway"] is False and not checked.failures
    assert failures(provider.check({}, {**inputs, "throwaway": "yes"}))
    olds = {**checked.inputs, "drift": []}
    assert not provider.diff("id", olds, checked.inputs).changes
    moved = {**checked.inputs, "connection": {**connection(), "host": "203.0.113.10"}}
    assert provider.diff("id", olds, moved).replaces == ["connection.host"]
    repinned = {**checked.inputs, "connection": connection(host_key=NEW)}
    diff = provider.diff("id", olds, repinned)
    assert diff.changes and diff.replaces == []
    assert provider.diff("id", {**olds, "drift": ["x"]}, checked.inputs).changes
