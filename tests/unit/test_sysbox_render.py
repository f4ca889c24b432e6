"""Rendering of the SysboxHost scripts and files (pure), plus the read-only scripts run locally."""

from __future__ import annotations

import json
import subprocess

import pytest

from dockyard_resources.hostops.preflight import HostFacts
from dockyard_resources.hostops.sysbox_host import HostState
from dockyard_resources.render import sysbox_host as r
from dockyard_resources.render.common import HOST_LOCK

DOCKER = r.Artifact("docker", "29.2.1", "https://example.test/docker-29.2.1.tgz", "a" * 64)
SYSBOX = r.Artifact("sysbox", "0.6.7", "/srv/sysbox-ce_0.6.7.deb", "b" * 64)


def plan(mode: r.ArtifactsMode = "upload", allow: bool = False) -> r.InstallPlan:
    return r.InstallPlan(DOCKER, SYSBOX, mode, allow)


def run_bash(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", *args], input=script, text=True, capture_output=True, check=False
    )


def bash_syntax_ok(script: str) -> None:
    done = run_bash(script, "-n")
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "script",
    [
        r.install_script(plan("upload")),
        r.install_script(plan("download", allow=True)),
        r.remove_script(),
        r.preflight_script(("a" * 64,)),
        r.inspect_script(DOCKER, SYSBOX),
        r.render_supervisor(),
    ],
    ids=["install-upload", "install-download", "remove", "preflight", "inspect", "supervisor"],
)
def test_scripts_are_valid_bash(script: str) -> None:
    bash_syntax_ok(script)


def test_remove_and_staging_take_their_locks_before_anything_else() -> None:
    # Which lock each install and remove step holds: test_sysbox_behaviour.py, run.
    remove = r.remove_script()
    assert remove.index(f"exec 9>{HOST_LOCK}") < remove.index(f"exec 7>{r.ARTIFACT_LOCK}")
    assert "flock -w" in remove  # waits a bounded time, never forever
    assert remove.index("flock") < remove.index("action() {")
    assert f"exec 7>{r.ARTIFACT_LOCK}" in r.staging_script(("a" * 64,))


def test_download_goes_through_a_temp_file_with_retries() -> None:
    # The sandbox's curl stub ignores these flags: the run cannot show them.
    script = r.install_script(plan("download"))
    assert "curl -fsSL --retry 5" in script
    assert '-o "$dest.part"' in script
    assert 'mv -fT "$dest.part" "$dest"' in script
    assert "https://example.test/docker-29.2.1.tgz" in script


def test_the_sysbox_user_is_a_system_user_without_a_shell() -> None:
    # The sandbox's useradd stub records only that it ran (test_sysbox_behaviour.py).
    assert "useradd -r -s /bin/false" in r.install_script(plan())


def test_read_only_scripts_do_not_take_the_lock() -> None:
    # read must not wait behind a long install of another resource
    assert "flock" not in r.preflight_script(())
    assert "flock" not in r.inspect_script(DOCKER, SYSBOX)


def test_uploads_are_staged_under_the_cache_root() -> None:
    # What each mode runs: tests/unit/test_sysbox_behaviour.py.
    assert r.upload_path(SYSBOX.sha256) == f"/var/cache/dockyard/uploads/{'b' * 64}"


def test_versioned_install_dirs() -> None:
    assert r.docker_dir("29.2.1") == "/usr/local/lib/dockyard/docker-29.2.1"
    assert r.sysbox_dir("0.6.7") == "/usr/local/lib/dockyard/sysbox-0.6.7"


def test_unit_file() -> None:
    unit = r.render_unit("0.6.7")
    assert "StopWhenUnneeded=yes" in unit
    assert "Type=notify" in unit
    assert "Restart=on-failure" in unit
    stale = "ExecStartPre=/bin/rm -f /run/sysbox/sysmgr.sock /run/sysbox/sysfs.sock"
    assert stale + " /run/sysbox/sysfs-seccomp.sock" in unit
    assert (
        "ExecStart=/usr/local/lib/dockyard/dockyard-sysbox-run /usr/local/lib/dockyard/sysbox-0.6.7"
        in unit
    )
    assert "append:/var/log/dockyard-sysbox/dockyard-sysbox.log" in unit
    assert unit.endswith("\n") and not unit.endswith("\n\n")


def test_supervisor_waits_for_live_sockets_not_existing_paths() -> None:
    supervisor = r.render_supervisor()
    assert '[ -S "$1" ]' in supervisor
    assert 'kill -0 "$2"' in supervisor
    assert "[ -e" not in supervisor
    assert "unset NOTIFY_SOCKET" in supervisor
    assert "systemd-notify --ready" in supervisor
    # sysbox-fs is started only once sysbox-mgr's socket is live
    assert supervisor.index("wait_live /run/sysbox/sysmgr.sock") < supervisor.index(
        '"$dir/sysbox-fs"'
    )
    assert "--data-root /var/lib/dockyard-sysbox" in supervisor


def test_sysctl_settings_from_the_sysbox_deb() -> None:
    sysctl = r.render_sysctl()
    for line in (
        "kernel.unprivileged_userns_clone = 1",
        "fs.inotify.max_queued_events = 1048576",
        "fs.inotify.max_user_watches = 1048576",
        "fs.inotify.max_user_instances = 1048576",
        "kernel.keys.maxkeys = 20000",
        "kernel.keys.maxbytes = 1400000",
        "kernel.pid_max = 4194304",
    ):
        assert line in sysctl


def test_preflight_runs_here_and_yields_parsable_facts() -> None:
    """The real script on this machine: its JSON must parse whatever the machine is."""
    done = run_bash(r.preflight_script(("c" * 64,)))
    assert done.returncode == 0, done.stderr
    facts = HostFacts.from_output(done.stdout)
    assert facts.arch == run_bash("uname -m").stdout.strip()
    assert facts.cached_sha256 == ()


def test_inspect_runs_here_and_reports_nothing_installed() -> None:
    done = run_bash(r.inspect_script(DOCKER, SYSBOX))
    assert done.returncode == 0, done.stderr
    state = HostState.from_output(done.stdout)
    assert state.docker == "missing"
    drift = state.drift(plan())
    assert "docker 29.2.1: missing" in drift
    assert "/etc/systemd/system/dockyard-sysbox.service: missing" in drift


def test_json_strings_survive_quotes_and_backslashes() -> None:
    script = r._json_helpers() + 'printf "{\\"v\\":%s}" "$(jstr \'a"b\\c\')"'
    done = run_bash(script)
    assert json.loads(done.stdout) == {"v": 'a"b\\c'}
