"""The real Dockyard program through the real Pulumi engine, on a QEMU machine.

One stack (one `existing` host, the test bed's artifacts uploaded) is carried through the
whole life cycle in file order: each test is one step and needs the steps before it. When a
step fails, the later ones are skipped with that reason, and the module fixture always
destroys the stack and ends the machine.

The machine is a clone of the template on which this stack's SysboxHost (`engine-1-sysbox`,
hence the fixed stack name, part of its owner) is installed already: the first `up` converges
it in seconds. Booting a `qemu` host, uploading and installing Docker and sysbox through the
engine, and destroying that VM are what the `ci` run of docs/ci.md's "Locally" recipe does
(tests/engine/test_recipe_ci_locally.py, with the acceptance suite in between); the install
itself is tested in tests/hosts/test_sysbox_host.py.

How the pending create left by a killed `pulumi up` is handled:
`pulumi refresh --clear-pending-creates`, one of the two ways Pulumi documents (the other is
removing `pending_operations` with `pulumi stack export` / `pulumi stack import`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tenacity import retry, retry_if_result, stop_after_delay, wait_fixed

from dockyard_resources.operate.deployed import SECRET_SIG
from dockyard_resources.paths import vms_dir
from dockyard_resources.provisioning import local_vm_name
from dockyard_resources.transport import close_all
from dockyard_resources.vm import runner
from tests.engine.dockyard_stack import DockyardStack, Run, copy_project
from tests.engine.existing_host import host_config, set_login_key, stack_host
from tests.engine.vm_host import VmHost
from tests.fixtures.pulumi_cli import TEST_PASSPHRASE, PulumiCli, unique_stack_name
from tests.fixtures.sysbox_template import sysbox_host_props, sysbox_layer
from tests.fixtures.vm import TestHost, booted_vm, test_suite
from tests.hosts.checks import Group, IptablesRules, Service, dockyard_traces
from tools.testbed.artifacts import TestbedArtifacts

# The first step may build the layered template (minutes under TCG, more under load).
pytestmark = [pytest.mark.engine, pytest.mark.vm, pytest.mark.timeout(3600)]

MEMBER = "engalice"
HOST_NAME = "engine-1"
RENAMED = "engine-2"
# The module's backend is its own (pulumi_backend): a fixed name cannot meet another stack.
STACK_NAME = "lifecycle"


def instance_config(n: int, members: list[str] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"prefix": f"dy{n}_", "root": f"/dy{n}"}
    if members is not None:
        config["members"] = members
    return config


@dataclass
class Lifecycle:
    """The shared stack and what the steps learned about it."""

    stack: DockyardStack
    machine: TestHost
    artifacts: TestbedArtifacts
    host_name: str = HOST_NAME
    instances: list[dict[str, Any]] = field(default_factory=list)
    failed_step: str | None = None

    def set_instances(self, instances: list[dict[str, Any]]) -> None:
        self.instances = instances
        self.set_host(self.host_name)

    def set_host(self, name: str) -> None:
        """The machine under the name `name` in the stack file, with the current instances."""
        self.stack.set_hosts([host_config(name, self.machine, self.artifacts, self.instances)])

    def resource_name(self, prefix: str) -> str:
        return f"{self.host_name}-{prefix}"

    def urn(self, suffix: str) -> str:
        return self.stack.urn_of(f"{self.host_name}-{suffix}")

    @property
    def vm(self) -> VmHost:
        return VmHost.of(self.machine)

    def sysbox_outputs(self) -> dict[str, Any]:
        outputs: dict[str, Any] = self.stack.resource(f"{self.host_name}-sysbox")["outputs"]
        return outputs

    def instance_outputs(self, prefix: str) -> dict[str, Any]:
        outputs: dict[str, Any] = self.stack.resource(self.resource_name(prefix))["outputs"]
        return outputs

    def docker_info(self, prefix: str) -> str:
        """`docker info` against the instance's socket, on the VM, with the host's CLI."""
        docker = f"{self.sysbox_outputs()['dockerDir']}/docker"
        docker_host = self.stack.outputs()["hosts"][self.host_name]["instances"][prefix][
            "dockerHost"
        ]
        return self.vm.out(f"{docker} -H {docker_host} info --format '{{{{.Name}}}} {{{{.ID}}}}'")


@pytest.fixture(scope="module")
def machine(testbed_artifacts: TestbedArtifacts) -> Iterator[TestHost]:
    props = sysbox_host_props(
        testbed_artifacts.docker,
        testbed_artifacts.sysbox,
        owner=f"dockyard/{STACK_NAME}/{HOST_NAME}-sysbox",
        host_name=HOST_NAME,
    )
    with booted_vm(layer=sysbox_layer(props)) as booted:
        yield booted


@pytest.fixture(scope="module")
def lifecycle(
    pulumi_backend: PulumiCli,
    machine: TestHost,
    testbed_artifacts: TestbedArtifacts,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Lifecycle]:
    work = copy_project(tmp_path_factory.mktemp("engine-lifecycle") / "project")
    state = Lifecycle(DockyardStack(pulumi_backend, work, STACK_NAME), machine, testbed_artifacts)
    try:
        state.stack.init()
        set_login_key(state.stack, machine)
        state.set_instances([instance_config(n) for n in (1, 2, 3)])
        yield state
    finally:
        state.stack.destroy(check=False)
        state.stack.pulumi("stack", "rm", "--yes", "--force", check=False)
        close_all()


@pytest.fixture
def step(lifecycle: Lifecycle, request: pytest.FixtureRequest) -> Iterator[Lifecycle]:
    """Run one step of the sequence: skip when an earlier one failed, record a failure."""
    if lifecycle.failed_step is not None:
        pytest.skip(f"needs the earlier step {lifecycle.failed_step}, which failed")
    failures_before = request.session.testsfailed
    started = time.monotonic()
    yield lifecycle
    # The call phase is reported before fixtures are torn down.
    if request.session.testsfailed > failures_before:
        lifecycle.failed_step = request.node.name
    print(f"{request.node.name}: {time.monotonic() - started:.0f} s")


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 300) -> None:
    @retry(
        retry=retry_if_result(lambda done: not done),
        stop=stop_after_delay(seconds),
        wait=wait_fixed(2),
        retry_error_callback=lambda _: False,
    )
    def poll() -> bool:
        return condition()

    if not poll():
        raise AssertionError(f"timed out after {seconds:.0f} s waiting for: {what}")


# --- 8. bad config: runs first, it needs no VM ------------------------------------------------


def test_bad_config_fails_at_preview_and_touches_no_host(
    pulumi_backend: PulumiCli, tmp_path: Path
) -> None:
    stack = DockyardStack(
        pulumi_backend, copy_project(tmp_path / "project"), unique_stack_name("badconfig")
    )
    host_name = HOST_NAME
    stack.init()
    try:
        stack.set_hosts(
            [
                {
                    "name": host_name,
                    "provision": {"kind": "qemu"},
                    "instances": [
                        {"prefix": "Dy1", "root": "/dy1"},
                        {"prefix": "dy2_", "root": "relative"},
                    ],
                }
            ]
        )
        preview = stack.preview(check=False)
        assert preview.returncode != 0
        output = preview.stdout + preview.stderr
        assert "invalid configuration of stack" in output, output
        # Every problem is listed, with its key path.
        assert "dockyard:hosts[0].instances[0].prefix" in output, output
        assert "dockyard:hosts[0].instances[1].root" in output, output
        up = stack.up(check=False)
        assert up.returncode != 0
        assert "invalid configuration of stack" in up.diagnostics(), up.diagnostics()
        assert not up.steps("create") or {s["type"] for s in up.steps("create")} == {
            "pulumi:pulumi:Stack"
        }, up.steps("create")
        # No VM was prepared or booted and nothing but the stack itself is in the state.
        assert not (vms_dir() / local_vm_name(stack.name, host_name)).exists()
        types = {r["type"] for r in stack.resources()}
        assert types <= {"pulumi:pulumi:Stack"}, types
    finally:
        stack.pulumi("stack", "rm", "--yes", "--force", check=False)


def test_preview_of_a_qemu_host_plans_its_vm_and_prepares_nothing(
    pulumi_backend: PulumiCli, testbed_artifacts: TestbedArtifacts, tmp_path: Path
) -> None:
    """The stack below runs on an existing machine; a `qemu` host's preview is checked here
    (its `up` and `destroy` are the Locally recipe's `ci` run)."""
    stack = DockyardStack(
        pulumi_backend, copy_project(tmp_path / "project"), unique_stack_name("qemupreview")
    )
    stack.init()
    try:
        provision = {"kind": "qemu", "suite": test_suite()}
        stack.set_hosts([stack_host(HOST_NAME, provision, testbed_artifacts)])
        preview = stack.preview()
        # Stack, Host component, LocalVm, SysboxHost and the instance.
        assert preview.change_summary == {"create": 5}, preview.change_summary
        assert any(":LocalVm::" in urn for urn in preview.urns("create")), preview.urns("create")
        assert not (vms_dir() / local_vm_name(stack.name, HOST_NAME)).exists()
    finally:
        stack.pulumi("stack", "rm", "--yes", "--force", check=False)


# --- 1. preview, then up with one host and three instances -----------------------------------


def test_preview_then_up_creates_the_host_and_three_instances(step: Lifecycle) -> None:
    preview = step.stack.preview()
    # Stack, Host component, SysboxHost and three instances.
    assert preview.change_summary == {"create": 6}, preview.change_summary
    # Networks the stack file leaves out are the host's to choose, at create: no input.
    planned = _preview_inputs(preview, step.resource_name("dy2_"))
    assert [key for key in ("bridgeCidr", "poolBase", "poolSize") if planned.get(key)] == [], (
        planned
    )

    up = step.stack.up()
    assert up.change_summary == {"create": 6}, up.describe()
    # The host chose them, first fit, one claim after the other (in any order: the three
    # creates run in parallel).
    chosen = {p: step.instance_outputs(p)["networks"] for p in ("dy1_", "dy2_", "dy3_")}
    assert {(n["bridge"], n["poolBase"]) for n in chosen.values()} == {
        ("172.16.0.1/24", "172.18.0.0/19"),
        ("172.16.1.1/24", "172.19.0.0/19"),
        ("172.16.2.1/24", "172.20.0.0/19"),
    }, chosen

    host = step.stack.outputs()["hosts"][step.host_name]
    assert host["provision"] == "existing"
    assert host["address"] == runner.SSH_HOST
    assert host["port"] == step.machine.port
    assert host["user"] == runner.ROOT_USER
    assert host["dockerVersion"] == "29.2.1"
    assert host["sysboxVersion"] == "0.6.7"
    assert host["hostKey"].startswith("ssh-ed25519 ")
    assert sorted(host["instances"]) == ["dy1_", "dy2_", "dy3_"]
    for n in (1, 2, 3):
        inst = host["instances"][f"dy{n}_"]
        assert inst["root"] == f"/dy{n}"
        assert inst["socketPath"].startswith(f"/dy{n}/")
        assert inst["dockerHost"] == f"unix://{inst['socketPath']}"
        assert inst["serviceName"] == f"dy{n}_docker.service"
        assert inst["group"] == f"dy{n}_docker"
        assert str(host["port"]) in inst["sshForward"]

    infos = {prefix: step.docker_info(prefix) for prefix in ("dy1_", "dy2_", "dy3_")}
    # Three separate daemons: different engine IDs.
    assert len({info.split()[-1] for info in infos.values()}) == 3, infos
    for n in (1, 2, 3):
        assert Service.of(step.vm.shell, f"dy{n}_docker.service").active


def _preview_inputs(preview: Run, name: str) -> dict[str, Any]:
    """The inputs a `preview --json` plans for the resource named `name`."""
    for planned in preview.steps():
        if str(planned["urn"]).endswith(f"::{name}"):
            inputs: dict[str, Any] = (planned.get("newState") or {}).get("inputs") or {}
            return inputs
    raise AssertionError(f"no step for {name} in the preview: {preview.steps()}")


# --- 9. no secret in clear text in the state ------------------------------------------------


def test_state_holds_no_private_key_or_passphrase_in_clear(
    step: Lifecycle, pulumi_backend: PulumiCli
) -> None:
    private_key = step.machine.vm.private_key
    key_lines = [line for line in private_key.splitlines() if line and not line.startswith("-----")]
    assert key_lines, "the VM's private key should be readable with --show-secrets"
    # The plain export really shows what is searched for (else the search proves nothing).
    assert key_lines[0] in step.stack.pulumi("stack", "export", "--show-secrets").stdout

    exported = step.stack.export_text()
    assert SECRET_SIG in exported
    stored = [p for p in pulumi_backend.backend_dir.rglob("*") if p.is_file()]
    stored.append(step.stack.config_file)
    assert any(p.suffix == ".json" for p in stored), stored
    for text, where in [
        (exported, "stack export"),
        *((p.read_bytes().decode(errors="replace"), str(p)) for p in stored),
    ]:
        for line in key_lines:
            assert line not in text, f"private key material in clear text in {where}"
        assert TEST_PASSPHRASE not in text, f"the passphrase in clear text in {where}"


# --- 2. a second run changes nothing and opens no SSH connection ----------------------------


def test_second_preview_and_up_change_nothing_without_ssh(step: Lifecycle) -> None:
    before = step.vm.engine_logins()
    preview = step.stack.preview("--expect-no-changes")
    assert preview.change_summary == {}, preview.change_summary
    up = step.stack.up("--expect-no-changes")
    assert up.change_summary == {}, up.describe()
    # check and diff are local: not one login by the providers.
    assert step.vm.engine_logins() == before


# --- 3. refresh finds nothing to change ------------------------------------------------------


def test_refresh_finds_no_changes(step: Lifecycle) -> None:
    before = step.vm.engine_logins()
    refresh = step.stack.refresh("--expect-no-changes")
    assert refresh.change_summary == {}, refresh.describe()
    # read inspects the host over SSH: this is also the counter's positive control.
    assert step.vm.engine_logins() > before


# --- 4. drift: refresh reports it, up repairs it ---------------------------------------------


def test_drift_is_reported_by_refresh_and_repaired_by_up(step: Lifecycle) -> None:
    sh = step.vm.shell
    tag = "dockyard:dy1_"
    rules = IptablesRules.of(sh).tagged(tag)
    assert rules, IptablesRules.of(sh).lines
    # Delete one of dy1_'s rules, and stop dy2_'s unit (which takes its own rules with it).
    table, rule = rules[0].split(" ", 1)
    step.vm.out(f"iptables -w -t {table} {rule.replace('-A ', '-D ', 1)}")
    step.vm.out("systemctl stop dy2_docker.service")
    assert len(IptablesRules.of(sh).tagged(tag)) == len(rules) - 1

    refresh = step.stack.refresh("--diff")
    drifted = sorted([step.urn("dy1_"), step.urn("dy2_")])
    assert refresh.change_summary == {"update": 2}, refresh.describe()
    assert _changed_urns(refresh) == drifted, refresh.steps()
    for prefix, problem in (("dy1_", "iptables"), ("dy2_", "dy2_docker.service")):
        outputs = step.instance_outputs(prefix)
        assert outputs["healthy"] is False, outputs["health"]
        assert any(problem in p for p in outputs["health"]["problems"]), outputs["health"]

    up = step.stack.up()
    assert up.change_summary == {"update": 2}, up.describe()
    assert up.urns("update") == drifted
    assert Service.of(sh, "dy2_docker.service").active
    assert len(IptablesRules.of(sh).tagged(tag)) == len(rules)
    step.stack.refresh("--expect-no-changes")


def _changed_urns(run: Run) -> list[str]:
    """Resources a refresh found changed (update steps, or refresh steps carrying a diff)."""
    return sorted(
        {
            str(s["urn"])
            for s in run.steps() + run.outputs_steps()
            if s.get("op") == "update" or s.get("diffs") or s.get("detailedDiff")
        }
    )


# --- 5. edits: a new instance is only created; a member change is one update ---------------


def test_adding_an_instance_creates_only_it(step: Lifecycle) -> None:
    step.set_instances([instance_config(n) for n in (1, 2, 3, 4)])
    up = step.stack.up()
    # Only the new instance: the others keep their networks (no update).
    assert up.change_summary == {"create": 1}, up.describe()
    assert up.urns("create") == [step.urn("dy4_")]
    assert step.docker_info("dy4_")


def test_changing_members_is_one_update_in_place(step: Lifecycle) -> None:
    step.vm.out(f"id -u {MEMBER} >/dev/null 2>&1 || useradd --no-create-home {MEMBER}")
    step.set_instances([instance_config(1, [MEMBER]), *(instance_config(n) for n in (2, 3, 4))])
    up = step.stack.up()
    assert up.change_summary == {"update": 1}, up.describe()
    assert up.urns("update") == [step.urn("dy1_")]
    assert MEMBER in Group.of(step.vm.shell, "dy1_docker").members
    assert step.instance_outputs("dy1_")["members"] == [MEMBER]


# --- 6. an interrupted up: the next up converges ----------------------------------------------


def test_interrupted_up_then_up_converges(step: Lifecycle, tmp_path: Path) -> None:
    instances = [instance_config(1, [MEMBER]), *(instance_config(n) for n in (2, 3, 4, 5))]
    step.set_instances(instances)
    log = tmp_path / "interrupted-up.log"
    with log.open("w") as out:
        # Its own session, so the engine's children (language host, providers) can be
        # stopped with it: they are all processes this test started.
        cli = subprocess.Popen(
            step.stack.command("up", "--yes", "--skip-preview"),
            cwd=step.stack.work_dir,
            env=step.stack.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    started_by_cli: dict[int, str] = {}
    try:
        # Midway: the engine has begun creating dy5_ on the host (its root exists).
        _wait_for(
            lambda: cli.poll() is not None or step.vm.ok("test -d /dy5"),
            "the interrupted up to start creating dy5_",
            seconds=600,
        )
        assert cli.poll() is None, f"up finished before it could be interrupted:\n{log.read_text()}"
        # The engine's plugins (language host, dynamic providers) run in process groups of
        # their own: note them now, while their parent links still say whose they are.
        started_by_cli = descendants(cli.pid)
        cli.send_signal(signal.SIGKILL)
        cli.wait(timeout=60)
    finally:
        _kill_group(cli.pid)
    survivors = reap(started_by_cli)
    print(f"reaped {len(survivors)} orphaned engine process(es) of the killed CLI")
    assert [pid for pid in started_by_cli if _alive(pid, started_by_cli[pid])] == []

    # The killed CLI could not release the file backend's stack lock: `pulumi cancel` does.
    # (A no-op when the lock is gone already, hence no check.)
    step.stack.pulumi("cancel", "--yes", check=False)
    pending = step.stack.export()["deployment"].get("pending_operations") or []
    assert [(p["type"], p["resource"]["urn"].rsplit("::", 1)[-1]) for p in pending] == [
        ("creating", step.resource_name("dy5_"))
    ], pending

    cleared = step.stack.refresh("--clear-pending-creates")
    assert cleared.returncode == 0
    assert not step.stack.export()["deployment"].get("pending_operations")

    up = step.stack.up()
    assert up.change_summary == {"create": 1}, up.describe()
    assert up.urns("create") == [step.urn("dy5_")]
    assert step.docker_info("dy5_")
    step.stack.refresh("--expect-no-changes")
    for n in (1, 2, 3, 4, 5):
        assert Service.of(step.vm.shell, f"dy{n}_docker.service").active


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, ..., starttime)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def descendants(root: int) -> dict[int, str]:
    """pid -> start time of every live process below `root`."""
    parent_of: dict[int, int] = {}
    started: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields:
            parent_of[int(entry.name)] = int(fields[1])
            started[int(entry.name)] = fields[19]
    found: dict[int, str] = {}
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parent_of.items():
            if ppid == parent and pid not in found:
                found[pid] = started[pid]
                frontier.append(pid)
    return found


def _alive(pid: int, start: str) -> bool:
    """Still the same process (a reused pid has another start time) and not a zombie."""
    fields = _stat(pid)
    return fields is not None and fields[19] == start and fields[0] != "Z"


def reap(processes: dict[int, str]) -> list[int]:
    """SIGKILL those of `processes` that outlived their parent; only ever these pids."""
    killed = []
    for pid, start in processes.items():
        if _alive(pid, start):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    deadline = time.monotonic() + 30
    while any(_alive(p, processes[p]) for p in killed) and time.monotonic() < deadline:
        time.sleep(0.2)
    return killed


# --- 10. removing the first instance: one delete, no other instance touched ----------------


def test_removing_the_first_instance_changes_no_other_instance(step: Lifecycle) -> None:
    kept = ["dy2_", "dy3_", "dy4_", "dy5_"]
    before = {prefix: step.instance_outputs(prefix) for prefix in kept}
    removed = step.urn("dy1_")

    step.set_instances([instance_config(n) for n in (2, 3, 4, 5)])
    up = step.stack.up()
    # A fresh first-fit allocation would have moved dy2_ onto dy1_'s networks, and the
    # host's network claim would have refused that update (dy1_ is deleted last).
    assert up.change_summary == {"delete": 1}, up.describe()
    assert up.urns("delete") == [removed]
    for prefix in kept:
        after = step.instance_outputs(prefix)
        assert after["networks"] == before[prefix]["networks"], prefix
        for key in ("bridgeCidr", "fixedCidr", "poolBase", "poolSize"):
            assert after[key] == before[prefix][key], (prefix, key)
        assert Service.of(step.vm.shell, f"{prefix}docker.service").active, prefix
    assert dockyard_traces(step.vm.shell, ["dy1_"], ["/dy1"], shared=False) == []
    step.stack.preview("--expect-no-changes")


# --- 11. a host renamed in the stack file (same machine) --------------------------------------
# Before owner markers, the new resources adopted the running instances and the old ones then
# deleted them: `up` succeeded and the machine was left with nothing.


def test_renaming_the_host_is_refused_and_everything_keeps_running(step: Lifecycle) -> None:
    sh = step.vm.shell
    kept = [f"dy{n}_" for n in (2, 3, 4, 5)]
    engine_id = sh.out("/dy2/bin/docker info --format '{{.ID}}'")

    step.set_host(RENAMED)
    renamed = step.stack.up(check=False)
    assert renamed.returncode != 0, renamed.describe()
    # The renamed host's resources are created first: each instance create is refused,
    # naming the owner it would take over, and the run stops before any delete.
    owners = {p: f"dockyard/{step.stack.name}/{HOST_NAME}-{p}" for p in kept}
    said = renamed.diagnostics()
    refusals = [p for p in kept if f"instance {p} on this host belongs to {owners[p]}" in said]
    assert refusals, renamed.describe()
    # An expected refusal reads as Dockyard's message, not as a Python traceback.
    assert "Traceback" not in renamed.diagnostics(), renamed.describe()
    assert renamed.steps("delete") == [], "the refused run must stop before any delete"
    # The renamed host's SysboxHost was made: a second owner of the shared layer.
    assert f"{RENAMED}-sysbox" in [u.rsplit("::", 1)[1] for u in renamed.urns("create")]
    # The same daemons kept running, with their data and owners.
    for prefix in kept:
        assert Service.of(sh, f"{prefix}docker.service").active, prefix
        marker = sh.out(f"cat /{prefix.rstrip('_')}/.dockyard-instance").splitlines()[0]
        assert marker == f"owner={owners[prefix]}", marker
    assert sh.out("/dy2/bin/docker info --format '{{.ID}}'") == engine_id

    # Renaming back converges without touching an instance.
    step.set_host(HOST_NAME)
    back = step.stack.up()
    assert "update" not in back.change_summary, back.describe()
    # Only what the refused run made goes: the renamed host and its SysboxHost (whose delete
    # keeps the layer the instances use); no instance is created or deleted.
    deleted = sorted(u.rsplit("::", 1)[1] for u in back.urns("delete"))
    assert deleted == [RENAMED, f"{RENAMED}-sysbox"], back.describe()
    assert back.urns("create") == [], back.describe()
    assert sh.out("/dy2/bin/docker info --format '{{.ID}}'") == engine_id
    step.stack.preview("--expect-no-changes")


# --- 7. destroy: the host keeps nothing of Dockyard, a second destroy is a no-op --------------


def test_destroy_leaves_nothing_on_the_host(step: Lifecycle) -> None:
    # dy1_ was removed by an earlier step; it is checked for traces again all the same.
    prefixes = [f"dy{n}_" for n in (2, 3, 4, 5)]
    vm = step.vm
    # First everything Dockyard put on the machine, with --target as a user would.
    targets = [step.urn("sysbox"), *(step.urn(p) for p in prefixes)]
    partial = step.stack.destroy(*(arg for urn in targets for arg in ("--target", urn)))
    assert partial.change_summary == {"delete": 5}, partial.describe()
    assert sorted(partial.urns("delete")) == sorted(targets)
    traces = vm.dockyard_traces(["dy1_", *prefixes], [f"/dy{n}" for n in range(1, 6)])
    assert traces == [], traces
    assert vm.ok(f"id -u {MEMBER}"), "members are only taken out of the group"

    full = step.stack.destroy()
    # Host component, stack
    assert full.change_summary == {"delete": 2}, full.describe()

    again = step.stack.destroy()
    assert again.change_summary == {}, again.describe()
    assert step.stack.resources() == []
