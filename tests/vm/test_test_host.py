"""The shared test host: pinned SSH, root and sudo, per-VM identity."""

from __future__ import annotations

import pytest

from dockyard_resources.transport import HostKeyMismatch, fingerprint_of, session
from dockyard_resources.vm import keys
from tests.fixtures.vm import TEST_VM_DISK_GB, TestHost

pytestmark = pytest.mark.vm


def test_ssh_uses_the_pinned_host_key(test_host: TestHost) -> None:
    ssh = session(test_host.target)
    assert ssh.host_key.split()[:2] == test_host.host_key.split()[:2]
    assert ssh.fingerprint == keys.fingerprint(test_host.host_key)
    assert ssh.fingerprint == fingerprint_of(test_host.host_key)
    assert test_host.run("id -u").stdout.strip() == "0"


def test_a_wrong_pin_is_refused(test_host: TestHost) -> None:
    other = keys.generate_ed25519("not-the-vm")
    with pytest.raises(HostKeyMismatch) as failure:
        session(test_host.target_as("root", host_key=other.public_line))
    assert other.fingerprint in str(failure.value)
    assert keys.fingerprint(test_host.host_key) in str(failure.value)


def test_sudo_user_runs_as_itself_and_as_root(test_host: TestHost) -> None:
    ssh = session(test_host.sudo_target)
    assert ssh.run("id -un", step="as user", sudo=False).stdout.strip() == "dockyard"
    assert ssh.run("id -un", step="via sudo", sudo=True).stdout.strip() == "root"


def test_each_vm_gets_its_own_identity(test_host: TestHost) -> None:
    record = test_host.vm.record()
    out = test_host.run(
        "cat /etc/machine-id; hostname; "
        "ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2; "
        "ls /etc/ssh/ | grep -c '^ssh_host_.*_key$'"
    ).stdout.split()
    assert out[0] == record.machine_id
    assert out[1] == record.name
    assert out[2] == keys.fingerprint(record.host_key)
    assert out[3] == "1"  # only the pinned ed25519 key, none baked into the image


def test_root_fs_grew_to_the_overlay_size(test_host: TestHost) -> None:
    size_bytes = int(test_host.run("df --output=size -B1 / | tail -1").stdout)
    assert size_bytes > (TEST_VM_DISK_GB - 1) * 1024**3


def test_no_system_docker_runs(test_host: TestHost) -> None:
    states = test_host.run(
        "systemctl is-enabled docker.service docker.socket containerd.service", check=False
    ).stdout.split()
    assert states == ["masked", "masked", "masked"]
