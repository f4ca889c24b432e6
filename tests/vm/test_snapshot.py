"""Booted templates and clones: a VM from `-loadvm` in seconds, with its own identity and clock.

The module's clone and the session's `test_host` are the two VMs this process
runs at once (the machine-wide limit of two); the reboot test comes last.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import paramiko
import pytest

from dockyard_resources.transport import close_all, session
from dockyard_resources.vm import image, keys, probe, qmp, runner, snapshot
from tests.fixtures.vm import TestHost, snapshots_enabled, test_vm_spec, vm_slot

pytestmark = pytest.mark.vm

CLOCK_TOLERANCE = 5.0  # seconds, on top of the SSH round trip
MARKER = "/root/written-in-this-clone"

INFO_SNAPSHOTS = """List of snapshots present on all disks:
ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT
--        booted            245 MiB 2026-12-01 20:10:59 00:00:55.824
--        second              1 MiB 2026-12-01 20:12:00 00:00:58.001

List of partial (non-loadable) snapshots on 'virtio0':
ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT
2         partial             0 B 2026-12-01 20:13:00 00:00:00.000
"""


def test_hmp_replies_are_read_as_text() -> None:
    assert qmp.snapshot_tags(INFO_SNAPSHOTS) == ["booted", "second"]
    assert qmp.snapshot_tags("There is no snapshot available.\r\n") == []
    assert not qmp.hmp_failed("")
    assert qmp.hmp_failed("Error: Snapshot 'nope' does not exist in one or more devices\r\n")


def test_template_name_is_left_alone_by_the_reapers() -> None:
    spec = test_vm_spec("pytest-1-1")
    base = image.ensure_image(spec.suite)
    inputs = snapshot.template_inputs(spec, base)
    name = snapshot.template_name(inputs)
    assert name.startswith(f"template-{base.key}-")
    assert not name.startswith("pytest-")
    # The VM's own name is blanked: every test VM of this spec shares one template...
    assert snapshot.template_inputs(test_vm_spec("pytest-2-7"), base) == inputs
    # ... and another spec gets another one.
    other = snapshot.template_inputs(replace(spec, memory_mb=spec.memory_mb + 512), base)
    assert snapshot.template_name(other) != name
    assert inputs["qemu"].startswith("QEMU emulator version")


def test_a_layered_template_is_named_by_its_layer_and_its_inputs() -> None:
    spec = test_vm_spec("pytest-1-1")
    base = image.ensure_image(spec.suite)
    plain = snapshot.template_inputs(spec, base)

    def layer(**inputs: str) -> snapshot.Layer:
        return snapshot.Layer(name="extra", inputs=inputs, prepare=lambda _vm: None)

    layered = snapshot.template_inputs(spec, base, layer(script="a"))
    assert layered["tag"] == "extra" and plain["tag"] == snapshot.SNAPSHOT_TAG
    # Everything the booted template depends on, the layered one depends on too.
    assert {k: v for k, v in layered.items() if k in plain and k != "tag"} == {
        k: v for k, v in plain.items() if k != "tag"
    }
    name = snapshot.template_name(layered)
    assert name.startswith(f"template-{base.key}-extra-")
    assert snapshot.template_name(snapshot.template_inputs(spec, base, layer(script="b"))) != name
    assert snapshot.template_name(plain) != name


def test_launch_falls_back_to_a_cold_boot(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    booted: list[str] = []

    def broken_clone(spec: runner.VmSpec, layer: snapshot.Layer | None = None) -> runner.Vm:
        raise snapshot.SnapshotError("qemu did not start from snapshot 'booted': invalid")

    def cold_launch(spec: runner.VmSpec) -> runner.Vm:
        booted.append(spec.name)
        return runner.vm_for(spec.name)

    monkeypatch.setattr(snapshot, "clone", broken_clone)
    monkeypatch.setattr(runner, "launch", cold_launch)
    vm = snapshot.launch(test_vm_spec("pytest-fallback-1"))
    assert booted == ["pytest-fallback-1"]
    assert vm.state_dir.name == "pytest-fallback-1"
    assert "booting it cold instead" in capsys.readouterr().err
    # A layer's state is put on the cold-booted VM instead.
    prepared: list[str] = []
    layer = snapshot.Layer("extra", {}, lambda vm: prepared.append(vm.state_dir.name))
    snapshot.launch(test_vm_spec("pytest-fallback-2"), layer)
    assert booted[-1] == prepared[-1] == "pytest-fallback-2"


def assert_clock_is_now(host: TestHost) -> None:
    before = time.time()
    guest = float(host.run("date +%s.%N").stdout)
    after = time.time()
    assert before - CLOCK_TOLERANCE <= guest <= after + CLOCK_TOLERANCE, (before, guest, after)


def assert_own_identity(host: TestHost) -> None:
    record = host.vm.record()
    out = host.run(
        "hostname; cat /etc/machine-id; "
        "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2; "
        "ls /etc/ssh/ | grep -c '^ssh_host_.*_key$'"
    ).stdout.split()
    assert out == [record.name, record.machine_id, keys.fingerprint(record.host_key), "1"]


def probe_with(host: TestHost, *, private_key: str, host_key: str) -> tuple[int, str]:
    return probe.run_probe(
        host=runner.SSH_HOST,
        port=host.port,
        user=runner.ROOT_USER,
        private_key=private_key,
        host_key=host_key,
        command="true",
        timeout=30,
    )


@pytest.fixture(scope="module")
def clone() -> Iterator[TestHost]:
    """A clone of its own, made directly: no cold-boot fallback hides a broken snapshot."""
    with vm_slot():
        vm = snapshot.clone(test_vm_spec())
        try:
            yield TestHost(vm)
        finally:
            close_all()
            vm.destroy()


def test_clone_comes_up_from_the_snapshot(
    clone: TestHost, capsys: pytest.CaptureFixture[str]
) -> None:
    info = snapshot.clone_info(clone.vm)
    meta = snapshot.template_meta(info["template"])
    with capsys.disabled():
        print(
            f"\n[clone start] {info['startSeconds']} s: copy {info['copySeconds']} s "
            f"(template built in this call: {info['templateBuilt']}), loadvm "
            f"{info['loadSeconds']} s, own identity + SSH {info['adoptSeconds']} s; "
            f"template build {meta['buildSeconds']} s (boot {meta['bootSeconds']} s, "
            f"savevm {meta['saveSeconds']} s, VM state {meta['vmStateBytes'] // 2**20} MiB)"
        )
    assert not runner.vm_for(info["template"]).is_alive()  # its QEMU quit after savevm
    assert meta["inputs"]["qemu"] == snapshot.qemu_version()
    # Still the template's kernel boot: the clone was loaded, not booted.
    assert clone.boot_id() == meta["bootId"]
    argv = " ".join(clone.vm.qemu_argv(clone.port, loadvm=snapshot.SNAPSHOT_TAG))
    assert f"-loadvm {snapshot.SNAPSHOT_TAG}" in argv


def test_clone_answers_with_its_own_pinned_keys_only(clone: TestHost) -> None:
    ssh = session(clone.target)
    assert ssh.host_key.split()[:2] == clone.host_key.split()[:2]
    assert clone.run("id -u").stdout.strip() == "0"
    assert_own_identity(clone)
    info = snapshot.clone_info(clone.vm)
    assert keys.fingerprint(info["templateHostKey"]) != keys.fingerprint(clone.host_key)
    template_key = (clone.vm.state_dir / snapshot.TEMPLATE_KEY).read_text()
    with pytest.raises(probe.ProbeHostKeyMismatch):  # the template's host key is gone
        probe_with(clone, private_key=clone.vm.private_key, host_key=info["templateHostKey"])
    with pytest.raises(paramiko.AuthenticationException):  # so is its client key
        probe_with(clone, private_key=template_key, host_key=clone.host_key)


def test_clone_clock_is_this_machines(clone: TestHost) -> None:
    assert_clock_is_now(clone)


def test_two_clones_are_independent(clone: TestHost, test_host: TestHost) -> None:
    if not snapshots_enabled():
        pytest.skip("DOCKYARD_TEST_VM_SNAPSHOTS=0: test_host was booted cold, not cloned")
    assert "template" in snapshot.clone_info(test_host.vm)
    assert test_host.vm.record().name != clone.vm.record().name
    assert test_host.host_key != clone.host_key
    try:
        clone.run(f"echo clone > {MARKER}; sync")
        assert test_host.run(f"test -e {MARKER}", check=False).exit_code != 0
        test_host.run(f"echo test-host > {MARKER}.host")
        assert clone.run(f"test -e {MARKER}.host", check=False).exit_code != 0
        assert clone.run(f"cat {MARKER}").stdout.strip() == "clone"
    finally:
        test_host.run(f"rm -f {MARKER}.host")


def test_load_snapshot_over_qmp_restores_the_clone(clone: TestHost) -> None:
    clone.run(f"echo before-restore > {MARKER}.restore; sync")
    close_all()  # the guest forgets every connection
    started = time.monotonic()
    snapshot.restore(clone.vm)
    print(f"restore (loadvm over QMP + own identity) took {time.monotonic() - started:.1f} s")
    assert clone.run(f"test -e {MARKER}.restore", check=False).exit_code != 0
    assert_own_identity(clone)
    assert_clock_is_now(clone)


def test_loadvm_of_a_missing_snapshot_fails(clone: TestHost) -> None:
    assert clone.vm.snapshot_tags() == [snapshot.SNAPSHOT_TAG]
    with pytest.raises(runner.VmError, match="no snapshot 'nope'"):
        clone.vm.load_snapshot("nope")
    assert clone.run("true").exit_code == 0  # the VM runs on as it was


def test_clone_reboots_with_a_new_boot_id_and_the_right_clock(clone: TestHost) -> None:
    before = clone.boot_id()
    after = clone.reboot()
    assert after != before
    assert clone.boot_id() == after
    # After the reboot the guest read its clock from the RTC, which QEMU keeps on host time.
    assert_clock_is_now(clone)
    assert_own_identity(clone)  # now from its own seed disk and kernel command line
