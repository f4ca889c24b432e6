"""~/.ssh/config as OpenSSH reads it: Include, ProxyJump, and what the stack file overrides.

No connection is made here (tests/transport/test_ssh_config.py connects); `resolve` is what
the transport does before it connects.
"""

from __future__ import annotations

import getpass
from pathlib import Path

import pytest

from dockyard_resources.transport import SshTarget, TransportError
from dockyard_resources.transport.sshconfig import lookup, proxy_jump_hops
from dockyard_resources.transport.target import JUMP_HOST, resolve
from tests.unit.config_builders import ed25519_key_line


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".ssh").mkdir()
    return tmp_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_include_relative_to_dot_ssh_with_globs_in_sorted_order(home: Path) -> None:
    write(home / ".ssh" / "config", "Include conf.d/*.conf\nHost *\n  User fallback\n")
    # First obtained value wins: 10-* is read before 20-*, and both before `Host *`.
    write(home / ".ssh" / "conf.d" / "20-late.conf", "Host box\n  Port 2020\n  User late\n")
    write(
        home / ".ssh" / "conf.d" / "10-early.conf", "Host box\n  HostName 192.0.2.7\n  Port 1010\n"
    )
    write(home / ".ssh" / "conf.d" / "30-skipped.txt", "Host box\n  Port 3030\n")
    found = lookup("box")
    assert (found["hostname"], found["port"], found["user"]) == ("192.0.2.7", "1010", "late")
    assert lookup("other")["user"] == "fallback"


def test_include_of_absolute_and_tilde_paths_and_several_per_line(home: Path) -> None:
    absolute = write(home / "elsewhere" / "a.conf", "Host a\n  Port 1111\n")
    write(home / "tilde.conf", "Host b\n  Port 2222\n")
    write(home / ".ssh" / "config", f'Include "{absolute}" ~/tilde.conf ~/missing-*.conf\n')
    assert lookup("a")["port"] == "1111"
    assert lookup("b")["port"] == "2222"


def test_lines_after_an_include_belong_to_the_block_the_include_stood_in(home: Path) -> None:
    write(home / ".ssh" / "extra.conf", "Port 4444\nHost unrelated\n  User nobody\n")
    write(home / ".ssh" / "config", "Host box\n  Include extra.conf\n  User admin\n")
    found = lookup("box")
    assert (found["port"], found["user"]) == ("4444", "admin")
    assert "port" not in lookup("other")


def test_include_loop_is_an_error(home: Path) -> None:
    write(home / ".ssh" / "config", "Include config\n")
    with pytest.raises(TransportError, match="nested more than 16 levels"):
        lookup("box")


@pytest.mark.parametrize(
    ("value", "hops"),
    [
        ("bastion", [(None, "bastion", None)]),
        ("ops@bastion:2222", [("ops", "bastion", 2222)]),
        ("ssh://ops@bastion:2222", [("ops", "bastion", 2222)]),
        ("[2001:db8::1]:22,inner", [(None, "2001:db8::1", 22), (None, "inner", None)]),
    ],
)
def test_proxy_jump_values(value: str, hops: list[tuple[str | None, str, int | None]]) -> None:
    assert proxy_jump_hops(value) == hops


def test_stack_values_win_over_the_config_and_the_config_user_is_used(home: Path) -> None:
    write(home / ".ssh" / "config", "Host box\n  HostName 192.0.2.7\n  Port 2222\n  User ops\n")
    resolved = resolve(SshTarget(host="box", ssh_config=True))
    assert (resolved.hostname, resolved.port, resolved.user) == ("192.0.2.7", 2222, "ops")
    mine = resolve(SshTarget(host="box", port=22, user="root", ssh_config=True))
    assert (mine.hostname, mine.port, mine.user) == ("192.0.2.7", 22, "root")
    # Without User anywhere, ssh logs in as the local user.
    write(home / ".ssh" / "config", "Host box\n  HostName 192.0.2.7\n")
    assert resolve(SshTarget(host="box", ssh_config=True)).user == getpass.getuser()


def test_config_is_ignored_unless_the_stack_opts_in(home: Path) -> None:
    write(home / ".ssh" / "config", "Host box\n  HostName 192.0.2.7\n  ProxyJump bastion\n")
    resolved = resolve(SshTarget(host="box"))
    assert (resolved.hostname, resolved.port, resolved.user) == ("box", 22, "root")
    assert resolved.jump is None and resolved.proxy_command is None


def test_proxy_jump_chain_each_hop_resolved_through_the_config(home: Path) -> None:
    outer_key, inner_key, box_key = (ed25519_key_line(seed) for seed in ("outer", "inner", "box"))
    write(
        home / ".ssh" / "known_hosts",
        f"[192.0.2.1]:2201 {outer_key}\n192.0.2.2 {inner_key}\n10.0.0.5 {box_key}\n",
    )
    write(
        home / ".ssh" / "config",
        "Host box\n  HostName 10.0.0.5\n  ProxyJump outer,jump@inner\n"
        "Host outer\n  HostName 192.0.2.1\n  Port 2201\n  User gate\n"
        "Host inner\n  HostName 192.0.2.2\n",
    )
    resolved = resolve(SshTarget(host="box", user="root", private_key="KEY", ssh_config=True))
    inner = resolved.jump
    assert inner is not None and inner.jump is not None
    outer = inner.jump
    assert (inner.address, inner.user, inner.target.role) == ("192.0.2.2:22", "jump", JUMP_HOST)
    assert (outer.address, outer.user) == ("192.0.2.1:2201", "gate")
    assert outer.jump is None
    # Every hop is offered the host's key and is pinned by known_hosts.
    assert inner.target.private_key == "KEY" and outer.target.private_key == "KEY"
    assert inner.known_host_keys == (inner_key,) and outer.known_host_keys == (outer_key,)
    assert resolved.where == "10.0.0.5:22 via jump host 192.0.2.2:22 via jump host 192.0.2.1:2201"


def test_explicit_jump_host_wins_over_proxy_jump_and_proxy_command(home: Path) -> None:
    write(
        home / ".ssh" / "config",
        "Host box\n  ProxyJump elsewhere\nHost other\n  ProxyCommand nc %h %p\n",
    )
    base = SshTarget(host="box", host_key=ed25519_key_line("k3"), ssh_config=True)
    mine = base.hop("gate", port=22, user="ops", host_key=ed25519_key_line("k1"))
    resolved = resolve(base.through(mine))
    assert resolved.jump is not None and resolved.jump.hostname == "gate"
    command = resolve(SshTarget(host="other", ssh_config=True)).proxy_command
    assert command == "nc other 22"


def test_unpinned_hops_and_loops_are_refused_before_connecting(home: Path) -> None:
    write(home / ".ssh" / "config", "Host box\n  ProxyJump gate\n")
    with pytest.raises(TransportError, match="jump host gate:22 has no pinned host key"):
        resolve(SshTarget(host="box", host_key=ed25519_key_line("k3"), ssh_config=True))
    write(home / ".ssh" / "known_hosts", f"gate {ed25519_key_line('k1')}\n")
    with pytest.raises(TransportError, match=r"box:22 via jump host gate:22 has no pinned"):
        resolve(SshTarget(host="box", ssh_config=True))
    write(home / ".ssh" / "config", "Host *\n  ProxyJump gate\n")
    with pytest.raises(TransportError, match="more than 8 jump hosts in a row"):
        resolve(SshTarget(host="box", host_key=ed25519_key_line("k3"), ssh_config=True))


def test_user_known_hosts_file_is_honoured(home: Path) -> None:
    key = ed25519_key_line("k4")
    write(home / "kh", f"[box.example]:2222 {key}\n")
    write(
        home / ".ssh" / "config",
        "Host box\n  HostName box.example\n  Port 2222\n  UserKnownHostsFile ~/kh\n",
    )
    assert resolve(SshTarget(host="box", ssh_config=True)).known_host_keys == (key,)
