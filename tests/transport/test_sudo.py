"""The non-root path: a login user with passwordless sudo, password authentication."""

from __future__ import annotations

from dockyard_resources.transport import session
from tests.fixtures.sshd import SshdServer, SudoUser


def test_non_root_user_runs_scripts_as_root_via_sudo(sshd: SshdServer, sudo_user: SudoUser) -> None:
    ssh = session(sshd.target(user=sudo_user.name))
    assert ssh.run("id -u; echo $HOME", step="whoami").stdout == "0\n/root\n"
    as_user = ssh.run("id -u", step="as user", sudo=False)
    assert as_user.stdout == f"{sudo_user.uid}\n"


def test_password_authentication(sshd: SshdServer, sudo_user: SudoUser) -> None:
    target = sshd.target(user=sudo_user.name, private_key=None, password=sudo_user.password)
    assert session(target).run("id -un", step="pw").stdout == "root\n"
