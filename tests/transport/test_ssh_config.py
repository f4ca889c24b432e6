"""A stack host with `sshConfig: true` reached as `ssh ALIAS` would reach it: HostName, Port,
User, IdentityFile, Include, ProxyJump and ProxyCommand from ~/.ssh/config, the stack
file's own values winning. Each goes from the stack file's host entry to a real sshd."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.config import ExistingProvision, validate_hosts
from dockyard_resources.operate.deployed import target_of
from dockyard_resources.transport import SshTarget, close_all, session
from tests.fixtures.sshd import SshdServer, SshKeys, SudoUser


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of the test's own, so only its ~/.ssh counts (and no agent)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    (tmp_path / ".ssh").mkdir()
    return tmp_path


def stack_connection(**provision: Any) -> dict[str, Any]:
    """The `connection` input the program builds for a host entry of the stack file."""
    raw = {"name": "build-1", "provision": {"kind": "existing", **provision}, "instances": []}
    [spec] = validate_hosts([raw])
    assert isinstance(spec.provision, ExistingProvision)
    return spec.provision.connection_props()


def stack_target(**provision: Any) -> SshTarget:
    return SshTarget.from_props(stack_connection(**provision))


def known_hosts(home: Path, *servers: SshdServer) -> None:
    lines = [f"[{s.host}]:{s.port} {s.host_key_line()}\n" for s in servers]
    (home / ".ssh" / "known_hosts").write_text("".join(lines))


def test_user_port_hostname_and_identity_file_come_from_the_config(
    sshd: SshdServer, ssh_keys: SshKeys, sudo_user: SudoUser, home: Path
) -> None:
    (home / ".ssh" / "config").write_text(
        "Host build-box\n"
        f"  HostName {sshd.host}\n"
        f"  Port {sshd.port}\n"
        f"  User {sudo_user.name}\n"
        f"  IdentityFile {ssh_keys.clients['ecdsa'].path}\n"
    )
    ssh = session(stack_target(address="build-box", sshConfig=True))
    assert ssh.address == f"{sshd.host}:{sshd.port}"
    assert ssh.run("id -un", step="who", sudo=False).stdout == f"{sudo_user.name}\n"
    assert ssh.run("id -un", step="root").stdout == "root\n"  # through sudo -n


def test_the_stack_files_own_user_and_port_win(
    sshd: SshdServer, ssh_keys: SshKeys, sudo_user: SudoUser, home: Path
) -> None:
    (home / ".ssh" / "config").write_text(
        "Host build-box\n"
        f"  HostName {sshd.host}\n"
        "  Port 1\n"
        f"  User {sudo_user.name}\n"
        f"  IdentityFile {ssh_keys.clients['ed25519'].path}\n"
    )
    target = stack_target(address="build-box", sshConfig=True, user="root", port=sshd.port)
    assert session(target).run("id -un", step="who", sudo=False).stdout == "root\n"


def test_included_files_are_read(sshd: SshdServer, ssh_keys: SshKeys, home: Path) -> None:
    (home / ".ssh" / "config").write_text("Include config.d/*\n")
    (home / ".ssh" / "config.d").mkdir()
    (home / ".ssh" / "config.d" / "build").write_text(
        "Host build-box\n"
        f"  HostName {sshd.host}\n"
        f"  Port {sshd.port}\n"
        "  User root\n"
        f"  IdentityFile {ssh_keys.clients['rsa'].path}\n"
    )
    ssh = session(stack_target(address="build-box", sshConfig=True))
    assert ssh.address == f"{sshd.host}:{sshd.port}"
    assert ssh.run("echo included", step="include").stdout == "included\n"


def test_proxy_jump_goes_through_the_jump_host_pinned_by_known_hosts(
    sshd: SshdServer, jump_sshd: SshdServer, ssh_keys: SshKeys, home: Path
) -> None:
    key = ssh_keys.clients["ed25519"].path
    (home / ".ssh" / "config").write_text(
        "Host build-box\n"
        f"  HostName {sshd.host}\n"
        f"  Port {sshd.port}\n"
        "  ProxyJump gate,gate\n"  # a chain: the jump host, then through it to itself
        "Host gate\n"
        f"  HostName {jump_sshd.host}\n"
        f"  Port {jump_sshd.port}\n"
        "Host *\n"
        "  User root\n"
        f"  IdentityFile {key}\n"
    )
    known_hosts(home, sshd, jump_sshd)
    ssh = session(stack_target(address="build-box", sshConfig=True))
    assert ssh.run("echo jumped", step="proxyjump").stdout == "jumped\n"
    assert jump_sshd.forwarded() == [
        (jump_sshd.host, jump_sshd.port),
        (sshd.host, sshd.port),
    ]
    # Day-2 commands connect the same way from the state (the SysboxHost's connection).
    state = {**stack_connection(address="build-box", sshConfig=True), "hostKey": ssh.host_key}
    close_all()
    day2 = session(target_of(state))
    assert day2.run("echo again", step="day-2").stdout == "again\n"
    assert jump_sshd.forwarded()[-1] == (sshd.host, sshd.port)
    assert len(jump_sshd.forwarded()) == 4


def test_proxy_command_is_run_like_ssh_runs_it(
    sshd: SshdServer, jump_sshd: SshdServer, ssh_keys: SshKeys, home: Path
) -> None:
    key = ssh_keys.clients["ed25519"].path
    (home / "jump_known_hosts").write_text(
        f"[{jump_sshd.host}]:{jump_sshd.port} {jump_sshd.host_key_line()}\n"
    )
    # OpenSSH's own client as the ProxyCommand (quoted options: run through the shell).
    proxy = (
        f"ssh -F /dev/null -i {key} -o BatchMode=yes -o StrictHostKeyChecking=yes"
        f" -o 'UserKnownHostsFile {home}/jump_known_hosts' -p {jump_sshd.port}"
        f" -W %h:%p root@{jump_sshd.host}"
    )
    (home / ".ssh" / "config").write_text(
        "Host build-box\n"
        f"  HostName {sshd.host}\n"
        f"  Port {sshd.port}\n"
        "  User root\n"
        f"  IdentityFile {key}\n"
        f"  ProxyCommand {proxy}\n"
    )
    known_hosts(home, sshd)
    ssh = session(stack_target(address="build-box", sshConfig=True))
    assert ssh.run("echo proxied", step="proxycommand").stdout == "proxied\n"
    assert jump_sshd.forwarded() == [(sshd.host, sshd.port)]
