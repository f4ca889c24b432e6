"""MetadataBlock and HostKeyRotation on the QEMU test host: real systemd, iptables and sshd.

The test host has no metadata service, so one stands in on the real address: a dummy
interface holding 169.254.169.254 and busybox's httpd serving a `user-data` file there.
Packets to it go through OUTPUT like packets to the cloud's service do. The providers connect
as the passwordless-sudo user `dockyard`, as on a cloud host. The tests run in file order on
the module's VM: the block, its reboot and its removal first, the host key rotation last (the
rotated key is not the one the VM's own tooling pins).
"""

from __future__ import annotations

from typing import Any

import pytest

from dockyard_resources.providers.host_key import HostKeyRotationProvider, NewHostKeyProvider
from dockyard_resources.providers.metadata_block import MetadataBlockProvider
from dockyard_resources.render import metadata_block as layout
from dockyard_resources.transport import HostKeyMismatch, SshTarget, close_all, session
from dockyard_resources.vm import runner
from tests.fixtures.vm import TestHost
from tests.hosts.checks import Service, SshShell

# Not in `make test` (scripts/test.sh deselects the marker): `make test-outside-budget`.
pytestmark = [pytest.mark.vm, pytest.mark.outside_budget, pytest.mark.timeout(3600)]

HOST = "vm-1"
# The stand-in metadata service (re-created after a reboot: nothing of it is persistent).
SERVE_METADATA = f"""
ip link show dymeta >/dev/null 2>&1 || ip link add dymeta type dummy
ip addr replace {layout.METADATA_ADDRESS}/32 dev dymeta
ip link set dymeta up
mkdir -p /run/dymeta
echo '#cloud-config' >/run/dymeta/user-data
pgrep -f 'httpd -p {layout.METADATA_ADDRESS}:80' >/dev/null \\
  || busybox httpd -p {layout.METADATA_ADDRESS}:80 -h /run/dymeta
"""
FETCH = f"curl -sS --max-time 30 -o /dev/null http://{layout.METADATA_ADDRESS}/user-data"
AS_NOBODY = "setpriv --reuid=65534 --regid=65534 --clear-groups "
# curl's exit code for "Failed to connect": what REJECT gives (a DROP would time out).
CONNECTION_REFUSED = 7


def connection(host: TestHost, host_key: str | None = None) -> dict[str, Any]:
    return {
        "host": runner.SSH_HOST,
        "port": host.port,
        "user": runner.SUDO_USER,
        "privateKey": host.vm.private_key,
        "hostKey": host_key or host.host_key,
        "connectDeadline": 120,
    }


def block_props(host: TestHost, *, throwaway: bool, host_key: str | None = None) -> dict[str, Any]:
    return {
        "connection": connection(host, host_key),
        "hostName": HOST,
        "throwaway": throwaway,
    }


def fetch_codes(sh: SshShell) -> tuple[int, int]:
    """curl's exit code fetching the user data as root, then as nobody."""
    sh.out(SERVE_METADATA)
    return sh.run(FETCH)[0], sh.run(AS_NOBODY + FETCH)[0]


def test_metadata_block_keeps_non_root_users_out_also_after_a_reboot(
    host: TestHost, sh: SshShell
) -> None:
    assert fetch_codes(sh) == (0, 0), "the stand-in metadata service must answer everyone"

    created = MetadataBlockProvider().create(block_props(host, throwaway=False))
    assert created.outs["drift"] == []
    assert fetch_codes(sh) == (0, CONNECTION_REFUSED)
    # Converges: a second create changes nothing and adds no second rule.
    MetadataBlockProvider().create(block_props(host, throwaway=False))
    rules = sh.out(f"iptables -w -S OUTPUT | grep -c -- {layout.RULE_TAG}")
    assert rules == "1"

    host.reboot()
    unit = Service.of(sh, layout.UNIT_NAME)
    assert unit.active and unit.enabled
    assert fetch_codes(sh) == (0, CONNECTION_REFUSED)
    read = MetadataBlockProvider().read("id", created.outs)
    assert read.outs["drift"] == []

    # A rule someone removed is drift, and update puts it back.
    sh.out(f"{layout.PROGRAM_PATH} down")
    drift = MetadataBlockProvider().read("id", created.outs).outs["drift"]
    assert any("rule" in line for line in drift), drift
    MetadataBlockProvider().update("id", {**created.outs, "drift": drift}, created.outs)
    assert fetch_codes(sh) == (0, CONNECTION_REFUSED)


def test_metadata_block_delete_removes_it_unless_the_server_is_thrown_away(
    host: TestHost, sh: SshShell
) -> None:
    provider = MetadataBlockProvider()
    provider.create(block_props(host, throwaway=False))

    provider.delete("id", block_props(host, throwaway=True))
    assert fetch_codes(sh) == (0, CONNECTION_REFUSED), "a throw-away server's block stays"

    provider.delete("id", block_props(host, throwaway=False))
    assert fetch_codes(sh) == (0, 0)
    assert not Service.of(sh, layout.UNIT_NAME).unit_file_exists
    assert not sh.ok(f"test -e {layout.PROGRAM_PATH}")
    assert not sh.ok(f"iptables -w -S OUTPUT | grep -q -- {layout.RULE_TAG}")
    provider.delete("id", block_props(host, throwaway=False))  # twice: nothing left to do


def _ssh_main_pid(sh: SshShell) -> str:
    return sh.out("systemctl show -p MainPID --value ssh.service")


def test_host_key_rotation_with_systemd_sshd(host: TestHost, sh: SshShell) -> None:
    old = host.host_key
    main_pid = _ssh_main_pid(sh)
    new = (
        NewHostKeyProvider()
        .create({"connection": connection(host), "hostName": HOST, "serverId": "vm"})
        .outs["publicKey"]
    )
    rotated = (
        HostKeyRotationProvider()
        .create({"connection": connection(host), "hostName": HOST, "newHostKey": new})
        .outs
    )
    assert rotated["hostKey"] == new
    assert rotated["keyFile"] == "/etc/ssh/ssh_host_ed25519_key"
    close_all()

    rotated_sh = SshShell(SshTarget.from_props(connection(host, new)))
    # Reloaded in place: the same ssh.service process, still running.
    assert rotated_sh.out("systemctl is-active ssh.service") == "active"
    assert _ssh_main_pid(rotated_sh) == main_pid
    fingerprint = rotated_sh.out("ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f2")
    assert fingerprint == rotated["hostKeyFingerprint"]
    with pytest.raises(HostKeyMismatch):
        session(SshTarget.from_props(connection(host, old)))
    assert HostKeyRotationProvider().read("id", rotated).outs["drift"] == []
