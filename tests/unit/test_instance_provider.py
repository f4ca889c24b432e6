"""`DockyardInstanceProvider` check and diff: validation at preview and local-only diffs."""

from __future__ import annotations

import copy
from types import SimpleNamespace
from typing import Any

import pytest

from dockyard_resources.config.networks import NETWORK_KEYS
from dockyard_resources.hostops import instance as hostops
from dockyard_resources.providers import instance as provider_module
from dockyard_resources.providers.instance import UNKNOWN, DockyardInstanceProvider, outputs
from dockyard_resources.render import facts
from dockyard_resources.transport import CommandFailed

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
        ({"root": "/srv/a.dockyard-new.prod"}, "root", "contains '.dockyard-new'"),
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
        # Root runs these binaries: Dockyard's own tree only, each kind in its own place.
        ({"dockerDir": "/tmp/evil"}, "dockerDir", "only /usr/local/lib/dockyard/docker-<v"),
        ({"sysboxDir": "/home/alice/sb"}, "sysboxDir", "pass the SysboxHost's sysboxDir"),
        ({"dockerDir": "/usr/local/lib/dockyard/sysbox-0.6.7"}, "dockerDir", "not a docker"),
        ({"sysboxDir": "/usr/local/lib/dockyard/docker-29.2.1"}, "sysboxDir", "not a sysbox"),
        ({"dockerDir": "/usr/local/lib/dockyard/docker-"}, "dockerDir", "not a docker"),
        ({"dockerDir": "/usr/local/lib/dockyard/x/docker-1"}, "dockerDir", "not a docker"),
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
    del props["root"]
    failures = provider.check({}, props).failures
    # The key is named once: Pulumi prints the property before the reason.
    assert [(f.property, f.reason) for f in failures] == [("root", "is required")]


def test_check_accepts_networks_left_to_the_host(provider: DockyardInstanceProvider) -> None:
    """Network inputs are what the stack file writes: any of them may be absent."""
    for absent in (NETWORK_KEYS, ("bridgeCidr", "fixedCidr"), ("poolBase",)):
        props = {k: v for k, v in INPUTS.items() if k not in absent}
        assert provider.check({}, props).failures == [], absent


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


def test_diff_networks_the_file_omits_are_kept_and_no_change(
    provider: DockyardInstanceProvider,
) -> None:
    """The state holds the networks the instance has (chosen by the host, or written before);
    inputs that leave them out, or write what it has, change nothing."""
    for absent in (NETWORK_KEYS, ("bridgeCidr", "fixedCidr"), ("poolBase", "poolSize")):
        news = {k: v for k, v in INPUTS.items() if k not in absent}
        assert provider.diff("id", olds(), news).changes is False, absent
    only_bridge = {k: v for k, v in INPUTS.items() if k != "fixedCidr"}  # fixed = its network
    assert provider.diff("id", olds(), only_bridge).changes is False


@pytest.mark.parametrize(
    "written",
    [
        {"poolSize": 26.0},  # resizes the kept pool
        {"bridgeCidr": "172.22.148.1/24"},  # moves the bridge, fixedCidr with it
        {"fixedCidr": "172.22.147.0/25"},  # within the kept bridge
        {"poolSize": 12.0},  # does not fit the kept /16: the update says why
    ],
)
def test_diff_a_written_network_that_differs_is_an_update(
    provider: DockyardInstanceProvider, written: dict[str, Any]
) -> None:
    news = {**{k: v for k, v in INPUTS.items() if k not in NETWORK_KEYS}, **written}
    result = provider.diff("id", olds(), news)
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


# --- no data loss without a yes ----------------------------------------------------------


def _deployed_props() -> dict[str, Any]:
    inputs, failures = provider_module.validate(copy.deepcopy(INPUTS))
    assert not failures
    return inputs


def test_a_new_root_is_refused_at_check_naming_the_instance_and_the_opt_in() -> None:
    olds = _deployed_props()
    result = DockyardInstanceProvider().check(olds, with_(**{"root": "/elsewhere"}))
    reasons = {f.property: f.reason for f in result.failures}
    assert list(reasons) == ["allowDataLoss"], reasons
    why = reasons["allowDataLoss"]
    assert f"instance {olds['prefix']} on host {olds['hostName']}" in why
    assert f"root {olds['root']} -> /elsewhere" in why
    assert f"deletes its data root {olds['root']}" in why
    assert "allowDataLoss: true" in why


def test_a_new_machine_is_refused_too_and_an_unknown_one_is_decided_at_up() -> None:
    olds = _deployed_props()
    moved = with_(**{"connection": {**INPUTS["connection"], "host": "10.9.9.9"}})
    failures = DockyardInstanceProvider().check(olds, moved).failures
    assert [f.property for f in failures] == ["allowDataLoss"]
    assert "machine" in failures[0].reason and "10.9.9.9" in failures[0].reason
    # A preview cannot know a new server's address; `up` checks again with it known.
    unknown = with_(**{"connection": {**INPUTS["connection"], "host": UNKNOWN}})
    assert not DockyardInstanceProvider().check(olds, unknown).failures
    diff = DockyardInstanceProvider().diff("id", olds, unknown)
    assert diff.replaces == ["connection"]


def test_the_opt_in_lets_the_replace_through_and_diff_still_replaces() -> None:
    olds = _deployed_props()
    news = with_(**{"root": "/elsewhere", "allowDataLoss": True})
    checked = DockyardInstanceProvider().check(olds, news)
    assert not checked.failures
    diff = DockyardInstanceProvider().diff("id", olds, checked.inputs)
    assert diff.replaces == ["root"] and diff.delete_before_replace


def test_changes_that_keep_the_data_and_first_creates_need_no_opt_in() -> None:
    olds = _deployed_props()
    kept = with_(**{"poolSize": 22, "enabled": False})
    assert not DockyardInstanceProvider().check(olds, kept).failures
    assert not DockyardInstanceProvider().check({}, with_()).failures


def test_the_opt_in_alone_is_no_change() -> None:
    olds = _deployed_props()
    checked = DockyardInstanceProvider().check(olds, with_(**{"allowDataLoss": True}))
    diff = DockyardInstanceProvider().diff("id", olds, checked.inputs)
    assert not diff.changes


def test_the_opt_in_must_be_a_boolean() -> None:
    failures = DockyardInstanceProvider().check({}, with_(**{"allowDataLoss": "yes"}))
    assert [f.property for f in failures.failures] == ["allowDataLoss"]


# --- a create that fails leaves nothing behind that loops ------------------------------------


class FakeHost:
    """Answers each script by its step name (what `hostops.instance` runs); `fail` names the
    step that exits non-zero, with `code` and `stderr`; `existed` is what the look-up before
    a create finds."""

    def __init__(
        self, fail: str = "", code: int = 1, stderr: str = "it broke", existed: bool = False
    ) -> None:
        self.fail, self.code, self.stderr, self.existed = fail, code, stderr, existed
        self.steps: list[str] = []

    def run(self, script: str, *, step: str, **_kw: Any) -> Any:
        self.steps.append(step)
        if step.startswith(self.fail) and self.fail:
            raise CommandFailed(step, self.code, self.stderr, "")
        out = {"look for": "1" if self.existed else "0", "list addresses": "[]"}
        stdout = next((v for k, v in out.items() if step.startswith(k)), "DOCKYARD_CHANGED=1")
        return SimpleNamespace(stdout=stdout, exit_code=0)


def _create(
    provider: DockyardInstanceProvider, monkeypatch: pytest.MonkeyPatch, fake: FakeHost
) -> Exception | None:
    monkeypatch.setattr(provider_module, "_run", lambda _props: fake)
    try:
        provider.create(with_())
    except Exception as failure:
        return failure
    return None


CLEANUP = ["stop dy1_docker.service", "list addresses", "remove instance dy1_"]


@pytest.mark.parametrize("failing", ["restart dy1_docker.service", "install instance dy1_"])
def test_a_failed_create_removes_what_it_made(
    provider: DockyardInstanceProvider, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    """The unit failed to start (or the install broke halfway): the create is not in the
    state, so it removes the unit, root, user and group itself, then fails."""
    fake = FakeHost(fail=failing)
    failure = _create(provider, monkeypatch, fake)
    assert isinstance(failure, CommandFailed) and failure.step == failing
    assert fake.steps[fake.steps.index(failing) + 1 :] == CLEANUP


def test_a_failed_create_over_an_instance_that_was_there_only_stops_it(
    provider: DockyardInstanceProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This owner's instance was on the host before (e.g. a create cut short): its data stays,
    the unit is stopped and disabled instead of restarting forever."""
    fake = FakeHost(fail="restart dy1_docker.service", existed=True)
    failure = _create(provider, monkeypatch, fake)
    assert isinstance(failure, CommandFailed)
    assert fake.steps[-2:] == ["restart dy1_docker.service", "stop dy1_docker.service"]


HOST_LOCK_TIMEOUT = "another Dockyard operation held /run/dockyard.lock for 900s"


@pytest.mark.parametrize(
    ("code", "stderr"), [(3, "group dy1_docker already exists"), (75, HOST_LOCK_TIMEOUT)]
)
def test_a_create_refused_before_any_change_cleans_nothing(
    provider: DockyardInstanceProvider, monkeypatch: pytest.MonkeyPatch, code: int, stderr: str
) -> None:
    """Refused (another owner's instance, a foreign group, ...) or no host lock: what is on the
    host is not this create's to remove."""
    fake = FakeHost(fail="install instance dy1_", code=code, stderr=stderr)
    failure = _create(provider, monkeypatch, fake)
    assert isinstance(failure, CommandFailed) and failure.exit_code == code
    assert fake.steps[-1] == "install instance dy1_"


def test_a_create_cut_waiting_for_its_roots_lock_cleans_up(
    provider: DockyardInstanceProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same exit code, but for the lock of the root: the claims were made by then."""
    stderr = "another Dockyard operation held /dy1 for 900s"
    fake = FakeHost(fail="install instance dy1_", code=75, stderr=stderr)
    failure = _create(provider, monkeypatch, fake)
    assert isinstance(failure, CommandFailed)
    assert fake.steps[fake.steps.index("install instance dy1_") + 1 :] == CLEANUP


def test_a_failed_cleanup_says_so_and_what_to_do(
    provider: DockyardInstanceProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Unreachable(FakeHost):
        def run(self, script: str, *, step: str, **kw: Any) -> Any:
            if step.startswith("restart") or step in CLEANUP:
                self.steps.append(step)
                raise CommandFailed(step, 255, "connection lost", "")
            return super().run(script, step=step, **kw)

    fake = Unreachable()
    failure = _create(provider, monkeypatch, fake)
    assert isinstance(failure, hostops.InstanceError), failure
    assert "failed (step 'restart dy1_docker.service' failed" in str(failure)
    assert "and so did undoing it (step 'stop dy1_docker.service'" in str(failure)
    assert "the next `pulumi up` converges" in str(failure)
    assert isinstance(failure.__cause__, CommandFailed)


def test_a_successful_create_looks_first_and_cleans_nothing(
    provider: DockyardInstanceProvider, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeHost()
    assert _create(provider, monkeypatch, fake) is None
    assert fake.steps == [
        "look for dy1_ on the host",
        "install instance dy1_",
        "restart dy1_docker.service",
    ]


# What the fake host's claim step answers.
CHOSEN: dict[str, Any] = {
    "bridgeCidr": "172.16.4.1/24",
    "fixedCidr": "172.16.4.0/24",
    "poolBase": "172.22.0.0/19",
    "poolSize": 24,
}


class ClaimingHost:
    """Records the steps the provider runs; the claim step answers with `CHOSEN`."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, str]] = []

    def run(self, script: str, *, step: str, **_options: Any) -> Any:
        self.steps.append((step, script))
        claimed = facts.line("claim", CHOSEN) if step.startswith("claim networks") else ""
        return SimpleNamespace(stdout=claimed, stderr="", exit_code=0)


@pytest.fixture
def fake_host(monkeypatch: pytest.MonkeyPatch) -> ClaimingHost:
    host = ClaimingHost()
    monkeypatch.setattr(provider_module, "_run", lambda _props: host)
    return host


def test_create_leaving_networks_out_claims_them_on_the_host_first(
    provider: DockyardInstanceProvider, fake_host: ClaimingHost
) -> None:
    props = {k: v for k, v in INPUTS.items() if k not in NETWORK_KEYS}
    outs = provider.create(props).outs or {}
    steps = [step for step, _ in fake_host.steps]
    assert steps[:3] == [
        "claim networks for dy1_",
        "look for dy1_ on the host",
        "install instance dy1_",
    ], steps
    # The install is rendered with what the host chose, and the outputs carry it.
    install = fake_host.steps[2][1]
    assert "want_bridge=172.16.4.1/24\n" in install and "want_pool=172.22.0.0/19\n" in install
    assert {k: outs[k] for k in NETWORK_KEYS} == CHOSEN
    assert outs["networks"]["bridge"] == "172.16.4.1/24"


def test_create_and_update_with_known_networks_claim_inside_the_install_only(
    provider: DockyardInstanceProvider, fake_host: ClaimingHost
) -> None:
    provider.create(INPUTS)
    kept = {k: v for k, v in INPUTS.items() if k not in NETWORK_KEYS}
    outs = provider.update("id", olds(), {**kept, "members": ["alice", "bob"]}).outs or {}
    steps = [step for step, _ in fake_host.steps]
    assert not [s for s in steps if s.startswith("claim networks")], steps
    # The update keeps the networks the instance has.
    assert {k: outs[k] for k in NETWORK_KEYS} == {
        "bridgeCidr": INPUTS["bridgeCidr"],
        "fixedCidr": INPUTS["fixedCidr"],
        "poolBase": INPUTS["poolBase"],
        "poolSize": 24,
    }
