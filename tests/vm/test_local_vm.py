"""`LocalVm` through its dynamic provider object: check, create, read, delete."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard_resources.transport import SshTarget, close_all, session
from dockyard_resources.vm import runner
from dockyard_resources.vm.local_vm import LocalVmProvider
from tests.fixtures.vm import new_vm_name, test_suite, vm_slot

pytestmark = pytest.mark.vm


def test_check_coerces_numbers_and_names_bad_inputs() -> None:
    provider = LocalVmProvider()
    ok = provider.check({}, {"vmName": "dev-1", "memoryMb": 1024.0, "cpus": 1.0, "diskGb": 8.0})
    assert ok.failures == []
    assert ok.inputs["memoryMb"] == 1024 and isinstance(ok.inputs["memoryMb"], int)
    assert ok.inputs["suite"] == "trixie"
    bad = provider.check({}, {"vmName": "Dev_1", "memoryMb": 100, "cpus": 1.5, "suite": "sid"})
    assert {f.property for f in bad.failures} == {"vmName", "memoryMb", "cpus", "suite"}


def test_diff_replaces_on_any_input_change() -> None:
    provider = LocalVmProvider()
    olds = {"vmName": "a", "memoryMb": 2048, "cpus": 2, "diskGb": 10, "suite": "trixie"}
    assert provider.diff("a", olds, {**olds, "memoryMb": 2048.0}).changes is False
    changed = provider.diff("a", olds, {**olds, "diskGb": 20.0})
    assert changed.changes is True
    assert changed.replaces == ["diskGb"]
    assert changed.delete_before_replace is True


def test_create_read_delete_round_trip() -> None:
    provider = LocalVmProvider()
    name = new_vm_name()
    checked = provider.check(
        {}, {"vmName": name, "memoryMb": 1024.0, "cpus": 1.0, "diskGb": 8.0, "suite": test_suite()}
    )
    assert checked.failures == []
    inputs = checked.inputs
    with vm_slot():
        created = provider.create(inputs)
        try:
            outs = created.outs
            assert created.id == name
            assert outs is not None
            assert outs["host"] == "127.0.0.1" and outs["user"] == "root"
            assert Path(outs["overlayPath"]).is_file()
            target = SshTarget.from_props(
                {k: outs[k] for k in ("host", "port", "user", "privateKey", "hostKey")}
            )
            ssh = session(target)
            assert ssh.fingerprint == outs["hostKeyFingerprint"]
            assert ssh.run("nproc", step="nproc").stdout.strip() == "1"

            read = provider.read(name, outs)
            assert read.id == name
            assert read.outs is not None and read.outs["pid"] == outs["pid"]
        finally:
            close_all()
            provider.delete(name, created.outs or {})
        assert not runner.vm_for(name).is_alive()
        assert not Path(outs["overlayPath"]).exists()
        assert not runner.pid_running(int(outs["pid"]))
        assert provider.read(name, outs).id == ""  # gone: refresh drops it
        provider.delete(name, outs)  # a second delete is a no-op
