"""The providers' create/update/read/delete decisions, run as Pulumi calls them, against a fake
host (tests/unit/fake_runner.py): the scripts they send run by bash in the scratch hosts of
tests/unit/sysbox_sandbox.py and tests/unit/test_behaviour_guards.py, or are answered with
recorded facts. What each test looks at is what the provider decided: which steps ran, what
it refused before touching the host, what its outputs and warnings say."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.errors import InputError
from dockyard_resources.hostops.preflight import PreflightFailed
from dockyard_resources.providers.instance import DockyardInstanceProvider, outputs
from dockyard_resources.providers.sysbox_host import SysboxHostProvider
from dockyard_resources.render import facts
from dockyard_resources.render import sysbox_host as r
from dockyard_resources.transport import CommandFailed, Result
from tests.unit.fake_runner import (
    FINGERPRINT,
    HOST_KEY,
    FakeRunner,
    answer,
    connect,
    sandbox_answer,
)
from tests.unit.sysbox_sandbox import LocalHost, Sandbox, binary, sha256, tgz
from tests.unit.test_behaviour_guards import PREFIX, Host, make_root, unit
from tests.unit.test_instance_guards import OTHER, OWNER
from tests.unit.test_instance_render import PROPS
from tests.unit.test_preflight import TRIXIE_VM
from tests.unit.test_sysbox_behaviour import plant_instance_units
from tests.unit.test_sysbox_provider import inputs

# --- SysboxHost ----------------------------------------------------------------------------

OWNER_A = inputs()["owner"]
OWNER_B = "dockyard/other/box-sysbox"


def sysbox_props(
    box: Sandbox, sysbox_deb: Path | None = None, allow: bool = False
) -> dict[str, Any]:
    """SysboxHost inputs that upload the sandbox's artifacts."""

    def spec(version: str, path: Path) -> dict[str, Any]:
        return {
            "version": version,
            "artifacts": {"x86_64": {"url": str(path), "sha256": sha256(path)}},
        }

    return {
        **inputs(),
        "docker": spec("29.2.1", box.artifacts.docker),
        "sysbox": spec("0.6.7", sysbox_deb or box.artifacts.sysbox),
        "artifactsMode": "upload",
        "allowSysboxRestart": allow,
    }


def sandbox_host(box: Sandbox, **preflight: Any) -> FakeRunner:
    """The sandbox as the SysboxHost's host: preflight answers the recorded facts of the
    Debian test VM (changed by `preflight`), every other script runs in the sandbox."""
    local = LocalHost(box)

    def in_sandbox(script: str) -> Result:
        ran = box.run(script)
        return Result(ran.code, unmoved_state(box, ran.out), ran.err)

    runner = FakeRunner(upload_to=local.upload)
    return runner.on("preflight", answer(("preflight", {**TRIXIE_VM, **preflight}))).on(
        "", in_sandbox
    )


def unmoved_state(box: Sandbox, stdout: str) -> str:
    """The sandbox's `state` fact as the host would print it: the files it hashes hold the
    sandbox's moved paths, so their hashes are taken again with the host's paths."""
    found = facts.parse(stdout).get("state")
    if not found:
        return stdout
    state = dict(found[-1])
    for key, path in (
        ("unitSha256", r.UNIT_PATH),
        ("supervisorSha256", r.SUPERVISOR_PATH),
        ("sysctlSha256", r.SYSCTL_PATH),
    ):
        file = box.path(path)
        if state[key] and file.is_file() and state[key] == sha256(file):
            state[key] = r.sha256_text(file.read_text().replace(str(box.base), ""))
    kept = [line for line in stdout.splitlines() if not line.startswith(r.STATE_PREFIX)]
    return "\n".join([*kept, facts.line("state", state)]) + "\n"


@pytest.fixture
def created(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch, warnings: list[str]
) -> tuple[FakeRunner, dict[str, Any]]:
    """A SysboxHost created on the sandbox: the fake host and the outputs."""
    runner = sandbox_host(box)
    connect(monkeypatch, runner)
    done = SysboxHostProvider().create(sysbox_props(box))
    assert done.id == "box@10.0.0.5:22"
    return runner, dict(done.outs or {})


def test_create_installs_and_reports_what_the_host_has(
    box: Sandbox, created: tuple[FakeRunner, dict[str, Any]]
) -> None:
    runner, outs = created
    assert runner.steps[0] == "preflight" and runner.steps[-1] == "install docker + sysbox"
    assert sorted(runner.uploads) == sorted(
        r.upload_path(sha256(p)) for p in (box.artifacts.docker, box.artifacts.sysbox)
    )
    assert outs["arch"] == "x86_64" and outs["drift"] == []
    assert outs["dockerDir"] == r.docker_dir("29.2.1")
    assert outs["sysboxDir"] == r.sysbox_dir("0.6.7")
    assert outs["dockerSha256"] == sha256(box.artifacts.docker)
    assert outs["sysboxSha256"] == sha256(box.artifacts.sysbox)
    # The key the session saw is pinned from then on, in the connection too.
    assert outs["hostKey"] == outs["connection"]["hostKey"] == HOST_KEY
    assert outs["hostKeyFingerprint"] == FINGERPRINT
    assert box.path(r.owner_file(OWNER_A)).read_text() == f"{OWNER_A}\n"


@pytest.mark.parametrize("kernel", ["5.10.0-30-cloud-amd64", "5.11.22"])
def test_create_refuses_a_kernel_older_than_5_12_before_installing_anything(
    box: Sandbox, monkeypatch: pytest.MonkeyPatch, kernel: str
) -> None:
    runner = sandbox_host(box, kernel=kernel)
    connect(monkeypatch, runner)
    with pytest.raises(PreflightFailed, match=f"kernel {kernel} is older than 5.12"):
        SysboxHostProvider().create(sysbox_props(box))
    assert runner.steps == ["preflight"] and runner.uploads == []


def rebuilt_sysbox(box: Sandbox) -> Path:
    deb = box.work / "sysbox-rebuilt.deb"
    deb.write_bytes(tgz({f"usr/bin/{b}": binary(b) + b"# rebuilt\n" for b in r.SYSBOX_BINARIES}))
    return deb


def test_update_refuses_a_sysbox_change_without_the_opt_in_before_touching_the_host(
    box: Sandbox, created: tuple[FakeRunner, dict[str, Any]]
) -> None:
    runner, outs = created
    before = len(runner.calls)
    news = sysbox_props(box, rebuilt_sysbox(box))
    with pytest.raises(InputError, match=r"restarts sysbox-fs.*allowSysboxRestart: true"):
        SysboxHostProvider().update("id", outs, news)
    assert runner.steps[before:] == []
    sysbox_runc = box.path(f"{r.sysbox_dir('0.6.7')}/sysbox-runc").read_bytes()
    assert sysbox_runc == binary("sysbox-runc")


def test_update_with_the_opt_in_installs_the_new_sysbox_over_the_pinned_key(
    box: Sandbox, created: tuple[FakeRunner, dict[str, Any]]
) -> None:
    runner, outs = created
    runner.targets.clear()
    deb = rebuilt_sysbox(box)
    done = SysboxHostProvider().update("id", outs, sysbox_props(box, deb, allow=True))
    assert (done.outs or {})["sysboxSha256"] == sha256(deb)
    assert runner.targets and {t.host_key for t in runner.targets} == {HOST_KEY}
    sysbox_runc = box.path(f"{r.sysbox_dir('0.6.7')}/sysbox-runc").read_bytes()
    assert sysbox_runc.endswith(b"# rebuilt\n")


def test_read_reports_a_missing_subid_line_as_drift_and_diff_repairs_it(
    box: Sandbox, created: tuple[FakeRunner, dict[str, Any]]
) -> None:
    _, outs = created
    provider = SysboxHostProvider()
    healthy = provider.read("id", outs).outs or {}
    assert healthy["drift"] == [] and healthy["sysboxVersion"] == "0.6.7"
    subuid = box.path("/etc/subuid")
    kept = [line for line in subuid.read_text().splitlines() if "sysbox" not in line]
    subuid.write_text("".join(f"{line}\n" for line in kept))
    drifted = provider.read("id", outs).outs or {}
    assert drifted["drift"] == ["/etc/subuid: 0 sysbox lines (exactly 1 needed)"]
    diff = provider.diff("id", drifted, sysbox_props(box))
    assert diff.changes and not diff.replaces


def test_read_reports_changed_sysbox_binaries_and_clears_the_version(
    box: Sandbox, created: tuple[FakeRunner, dict[str, Any]]
) -> None:
    _, outs = created
    box.path(f"{r.sysbox_dir('0.6.7')}/sysbox-fs").write_bytes(b"#!/bin/sh\necho changed\n")
    found = SysboxHostProvider().read("id", outs).outs or {}
    assert [d for d in found["drift"] if d.startswith("sysbox 0.6.7: ")], found["drift"]
    assert found["sysboxVersion"] == "" and found["sysboxSha256"] == ""
    assert found["dockerVersion"] == "29.2.1"


def test_delete_keeps_the_layer_while_another_sysbox_host_uses_it(
    box: Sandbox, created: tuple[FakeRunner, dict[str, Any]], warnings: list[str]
) -> None:
    _, outs = created
    box.path(r.owner_file(OWNER_B)).write_text(f"{OWNER_B}\n")
    SysboxHostProvider().delete("id", outs)
    assert warnings == [
        "SysboxHost box: kept Docker, sysbox and dockyard-sysbox.service on the host because"
        f" other SysboxHosts use it: {OWNER_B}"
    ]
    assert box.path(r.UNIT_PATH).exists() and not box.path(r.owner_file(OWNER_A)).exists()


def test_delete_keeps_the_layer_while_instance_units_remain(
    box: Sandbox, created: tuple[FakeRunner, dict[str, Any]], warnings: list[str]
) -> None:
    _, outs = created
    [unit_name] = plant_instance_units(box, "dy1_")
    SysboxHostProvider().delete("id", outs)
    [warning] = warnings
    assert "because Dockyard instance units remain" in warning and unit_name in warning
    assert box.path(r.UNIT_PATH).exists()


def test_delete_of_the_last_user_removes_the_layer(
    box: Sandbox, created: tuple[FakeRunner, dict[str, Any]], warnings: list[str]
) -> None:
    runner, outs = created
    SysboxHostProvider().delete("id", outs)
    assert warnings == [] and runner.steps[-1] == "remove docker + sysbox"
    assert not box.path(r.LIB_ROOT).exists() and not box.path(r.UNIT_PATH).exists()


# --- DockyardInstance ------------------------------------------------------------------------

CONNECTION = {"host": "10.0.0.5", "port": 22.0, "user": "root", "hostKey": HOST_KEY}


def instance_props(host: Host, owner: str = OWNER) -> dict[str, Any]:
    spec = host.spec(owner=owner)
    return {
        "connection": CONNECTION,
        "hostName": "build-1",
        "prefix": spec.prefix,
        "root": spec.root,
        "dockerDir": spec.docker_dir,
        "sysboxDir": spec.sysbox_dir,
        "bridgeCidr": "172.22.147.1/24",
        "fixedCidr": "172.22.147.0/25",
        "poolBase": "172.28.0.0/16",
        "poolSize": 24.0,
        "members": [],
        "owner": owner,
    }


def deployed(props: dict[str, Any]) -> dict[str, Any]:
    return {**outputs(props), "healthy": True, "health": {}}


def activate_in_bash(active: bool) -> Any:
    """Runs a start/restart script with systemctl recording its calls (the unit running or
    not as `active` says); flock runs its command."""
    stubs = (
        'systemctl() { echo "systemctl $*" >&2; '
        f'if [ "$1" = is-active ]; then return {0 if active else 3}; fi; }}\n'
        'flock() { shift 3; "$@"; }\n'
    )

    def run(script: str) -> Result:
        done = subprocess.run(
            ["bash", "-c", stubs + script], capture_output=True, text=True, check=False
        )
        return Result(done.returncode, done.stdout, done.stderr)

    return run


def instance_host(host: Host, *, active: bool = True) -> FakeRunner:
    """The scratch instance host: install, stop and remove run there, the start runs with
    systemctl recorded, the address list is empty."""

    runner = FakeRunner()
    for step in ("look for", "install instance", "stop ", "remove instance"):
        runner.on(step, sandbox_answer(host.run))
    runner.on("list addresses", answer(stdout="[]"))
    runner.on("start ", activate_in_bash(active)).on("restart ", activate_in_bash(active))
    return runner


def systemctl_calls(runner: FakeRunner) -> list[str]:
    """What the start step's script asked of systemctl (recorded on its stderr)."""
    start = [c for c in runner.calls if c.step.endswith(".service") and "start" in c.step]
    assert len(start) == 1, runner.steps
    done = activate_in_bash(active=True)(start[0].script)
    return [line for line in done.stderr.splitlines() if line.startswith("systemctl ")]


def test_an_update_that_changes_files_restarts_the_instance_and_one_that_does_not_starts_it(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    props = instance_props(host)
    runner = instance_host(host)
    connect(monkeypatch, runner)
    provider = DockyardInstanceProvider()
    provider.create(props)
    changed = {**props, "poolSize": 25.0}  # daemon.json changes
    runner.calls.clear()
    provider.update("id", deployed(props), changed)
    assert runner.steps == ["install instance zq9_", "restart zq9_docker.service"]
    assert "systemctl restart zq9_docker.service" in systemctl_calls(runner)
    runner.calls.clear()
    provider.update("id", deployed(changed), changed)
    assert runner.steps == ["install instance zq9_", "start zq9_docker.service"]
    calls = systemctl_calls(runner)
    assert "systemctl start zq9_docker.service" in calls
    assert not [c for c in calls if c.startswith("systemctl restart")], calls


def test_an_update_of_an_owned_instance_refuses_an_unowned_unit_and_root(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only an instance whose own state names no owner may take over an unowned unit and
    root: an owned one finding them is looking at something that is not its own."""
    props = instance_props(host)
    make_root(Path(props["root"]), None)
    unit(host.units, PREFIX, props["root"], None)
    runner = instance_host(host)
    connect(monkeypatch, runner)
    with pytest.raises(CommandFailed) as refused:
        DockyardInstanceProvider().update("id", deployed(props), props)
    assert refused.value.exit_code == 3 and "names no Dockyard owner" in str(refused.value)
    assert runner.steps == ["install instance zq9_"]
    assert (Path(props["root"]) / "lib" / "data").read_text() == "precious\n"


def test_delete_leaves_another_owners_instance_and_says_so(
    host: Host, monkeypatch: pytest.MonkeyPatch, warnings: list[str]
) -> None:
    props = instance_props(host)
    make_root(Path(props["root"]), OTHER)
    unit_file = unit(host.units, PREFIX, props["root"], OTHER)
    runner = instance_host(host)
    connect(monkeypatch, runner)
    DockyardInstanceProvider().delete("id", deployed(props))
    assert runner.steps == ["stop zq9_docker.service", "list addresses", "remove instance zq9_"]
    assert warnings and all(w.startswith("DockyardInstance build-1/zq9_: ") for w in warnings)
    assert any(OTHER in w for w in warnings), warnings
    assert unit_file.exists() and (Path(props["root"]) / "lib" / "data").exists()


# What the inspect script of a healthy, running instance prints (its `instance` fact).
HEALTHY = {
    **dict.fromkeys(("unit", "root", "user", "group", "bridge", "rules", "files"), "1"),
    **{"active": "active", "enabled": "enabled", "runtime": "sysbox-runc"},
    **{"members": "alice", "socket": "root:dy1_docker:660", "stale": "", "untrusted": ""},
}
INSTANCE = {
    **PROPS,
    "connection": CONNECTION,
    "hostName": "build-1",
    "members": ["alice"],
    "owner": OWNER,
}


def read_instance(monkeypatch: pytest.MonkeyPatch, **found: str) -> Any:
    runner = FakeRunner().on("inspect instance dy1_", answer(("instance", {**HEALTHY, **found})))
    connect(monkeypatch, runner)
    done = DockyardInstanceProvider().read("id", deployed(copy.deepcopy(INSTANCE)))
    assert runner.steps == ["inspect instance dy1_"]
    return done


def test_read_of_a_healthy_instance_reports_it_healthy(monkeypatch: pytest.MonkeyPatch) -> None:
    outs = read_instance(monkeypatch).outs
    assert outs["healthy"] is True and outs["health"]["problems"] == []
    assert outs["members"] == ["alice"]


@pytest.mark.parametrize(
    "socket", ["root:root:660", "root:dy1_docker:666", "alice:dy1_docker:660", ""]
)
def test_read_checks_the_sockets_owner_group_and_mode(
    monkeypatch: pytest.MonkeyPatch, socket: str
) -> None:
    outs = read_instance(monkeypatch, socket=socket).outs
    assert outs["healthy"] is False
    assert outs["health"]["problems"] == [
        f"socket /dy1/run/docker.sock is {socket or 'missing'} (want root:dy1_docker:660)"
    ]


def test_read_reports_members_found_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_instance(monkeypatch, members="bob,alice").outs["members"] == ["alice", "bob"]


def test_read_of_an_instance_gone_from_the_host_drops_it(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = {"unit": "0", "root": "0", "user": "0", "group": "0"}
    done = read_instance(monkeypatch, **gone)
    assert done.id is None and done.outs == {}
