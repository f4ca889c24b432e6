"""The backend and passphrase every `pulumi` run of Dockyard gets (pulumi_env.py).

A fresh machine (nothing under the state root, no login) must work from the first command,
and a user's own backend or login must win over Dockyard's default.
"""

from __future__ import annotations

import json
import os
import pwd
import stat
from pathlib import Path

import pytest

from dockyard_resources import paths, pulumi_env
from dockyard_resources.pulumi_env import BackendError, pulumi_environment


@pytest.fixture
def fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """An environment as on a new machine: empty cache and state, no login, no Pulumi vars."""
    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DOCKYARD_STATE", str(tmp_path / "state"))
    return {
        "HOME": str(tmp_path / "home"),
        "PATH": "/usr/bin:/bin",
        "PULUMI_HOME": str(tmp_path / "no-login"),
    }


def test_a_fresh_machine_gets_the_default_backend_and_a_new_passphrase(
    fresh: dict[str, str], tmp_path: Path
) -> None:
    env = pulumi_environment(fresh)
    passphrase = tmp_path / "state" / "passphrase"
    assert env["PULUMI_BACKEND_URL"] == (tmp_path / "state" / "state").as_uri()
    assert (tmp_path / "state" / "state").is_dir()
    assert env["PULUMI_CONFIG_PASSPHRASE_FILE"] == str(passphrase)
    assert len(passphrase.read_text().strip()) >= 32
    assert stat.S_IMODE(passphrase.stat().st_mode) == 0o600
    # A second run keeps the passphrase the stacks are encrypted with.
    first = passphrase.read_text()
    pulumi_environment(fresh)
    assert passphrase.read_text() == first


def test_the_makefiles_old_export_of_a_missing_default_file_is_not_needed(
    fresh: dict[str, str],
) -> None:
    """The Makefile no longer exports the passphrase file; a user who does and points it at
    nothing gets a message naming the variable, not Pulumi's `open ...: no such file`."""
    missing = str(paths.state_root() / "elsewhere" / "passphrase")
    with pytest.raises(
        BackendError, match=r"PULUMI_CONFIG_PASSPHRASE_FILE names .* does not exist"
    ):
        pulumi_environment(fresh | {"PULUMI_CONFIG_PASSPHRASE_FILE": missing})
    makefile = (Path(__file__).parents[2] / "Makefile").read_text().splitlines()
    exported = [line for line in makefile if line.startswith("export ")]
    assert not [line for line in exported if "PASSPHRASE" in line or "BACKEND_URL" in line]


def test_the_users_backend_url_wins_and_gets_no_passphrase_of_ours(
    fresh: dict[str, str], tmp_path: Path
) -> None:
    env = pulumi_environment(fresh | {"PULUMI_BACKEND_URL": "s3://bucket?region=x"})
    assert env["PULUMI_BACKEND_URL"] == "s3://bucket?region=x"
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" not in env
    assert not (tmp_path / "state" / "passphrase").exists()


def test_a_pulumi_login_wins_over_the_default(fresh: dict[str, str], tmp_path: Path) -> None:
    home = tmp_path / "pulumi-home"
    home.mkdir()
    (home / "credentials.json").write_text(json.dumps({"current": "file:///srv/team-state"}))
    env = pulumi_environment(fresh | {"PULUMI_HOME": str(home)})
    assert "PULUMI_BACKEND_URL" not in env  # the CLI uses its login
    assert pulumi_env.describe_backend(fresh | {"PULUMI_HOME": str(home)}) == (
        "file:///srv/team-state (the current `pulumi login`)"
    )
    token_env = fresh | {"PULUMI_ACCESS_TOKEN": "pul-x"}
    assert pulumi_env.current_login(token_env) == "https://api.pulumi.com"
    assert "PULUMI_BACKEND_URL" not in pulumi_environment(token_env)


def test_a_passphrase_of_the_user_is_kept_with_the_default_backend(
    fresh: dict[str, str], tmp_path: Path
) -> None:
    env = pulumi_environment(fresh | {"PULUMI_CONFIG_PASSPHRASE": "mine"})
    assert env["PULUMI_CONFIG_PASSPHRASE"] == "mine"
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" not in env
    assert not (tmp_path / "state" / "passphrase").exists()


def test_the_login_is_read_where_the_cli_keeps_it_not_under_home(tmp_path: Path) -> None:
    """Like the CLI (Go's os/user), the account's home counts, not `$HOME`: `sudo -E` keeps
    the invoking user's HOME while `pulumi` runs as root with root's login."""
    account_home = Path(pwd.getpwuid(os.getuid()).pw_dir)
    elsewhere = {"HOME": str(tmp_path / "someone-else")}
    assert pulumi_env.pulumi_home(elsewhere) == account_home / ".pulumi"
    configured = elsewhere | {"PULUMI_HOME": str(tmp_path / "ph")}
    assert pulumi_env.pulumi_home(configured) == tmp_path / "ph"


def test_state_and_cache_are_separate_roots(fresh: dict[str, str], tmp_path: Path) -> None:
    assert paths.stacks_dir() == tmp_path / "state" / "stacks"
    assert paths.ci_dir() == tmp_path / "state" / "ci"
    assert paths.vms_dir() == tmp_path / "cache" / "vms"
