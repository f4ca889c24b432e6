"""A jump host proven on the QEMU test host: the VM is the jump host, and the host behind it
is the VM's own sshd on 127.0.0.1:22 inside the VM, which this machine cannot reach (it only
reaches the VM through QEMU's forwarded port). The VM's sshd logs the forwarded channel."""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterator

import pytest

from dockyard_resources.transport import (
    ConnectTimeout,
    HostKeyMismatch,
    SshTarget,
    close_all,
    session,
)
from dockyard_resources.transport.target import JUMP_HOST
from dockyard_resources.vm import keys
from tests.fixtures.vm import TestHost

pytestmark = pytest.mark.vm

INSIDE = ("127.0.0.1", 22)  # the VM's sshd, as seen from inside the VM
DEBUG_CONF = "/etc/ssh/sshd_config.d/05-dockyard-test-debug.conf"


@pytest.fixture
def logging_forwards(test_host: TestHost) -> Iterator[str]:
    """The VM's sshd at LogLevel DEBUG1 (it then logs each forwarded channel) for this test;
    yields the VM's clock at the start, for `journalctl --since`. The shared test host's
    config is restored afterwards."""
    test_host.run(f"echo 'LogLevel DEBUG1' > {DEBUG_CONF} && sshd -t && systemctl reload ssh")
    try:
        yield test_host.run("date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    finally:
        close_all()
        test_host.run(f"rm -f {DEBUG_CONF} && systemctl reload ssh")


def behind_the_vm(test_host: TestHost, *, host_key: str | None = None) -> SshTarget:
    jump = test_host.target_as("root")
    hop = jump.hop(jump.host, port=jump.port, user="root", host_key=test_host.host_key)
    return SshTarget(
        host=INSIDE[0],
        port=INSIDE[1],
        user="root",
        private_key=test_host.vm.private_key,
        host_key=host_key or test_host.host_key,
        use_agent=False,
        look_for_keys=False,
        connect_deadline=60,
        jump=hop,
    )


def test_the_host_behind_the_jump_host_is_reached_only_through_it(
    test_host: TestHost, logging_forwards: str
) -> None:
    target = behind_the_vm(test_host)
    assert target.jump is not None and target.jump.role == JUMP_HOST
    # From this machine the address leads nowhere (or to some other sshd, whose key the pin
    # refuses): only the VM can reach it.
    direct = dataclasses.replace(target, jump=None, connect_deadline=3.0)
    with pytest.raises((ConnectTimeout, HostKeyMismatch)):
        session(direct)
    close_all()

    ssh = session(target)
    # sshd saw a connection to 127.0.0.1:22 from 127.0.0.1: from inside the VM. Through
    # QEMU's forwarded port it would see the guest address and QEMU's gateway instead.
    client, _, server, port = ssh.run("echo $SSH_CONNECTION", step="where").stdout.split()
    assert (client, server, int(port)) == ("127.0.0.1", *INSIDE)
    journal = test_host.run(
        f"journalctl -u ssh.service --since {shlex.quote(logging_forwards)} -o cat"
    ).stdout
    assert "server_request_direct_tcpip: originator 127.0.0.1 port 0, target 127.0.0.1 port 22" in (
        journal
    )


def test_the_host_behind_the_jump_host_is_pinned_too(test_host: TestHost) -> None:
    other = keys.generate_ed25519("not-the-vm").public_line
    with pytest.raises(HostKeyMismatch) as refused:
        session(behind_the_vm(test_host, host_key=other))
    assert f"{INSIDE[0]}:{INSIDE[1]} via jump host" in str(refused.value)
    assert keys.fingerprint(test_host.host_key) in str(refused.value)
