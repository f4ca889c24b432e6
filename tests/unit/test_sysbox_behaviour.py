"""The SysboxHost install and remove scripts, rendered and run by bash on a scratch host
(tests/unit/sysbox_sandbox.py): staged uploads and temporary paths against a local attacker
(uid 65534 for real), which lock each step holds, pruning next to another stack, and what
curl and the progress lines get to see of an artifact URL."""

from __future__ import annotations

import dataclasses
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard_resources.hostops import artifacts
from dockyard_resources.hostops.preflight import HostFacts
from dockyard_resources.render import sysbox_host as r
from dockyard_resources.render.layout import INSTANCE_MARKER
from tests.unit.sysbox_sandbox import (
    NOBODY,
    LocalHost,
    Ran,
    Sandbox,
    binary,
    genuine,
    sandbox_at,
    sha256,
    tgz,
)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Sandbox]:
    if os.geteuid() != 0 or not os.access("/srv", os.W_OK):
        pytest.skip("needs root and a writable /srv: the scripts check who owns the parents")
    yield from sandbox_at(tmp_path)


def upload_and_install(box: Sandbox, plan: r.InstallPlan) -> Ran:
    """What `hostops.sysbox_host.install` does in upload mode: upload what the host lacks
    (through the transport's own upload script), then run the install script."""
    artifacts.upload_missing(LocalHost(box), [plan.docker, plan.sysbox], set())  # type: ignore[arg-type]
    return box.run(r.install_script(plan))


def owned_by_root_alone(path: Path) -> bool:
    info = path.lstat()
    return stat.S_ISDIR(info.st_mode) and info.st_uid == 0 and stat.S_IMODE(info.st_mode) == 0o700


# --- uploads and temporary paths against a local user --------------------------------------


def test_a_directory_planted_at_the_staging_path_neither_catches_the_upload_nor_blocks_it(
    box: Sandbox,
) -> None:
    """A local user creates a directory where an upload is staged: the upload must not land
    in it, and the install must still install the verified artifacts."""
    plan = box.artifacts.plan("upload")
    planted = []
    for artifact in (plan.docker, plan.sysbox):
        staged = box.path(r.upload_path(artifact.sha256))
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.mkdir()
        os.chown(staged, NOBODY, NOBODY)
        planted.append(staged)
    ran = upload_and_install(box, plan)
    assert ran.code == 0, ran.text
    assert genuine(box.installed(plan))
    for staged in planted:
        # Nothing of ours inside a directory that user controls.
        assert not staged.is_dir() or list(staged.iterdir()) == []


def test_a_file_swapped_after_its_hash_is_never_installed(box: Sandbox) -> None:
    """The staged file belongs to a local user who swaps its content right after each hash
    (the attacker of the sandbox): the install refuses, or installs the verified bytes."""
    plan = box.artifacts.plan("upload")
    for artifact, source in (
        (plan.docker, box.artifacts.docker),
        (plan.sysbox, box.artifacts.sysbox),
    ):
        staged = box.path(r.upload_path(artifact.sha256))
        staged.parent.mkdir(parents=True, exist_ok=True)
        staged.write_bytes(source.read_bytes())
        os.chown(staged, NOBODY, NOBODY)
        staged.chmod(0o644)
    ran = box.run(r.install_script(plan), attacker=True)
    installed = box.installed(plan)
    if ran.code == 0:
        assert genuine(installed), ran.calls
    else:
        assert "was not uploaded" in ran.err, ran.text
        assert set(installed.values()) == {b""}  # nothing installed
    # Whatever is cached carries the sha256 it is filed under.
    assert all(name == digest for name, digest in box.cache_entries().items())


def test_cache_directories_others_can_write_are_replaced_before_use(box: Sandbox) -> None:
    """The cache left writable by a local user, with a payload filed under the genuine
    sha256: the install replaces the directories and installs only what it verified."""
    plan = box.artifacts.plan(
        "download", docker_url="https://m.test/docker.tgz", sysbox_url="https://m.test/sysbox.deb"
    )
    box.serve("https://m.test/docker.tgz", box.artifacts.docker)
    box.serve("https://m.test/sysbox.deb", box.artifacts.sysbox)
    cache = box.path(r.CACHE_DIR)
    cache.mkdir(parents=True)
    for directory in (cache.parent, cache):
        os.chown(directory, NOBODY, NOBODY)
        directory.chmod(0o777)
    planted = cache / plan.docker.sha256
    planted.write_bytes(box.artifacts.payload.read_bytes())
    os.chown(planted, NOBODY, NOBODY)

    ran = box.run(r.install_script(plan), attacker=True)
    assert ran.code == 0, ran.text
    assert genuine(box.installed(plan)), ran.calls
    assert owned_by_root_alone(cache.parent) and owned_by_root_alone(cache)
    assert box.cache_entries() == {
        plan.docker.sha256: plan.docker.sha256,
        plan.sysbox.sha256: plan.sysbox.sha256,
    }
    assert not any("attacker replaced" in call for call in ran.calls), ran.calls


@pytest.mark.parametrize("unsafe", ["/var/cache", r.LIB_ROOT])
def test_a_parent_others_can_write_is_refused(box: Sandbox, unsafe: str) -> None:
    """Directories the install writes in must belong to root alone; it cannot repair the
    parents, so it refuses before anything changes, naming the path."""
    plan = box.artifacts.plan(
        "download", docker_url="https://m.test/docker.tgz", sysbox_url="https://m.test/sysbox.deb"
    )
    box.serve("https://m.test/docker.tgz", box.artifacts.docker)
    box.serve("https://m.test/sysbox.deb", box.artifacts.sysbox)
    path = box.path(unsafe)
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, NOBODY, NOBODY)
    ran = box.run(r.install_script(plan))
    assert ran.code != 0
    assert f"{path}" in ran.err and "root" in ran.err, ran.text
    assert set(box.installed(plan).values()) == {b""}
    assert box.cache_entries() == {}
    assert not any(call.startswith("curl") for call in ran.calls)


def test_upload_install_converges_and_leaves_nothing_staged(box: Sandbox) -> None:
    plan = box.artifacts.plan("upload")
    ran = upload_and_install(box, plan)
    assert ran.code == 0, ran.text
    assert genuine(box.installed(plan))
    assert box.cache_entries() == {
        plan.docker.sha256: plan.docker.sha256,
        plan.sysbox.sha256: plan.sysbox.sha256,
    }
    staging = box.path(r.upload_path(plan.docker.sha256)).parent
    assert [
        p.name
        for p in staging.iterdir()
        if "dockyard-artifact" in p.name or p.name in (plan.docker.sha256, plan.sysbox.sha256)
    ] == []
    # Everything is cached now: nothing is uploaded, nothing changes.
    again = box.run(r.install_script(plan))
    assert again.code == 0, again.text
    assert again.actions == []


# --- which lock each step holds --------------------------------------------------------------


def test_install_holds_the_host_lock_only_for_host_wide_changes(box: Sandbox) -> None:
    """cloud-init, apt and downloads never hold the host lock (instances would wait for them);
    the artifact store is changed under its own lock; users, units and the service under
    the host lock."""
    plan = box.artifacts.plan(
        "download", docker_url="https://m.test/docker.tgz", sysbox_url="https://m.test/sysbox.deb"
    )
    box.serve("https://m.test/docker.tgz", box.artifacts.docker)
    box.serve("https://m.test/sysbox.deb", box.artifacts.sysbox)
    ran = box.run(r.install_script(plan))
    assert ran.code == 0, ran.text
    seen = ran.locks()
    by_command = {call.split(" host=")[0]: call for call in seen}
    assert by_command["cloud-init"] == "cloud-init host=free artifacts=free"
    assert [c for c in seen if c.startswith("curl")] == ["curl host=free artifacts=held"] * 2
    for command in ("tar", "dpkg-deb", "apt-get"):
        for call in (c for c in seen if c.startswith(f"{command} ")):
            assert call == f"{command} host=free artifacts=held"
    for command in ("useradd", "systemctl daemon-reload", "systemd-run", "systemctl stop"):
        assert by_command[command] == f"{command} host=held artifacts=free", seen


def test_remove_holds_the_host_lock_and_the_artifact_lock(box: Sandbox) -> None:
    plan = box.artifacts.plan("upload")
    assert upload_and_install(box, plan).code == 0
    ran = box.run(r.remove_script(plan.owner))
    assert ran.code == 0, ran.text
    assert "userdel host=held artifacts=held" in ran.locks()
    assert not box.path(r.LIB_ROOT).exists()


@pytest.mark.parametrize("other_owner", [True, False])
def test_old_versions_and_cache_entries_stay_while_another_stack_uses_the_host(
    box: Sandbox, other_owner: bool
) -> None:
    """Another SysboxHost (another stack) may be about to use an older version or a cache
    entry of its own: pruning waits until this owner is the last one."""
    plan = box.artifacts.plan("upload")
    old_dir = box.path(r.docker_dir("28.0.0"))
    old_dir.mkdir(parents=True)
    owners = box.path(r.OWNERS_DIR)
    owners.mkdir(parents=True)
    if other_owner:
        box.path(r.owner_file("dockyard/other/box-sysbox")).write_text(
            "dockyard/other/box-sysbox\n"
        )
    assert upload_and_install(box, plan).code == 0
    stale = box.path(f"{r.CACHE_DIR}/{'c' * 64}")
    stale.write_text("another stack's artifact\n")
    ran = box.run(r.install_script(plan))
    assert ran.code == 0, ran.text
    assert old_dir.exists() == other_owner, ran.actions
    assert stale.exists() == other_owner, ran.actions


# --- artifact URLs carrying credentials --------------------------------------------------------

SECRET_URL = "https://ci:tok3nPassw0rd@mirror.test/docker.tgz?X-Amz-Signature=abcdef123456&x=1"
SHOWN_URL = "https://mirror.test/docker.tgz"
SECRET_PIECES = ("tok3nPassw0rd", "abcdef123456", "X-Amz-Signature", "ci:")


def test_a_url_with_credentials_never_reaches_curls_arguments_or_the_progress_lines(
    box: Sandbox,
) -> None:
    plan = box.artifacts.plan(
        "download", docker_url=SECRET_URL, sysbox_url="https://m.test/sysbox.deb"
    )
    box.serve(SECRET_URL, box.artifacts.docker)
    box.serve("https://m.test/sysbox.deb", box.artifacts.sysbox)
    ran = box.run(r.install_script(plan))
    assert ran.code == 0, ran.text
    argv = box.read("curl-argv")
    assert argv.count("\n") == 2
    for piece in (*SECRET_PIECES, "mirror.test"):
        assert piece not in argv
    assert SECRET_URL in box.read("curl-config")  # curl still gets it, on stdin
    assert f"artifact docker: downloaded {SHOWN_URL}" in ran.actions
    for piece in SECRET_PIECES:
        assert piece not in ran.text


def test_a_failed_download_names_the_url_without_its_credentials(box: Sandbox) -> None:
    plan = box.artifacts.plan("download", docker_url=SECRET_URL, sysbox_url="https://m.test/s.deb")
    ran = box.run(r.install_script(plan))  # nothing served: curl fails
    assert ran.code != 0
    assert f"docker artifact: the host could not download {SHOWN_URL}" in ran.err, ran.text
    for piece in SECRET_PIECES:
        assert piece not in ran.text
    assert sha256(box.artifacts.docker) not in box.cache_entries()


def test_preflight_counts_as_cached_only_what_install_keeps(box: Sandbox) -> None:
    """A file in a cache another user can write is not cached: install replaces that
    directory, so the artifact must be uploaded again."""
    cache = box.path(r.CACHE_DIR)
    cache.mkdir(parents=True)
    cache.parent.chmod(0o700)
    cache.chmod(0o700)
    (cache / ("a" * 64)).write_text("artifact\n")
    preflight = r.preflight_script(("a" * 64,))
    assert HostFacts.from_output(box.run(preflight).out).cached_sha256 == ("a" * 64,)
    os.chown(cache, NOBODY, NOBODY)
    assert HostFacts.from_output(box.run(preflight).out).cached_sha256 == ()


# --- restarting the shared service --------------------------------------------------------------


def install_rebuilt_sysbox(box: Sandbox, allow: bool, **env: str) -> tuple[r.InstallPlan, Ran]:
    """Install, then install again with a rebuilt sysbox under the same version (a re-pinned
    artifact: no unit file changes) while the service runs with both sockets answering."""
    plan = box.artifacts.plan("upload", allow_restart=allow)
    assert upload_and_install(box, plan).code == 0
    rebuilt = box.work / "sysbox-rebuilt.deb"
    rebuilt.write_bytes(
        tgz({f"usr/bin/{b}": binary(b) + b"# rebuilt\n" for b in r.SYSBOX_BINARIES})
    )
    plan = dataclasses.replace(
        plan, sysbox=r.Artifact("sysbox", plan.sysbox.version, str(rebuilt), sha256(rebuilt))
    )
    sockets = []
    for path in r.SOCKETS.values():
        sock = box.path(path)
        sock.parent.mkdir(parents=True, exist_ok=True)
        with socket.socket(socket.AF_UNIX) as listener:
            listener.bind(str(sock))  # the file stays: a socket for `[ -S ]`
        sockets.append(str(sock))
    artifacts.upload_missing(LocalHost(box), [plan.sysbox], set())  # type: ignore[arg-type]
    ran = box.run(
        r.install_script(plan), DY_SERVICE_ACTIVE="0", DY_LISTENING=" ".join(sockets), **env
    )
    return plan, ran


def plant_instance_units(box: Sandbox, *prefixes: str) -> list[str]:
    """Unit files as instances leave them (the marker first), plus a unit of someone else's."""
    units = []
    for prefix in prefixes:
        unit = f"{prefix}docker.service"
        box.path(f"{r.SYSTEMD_DIR}/{unit}").write_text(f"{INSTANCE_MARKER}{prefix}\n[Unit]\n")
        units.append(unit)
    box.path(f"{r.SYSTEMD_DIR}/other.service").write_text("[Unit]\n")
    return units


@pytest.mark.parametrize("allow", [True, False])
def test_new_sysbox_binaries_restart_the_running_service_only_with_the_opt_in(
    box: Sandbox, allow: bool
) -> None:
    """A rebuilt sysbox under the same version (a re-pinned artifact) changes no unit file,
    yet the running pair must move onto it: with allowSysboxRestart it restarts (and with
    it every instance), without it the new binaries wait for the next start."""
    plan, ran = install_rebuilt_sysbox(box, allow)
    assert ran.code == 0, ran.text
    assert (
        f"sysbox binaries installed into {box.path(r.sysbox_dir(plan.sysbox.version))}"
        in ran.actions
    )
    restarted = "systemctl restart host=held artifacts=free" in ran.locks()
    assert restarted == allow, ran.locks()
    if not allow:
        assert "its new definition applies at its next start" in ran.err


def test_a_sysbox_restart_ends_with_every_instance_it_restarted_running_again(
    box: Sandbox,
) -> None:
    """systemd restarts the running instance units with the service (Requires=), but
    `systemctl restart` returns while they still start: the install waits for each (a start
    joins the pending job), so the update never returns with instances down."""
    units = plant_instance_units(box, "dy1_", "dy2_")
    _, ran = install_rebuilt_sysbox(box, allow=True)
    assert ran.code == 0, ran.text
    systemctl = [c for c in ran.calls if c.startswith("systemctl ") and " host=" not in c]
    restart = systemctl.index(f"systemctl restart {r.SERVICE_NAME}")
    started = [c for c in systemctl if c.startswith("systemctl start ")]
    assert started == systemctl[restart + 1 : restart + 1 + len(started)], systemctl
    assert sorted(started) == sorted(f"systemctl start {u}" for u in units), systemctl
    checked = {c.split()[-1] for c in systemctl[:restart] if c.startswith("systemctl is-active")}
    assert set(units) <= checked and "other.service" not in checked, systemctl
    assert any("(2 running again)" in a for a in ran.actions), ran.actions


def test_an_instance_that_does_not_start_after_a_sysbox_restart_fails_the_update(
    box: Sandbox,
) -> None:
    plant_instance_units(box, "dy1_", "dy2_")
    _, ran = install_rebuilt_sysbox(box, allow=True, DY_START_FAILS="dy2_docker.service")
    assert ran.code != 0
    assert "did not start again: dy2_docker.service" in ran.err, ran.err
    assert "dy1_docker.service" not in ran.err.split("did not start again:")[1].splitlines()[0]


# --- what the install leaves on the host ----------------------------------------------------


@pytest.mark.parametrize("mode", ["download", "upload"])
def test_an_artifact_that_does_not_match_its_sha256_is_never_installed(
    box: Sandbox, mode: r.ArtifactsMode
) -> None:
    """The mirror (or the upload) delivers other bytes than the pinned sha256: the install
    stops before unpacking anything, names both sums, and caches nothing of it."""
    plan = box.artifacts.plan(
        mode, docker_url="https://m.test/docker.tgz", sysbox_url="https://m.test/sysbox.deb"
    )
    wrong = box.artifacts.payload
    if mode == "download":
        box.serve("https://m.test/docker.tgz", wrong)
        box.serve("https://m.test/sysbox.deb", box.artifacts.sysbox)
    else:  # staged as the transport leaves an upload: root's, in root's staging directory
        for artifact, source in ((plan.docker, wrong), (plan.sysbox, box.artifacts.sysbox)):
            staged = box.path(r.upload_path(artifact.sha256))
            staged.parent.mkdir(parents=True, exist_ok=True)
            staged.parent.chmod(0o700)
            staged.parent.parent.chmod(0o700)
            staged.write_bytes(source.read_bytes())
    ran = box.run(r.install_script(plan))
    assert ran.code != 0, ran.text
    assert "docker artifact: sha256 mismatch" in ran.err, ran.text
    assert f"expected {plan.docker.sha256}, got {sha256(wrong)}" in ran.err, ran.text
    assert set(box.installed(plan).values()) == {b""}
    assert plan.docker.sha256 not in box.cache_entries()
    cache = box.path(r.CACHE_DIR)
    assert not [p.name for p in cache.iterdir() if p.name.endswith(".part")]


def test_upload_mode_never_runs_curl_and_sysbox_is_unpacked_not_installed(box: Sandbox) -> None:
    plan = box.artifacts.plan("upload")
    ran = upload_and_install(box, plan)
    assert ran.code == 0, ran.text
    commands = {call.split(" host=")[0] for call in ran.locks()}
    assert "curl" not in commands and "dpkg" not in commands, commands
    assert "dpkg-deb" in commands and "tar" in commands, commands
    assert genuine(box.installed(plan))


def test_kernel_settings_are_written_and_applied_once(box: Sandbox) -> None:
    plan = box.artifacts.plan("upload")
    ran = upload_and_install(box, plan)
    assert ran.code == 0, ran.text
    assert box.path(r.SYSCTL_PATH).read_text() == r.render_sysctl()
    applied = f"sysctl -e -q -p {box.path(r.SYSCTL_PATH)}"
    assert applied in ran.calls, ran.calls
    again = box.run(r.install_script(plan))
    assert again.code == 0 and applied not in again.calls, again.calls


def test_install_registers_its_owner_once(box: Sandbox) -> None:
    """The owner file is what keeps another stack's remove (and pruning) off this layer."""
    plan = box.artifacts.plan("upload", owner="dockyard/prod/box-sysbox")
    ran = upload_and_install(box, plan)
    assert ran.code == 0, ran.text
    registered = box.path(r.owner_file(plan.owner))
    assert registered.read_text() == "dockyard/prod/box-sysbox\n"
    assert "owner dockyard/prod/box-sysbox registered" in ran.actions
    again = box.run(r.install_script(plan))
    assert again.code == 0 and again.actions == [], again.text


def test_a_sysbox_user_and_one_subid_line_each(box: Sandbox) -> None:
    """The user is made once; duplicate subid lines (which break container creation) are
    cut to the first one, a missing one is added after the ranges in use."""
    plan = box.artifacts.plan("upload")
    subuid, subgid = box.path("/etc/subuid"), box.path("/etc/subgid")
    subuid.write_text("alice:100000:65536\nsysbox:300000:65536\nsysbox:400000:65536\n")
    subgid.write_text("alice:100000:65536\n")
    ran = upload_and_install(box, plan)
    assert ran.code == 0, ran.text
    assert subuid.read_text() == "alice:100000:65536\nsysbox:300000:65536\n"
    assert subgid.read_text() == "alice:100000:65536\nsysbox:165536:65536\n"
    assert (box.work / "user-sysbox").exists()
    useradd = [c for c in ran.locks() if c.startswith("useradd")]
    assert useradd == ["useradd host=held artifacts=free"]


# --- remove: the shared layer stays while anybody uses it -----------------------------------


def test_remove_keeps_everything_while_instance_units_remain(box: Sandbox) -> None:
    plan = box.artifacts.plan("upload")
    assert upload_and_install(box, plan).code == 0
    units = plant_instance_units(box, "dy1_")
    ran = box.run(r.remove_script(plan.owner))
    assert ran.code == 0, ran.text
    assert f"{r.KEEP_PREFIX}{box.path(r.SYSTEMD_DIR)}/{units[0]}" in ran.out
    assert genuine(box.installed(plan))
    assert box.path(r.UNIT_PATH).exists() and (box.work / "user-sysbox").exists()
    assert not any(c.startswith("userdel") for c in ran.calls)


def test_remove_keeps_the_layer_another_sysbox_host_registered(box: Sandbox) -> None:
    """Another stack's SysboxHost on the same host: this one unregisters, the layer stays."""
    plan = box.artifacts.plan("upload")
    assert upload_and_install(box, plan).code == 0
    box.path(r.owner_file("dockyard/other/box-sysbox")).write_text("dockyard/other/box-sysbox\n")
    ran = box.run(r.remove_script(plan.owner))
    assert ran.code == 0, ran.text
    assert f"{r.OWNERS_PREFIX}dockyard/other/box-sysbox" in ran.out.splitlines()
    assert not box.path(r.owner_file(plan.owner)).exists()
    assert genuine(box.installed(plan)) and box.path(r.UNIT_PATH).exists()
    assert not any(c.startswith("userdel") for c in ran.calls)
    # The last owner's remove takes everything.
    last = box.run(r.remove_script("dockyard/other/box-sysbox"))
    assert last.code == 0, last.text
    assert not box.path(r.LIB_ROOT).exists() and not box.path(r.UNIT_PATH).exists()
    assert "sysbox" not in box.path("/etc/subuid").read_text()
