"""A jump host (bastion): the connection goes through its sshd, both host keys pinned.

The jump host is a second real sshd (`jump_sshd`) logging at DEBUG1, where OpenSSH records
every channel it forwards (`server_request_direct_tcpip: originator ..., target ...`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard_resources.operate.deployed import target_of
from dockyard_resources.transport import (
    ConnectTimeout,
    HostKeyMismatch,
    SshTarget,
    TransportError,
    close_all,
    fingerprint_of,
    session,
)
from tests.fixtures.sshd import (
    SshdServer,
    SshKeys,
    discard_sshd,
    free_port,
    keygen,
    started_sshd,
)


def jump_of(server: SshdServer, **overrides: object) -> SshTarget:
    options: dict[str, object] = {"host_key": server.host_key_line(), "role": "jump host"}
    return server.target(**{**options, **overrides})


def test_connects_through_the_jump_host_with_both_keys_pinned(
    sshd: SshdServer, jump_sshd: SshdServer
) -> None:
    target = sshd.target(host_key=sshd.host_key_line(), jump=jump_of(jump_sshd))
    ssh = session(target)
    assert ssh.run("echo through", step="jump").stdout == "through\n"
    assert jump_sshd.forwarded() == [(sshd.host, sshd.port)]
    assert ssh.host_key == sshd.host_key_line()


def test_hosts_behind_one_jump_host_share_its_connection(
    sshd: SshdServer, jump_sshd: SshdServer, ssh_keys: SshKeys
) -> None:
    other = started_sshd(ssh_keys)
    try:
        for server in (sshd, other):
            target = server.target(host_key=server.host_key_line(), jump=jump_of(jump_sshd))
            assert session(target).run("echo ok", step="shared").stdout == "ok\n"
        assert sorted(jump_sshd.forwarded()) == sorted(
            [(sshd.host, sshd.port), (other.host, other.port)]
        )
        assert jump_sshd.logins() == 1
    finally:
        discard_sshd(other)


@pytest.mark.timeout(60)  # a retried mismatch would run into the 300 s deadline
def test_jump_host_key_mismatch_is_a_hard_error(
    sshd: SshdServer, jump_sshd: SshdServer, tmp_path: Path
) -> None:
    wrong = keygen(tmp_path / "other", "ed25519").public_line
    target = sshd.target(
        host_key=sshd.host_key_line(),
        jump=jump_of(jump_sshd, host_key=wrong),
        connect_deadline=300,
    )
    with pytest.raises(HostKeyMismatch) as caught:
        session(target)
    message = str(caught.value)
    assert f"jump host {jump_sshd.host}:{jump_sshd.port}" in message
    assert "jumpHost.hostKey" in message
    assert fingerprint_of(wrong) in message
    assert jump_sshd.logins() == 0 and sshd.logins() == 0


@pytest.mark.timeout(60)
def test_target_key_mismatch_behind_the_jump_host_is_a_hard_error(
    sshd: SshdServer, jump_sshd: SshdServer, tmp_path: Path
) -> None:
    wrong = keygen(tmp_path / "other", "ed25519").public_line
    target = sshd.target(host_key=wrong, jump=jump_of(jump_sshd), connect_deadline=300)
    with pytest.raises(HostKeyMismatch) as caught:
        session(target)
    assert f"{sshd.host}:{sshd.port} via jump host" in str(caught.value)
    assert sshd.logins() == 0


def test_unpinned_jump_host_or_target_is_refused_before_connecting(
    sshd: SshdServer, jump_sshd: SshdServer
) -> None:
    unpinned_jump = sshd.target(
        host_key=sshd.host_key_line(), jump=jump_of(jump_sshd, host_key=None)
    )
    with pytest.raises(TransportError, match=r"no pinned host key.*set jumpHost\.hostKey"):
        session(unpinned_jump)
    unpinned_target = sshd.target(host_key=None, jump=jump_of(jump_sshd))
    with pytest.raises(TransportError, match=r"no pinned host key.*set hostKey"):
        session(unpinned_target)
    assert jump_sshd.logins() == 0 and sshd.logins() == 0


def test_a_jump_host_that_refuses_forwarding_says_so(sshd: SshdServer, ssh_keys: SshKeys) -> None:
    jump = started_sshd(ssh_keys, "AllowTcpForwarding no\n")
    try:
        target = sshd.target(host_key=sshd.host_key_line(), jump=jump_of(jump), connect_deadline=60)
        with pytest.raises(TransportError, match=r"refuses to forward.*AllowTcpForwarding"):
            session(target)
    finally:
        discard_sshd(jump)


def test_a_host_the_jump_host_cannot_reach_is_retried_until_the_deadline(
    jump_sshd: SshdServer, sshd: SshdServer
) -> None:
    port = free_port()  # nothing listens there
    target = SshTarget(
        host="127.0.0.1",
        port=port,
        host_key=sshd.host_key_line(),
        jump=jump_of(jump_sshd),
        use_agent=False,
        look_for_keys=False,
        private_key=sshd.keys.clients["ed25519"].text,
        connect_deadline=3,
    )
    with pytest.raises(ConnectTimeout) as caught:
        session(target)
    assert caught.value.attempts > 1
    assert f"cannot reach 127.0.0.1:{port}" in caught.value.last_error
    assert f"127.0.0.1:{port} via jump host {jump_sshd.host}:{jump_sshd.port}" in str(caught.value)


def test_connection_props_carry_the_jump_host(sshd: SshdServer, jump_sshd: SshdServer) -> None:
    """The `connection` input of the resources, and the day-2 target read back from the
    state: the jump host gets the host's key."""
    props = {
        "host": sshd.host,
        "port": float(sshd.port),  # as Pulumi sends numbers
        "user": "root",
        "privateKey": sshd.keys.clients["ed25519"].text,
        "hostKey": sshd.host_key_line(),
        "jumpHost": {
            "host": jump_sshd.host,
            "port": float(jump_sshd.port),
            "user": "root",
            "hostKey": jump_sshd.host_key_line(),
        },
    }
    ssh = session(SshTarget.from_props(props))
    assert ssh.run("echo props", step="props").stdout == "props\n"
    assert jump_sshd.forwarded() == [(sshd.host, sshd.port)]
    # Day-2 commands (status, tunnel, logs) read the same dict from the state.
    close_all()
    day2 = session(target_of(props))
    assert day2.run("echo day-2", step="day-2").stdout == "day-2\n"
    assert jump_sshd.forwarded() == [(sshd.host, sshd.port)] * 2


def test_closing_after_the_jump_host_went_away_does_not_fail(
    sshd: SshdServer, jump_sshd: SshdServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = sshd.target(host_key=sshd.host_key_line(), jump=jump_of(jump_sshd))
    ssh = session(target)
    ssh.run("true", step="before")
    # Closing says goodbye over the jump host's connection. When that connection is dead
    # but its reader has not noticed yet, paramiko raises EOFError (a race, pinned here).
    client = ssh._client
    assert client is not None
    real_close = client.close

    def close_over_a_dead_jump() -> None:
        real_close()
        raise EOFError

    monkeypatch.setattr(client, "close", close_over_a_dead_jump)
    jump_sshd.drop_connections()
    close_all()  # e.g. at exit, or a test's teardown after its sshd stopped
