"""`DockyardInstanceProvider` check and diff: validation at preview and local-only diffs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from dockyard_resources.providers import instance as provider_module
from dockyard_resources.providers.instance import UNKNOWN, DockyardInstanceProvider, outputs

INPUTS: dict[str, Any] = {
    "connection": {
        "host": "127.0.0.1",
        "port": 2222.0,
        "user": "root",
        "hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f",  # noqa: E501
    },
    "hostName": "build-1",
    "dockerDir": "/usr/local/lib/dockyard/docker-29.2.1",
    "sysboxDir": "/usr/local/lib/dockyard/sysbox-0.6.7",
    "prefix": "dy1_",
    "root": "/dy1",
    "bridgeCidr": "172.22.147.1/24",
    "fixedCidr": "172.22.147.0/24",
    "poolBase": "172.28.0.0/16",
    "poolSize": 24.0,
    "members": ["alice"],
    "owner": "dockyard/prod/build-1-dy1_",
}


def with_(**changes: Any) -> dict[str, Any]:
    props = copy.deepcopy(INPUTS)
    props.update(changes)
    return props


@pytest.fixture
def provider() -> DockyardInstanceProvider:
    return DockyardInstanceProvider()


def test_check_accepts_valid_inputs_and_turns_float_pool_size_into_int(
    provider: DockyardInstanceProvider,
) -> None:
    result = provider.check({}, INPUTS)
    assert result.failures == []
    assert result.inputs["poolSize"] == 24 and isinstance(result.inputs["poolSize"], int)


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"prefix": "Dy1"}, "prefix", "not a valid prefix"),
        ({"owner": "dockyard/prod"}, "owner", "project/stack/resource"),
        ({"owner": None}, "owner", "is required"),
        ({"root": "/usr"}, "root", "system directory"),
        ({"root": "dy1"}, "root", "not absolute"),
        ({"bridgeCidr": "172.22.147.0/24"}, "bridgeCidr", "not a usable gateway"),
        ({"fixedCidr": "172.23.0.0/24"}, "fixedCidr", "inside bridgeCidr"),
        ({"poolBase": "172.22.0.0/16"}, "poolBase", "overlaps bridgeCidr"),
        ({"poolSize": 24.5}, "poolSize", "whole number"),
        ({"poolSize": 12.0}, "poolSize", "at least 16"),
        ({"members": ["Bad Name"]}, "members", "not a valid user name"),
        ({"members": ["a", "a"]}, "members", "more than once"),
        ({"dockerDir": "docker"}, "dockerDir", "absolute"),
        ({"dockerDir": "/usr/local/lib/$(reboot)"}, "dockerDir", "plain directory path"),
        ({"sysboxDir": "/usr/local/../../etc"}, "sysboxDir", "not normalised"),
        ({"connection": {}}, "connection.host", "is required"),
        ({"connection": {"host": "a b"}}, "connection.host", "neither an IP address"),
        ({"connection": {"host": "h", "user": "x;id"}}, "connection.user", "user name"),
        ({"connection": {"host": "h", "hostKey": "ssh-ed25519 AAAA"}}, "connection.hostKey", ""),
    ],
)
def test_check_names_the_key_and_the_problem(
    provider: DockyardInstanceProvider, changes: dict[str, Any], key: str, words: str
) -> None:
    failures = provider.check({}, with_(**changes)).failures
    assert [f.property for f in failures] == [key]
    assert words in failures[0].reason


def test_check_reports_missing_inputs(provider: DockyardInstanceProvider) -> None:
    props = with_()
    del props["poolBase"]
    failures = provider.check({}, props).failures
    # The key is named once: Pulumi prints the property before the reason.
    assert [(f.property, f.reason) for f in failures] == [("poolBase", "is required")]


def test_check_tolerates_unknowns_at_preview(provider: DockyardInstanceProvider) -> None:
    props = with_(dockerDir=UNKNOWN, sysboxDir=UNKNOWN, connection=UNKNOWN, poolBase=UNKNOWN)
    assert provider.check({}, props).failures == []


def olds() -> dict[str, Any]:
    outs = outputs(INPUTS)
    outs.update(healthy=True, health={})
    return outs


def test_outputs(provider: DockyardInstanceProvider) -> None:
    outs = olds()
    assert outs["socketPath"] == "/dy1/run/docker.sock"
    assert outs["dockerHost"] == "unix:///dy1/run/docker.sock"
    assert outs["group"] == "dy1_docker"
    assert outs["serviceName"] == "dy1_docker.service"
    assert outs["bridgeName"] == "dy1_docker0"
    assert outs["networks"]["poolBase"] == "172.28.0.0/16"
    assert (
        '-L "$d"/dy1_docker.sock:/dy1/run/docker.sock -p 2222 root@127.0.0.1' in outs["sshForward"]
    )
    for key in INPUTS:
        assert key in outs  # diff and update see outputs as olds


def test_diff_no_changes(provider: DockyardInstanceProvider) -> None:
    result = provider.diff("id", olds(), with_(poolSize=24.0))
    assert result.changes is False and result.replaces == []


@pytest.mark.parametrize("key", ["prefix", "root", "hostName"])
def test_diff_identity_change_replaces_deleting_first(
    provider: DockyardInstanceProvider, key: str
) -> None:
    new_value = {"prefix": "dy2_", "root": "/dy2", "hostName": "build-2"}[key]
    result = provider.diff("id", olds(), with_(**{key: new_value}))
    assert result.changes is True
    assert result.replaces == [key]
    # Old and new would claim the same user, unit and bridge: delete first.
    assert result.delete_before_replace is True


@pytest.mark.parametrize(
    "changes",
    [
        {"poolBase": "172.29.0.0/16"},
        {"poolSize": 25.0},
        {"bridgeCidr": "172.22.148.1/24", "fixedCidr": "172.22.148.0/24"},
        {"members": ["alice", "bob"]},
        {"dockerDir": "/usr/local/lib/dockyard/docker-29.3.0"},
        {"sysboxDir": UNKNOWN},
    ],
)
def test_diff_settings_change_is_in_place_update(
    provider: DockyardInstanceProvider, changes: dict[str, Any]
) -> None:
    result = provider.diff("id", olds(), with_(**changes))
    assert result.changes is True and result.replaces == []


def test_diff_new_machine_address_replaces(provider: DockyardInstanceProvider) -> None:
    moved = with_(connection={**INPUTS["connection"], "host": "192.0.2.7"})
    result = provider.diff("id", olds(), moved)
    assert result.replaces == ["connection"] and result.delete_before_replace is True
    # Another port or credential for the same machine (a local VM's forwarded port moves).
    other_port = with_(connection={**INPUTS["connection"], "port": 2223.0})
    assert provider.diff("id", olds(), other_port).replaces == []
    rekeyed = with_(connection={**INPUTS["connection"], "privateKey": "other"})
    result = provider.diff("id", olds(), rekeyed)
    assert result.changes is True and result.replaces == []


def test_diff_new_binaries_under_the_same_version_are_an_update(
    provider: DockyardInstanceProvider,
) -> None:
    before = {**olds(), "dockerSha256": "a" * 64}
    result = provider.diff("id", before, with_(dockerSha256="b" * 64))
    assert result.changes is True and result.replaces == []


def test_diff_member_order_is_not_a_change(provider: DockyardInstanceProvider) -> None:
    old = olds()
    old["members"] = ["bob", "alice"]
    assert provider.diff("id", old, with_(members=["alice", "bob"])).changes is False


def test_diff_unhealthy_refresh_asks_for_a_repairing_update(
    provider: DockyardInstanceProvider,
) -> None:
    old = olds()
    old["healthy"] = False
    result = provider.diff("id", old, with_())
    assert result.changes is True and result.replaces == []


def test_diff_and_check_never_touch_the_network(
    provider: DockyardInstanceProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_ssh(_props: dict[str, Any]) -> Any:
        raise AssertionError("check/diff must stay local")

    monkeypatch.setattr(provider_module, "_run", no_ssh)
    provider.check({}, INPUTS)
    provider.diff("id", olds(), with_(poolBase="172.29.0.0/16"))
