"""The instance guards (hostops/instance_guards.sh) run by bash on this machine's file system.

They decide whether a root, unit or user may be used or removed: each case below is a real
directory tree, unit file or passwd entry in a temp directory, checked by the real functions.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard_resources.hostops import instance as hostops
from dockyard_resources.render import instance as render
from dockyard_resources.render import layout

OWNER = "dockyard/prod/build-1-dy1_"
OTHER = "dockyard/staging/build-1-dy1_"


def run_guard(call: str, units: Path, env: dict[str, str] | None = None) -> tuple[int, str]:
    script = f"set -euo pipefail\n{hostops.guards()}\n{call}\n"
    proc = subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "DY_UNIT_DIR": str(units), **(env or {})},
        check=False,
    )
    return proc.returncode, proc.stderr + proc.stdout


def unit(units: Path, prefix: str, root: str, owner: str | None) -> Path:
    path = units / f"{prefix}docker.service"
    lines = [f"{layout.INSTANCE_MARKER}{prefix}", f"{layout.ROOT_MARKER}{root}"]
    if owner is not None:
        lines.append(f"{layout.OWNER_MARKER}{owner}")
    path.write_text("\n".join([*lines, "[Unit]", ""]))
    return path


@pytest.fixture
def units(tmp_path: Path) -> Path:
    directory = tmp_path / "units"
    directory.mkdir()
    return directory


@pytest.fixture
def base() -> Iterator[Path]:
    """A directory whose parents all belong to root and are writable by root only (not /tmp,
    which is world-writable and rightly refused as a parent)."""
    if os.geteuid() != 0 or not os.access("/run", os.W_OK):
        pytest.skip("needs root: the guards check ownership of real directories under /run")
    directory = Path(tempfile.mkdtemp(prefix="dockyard-guards-", dir="/run"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory)


def test_guards_pass_shellcheck() -> None:
    path = Path(hostops.__file__).with_name("instance_guards.sh")
    subprocess.run(["shellcheck", "-s", "bash", str(path)], check=True)


def test_world_writable_parent_such_as_tmp_is_refused(tmp_path: Path, units: Path) -> None:
    code, out = run_guard(f"dy_check_path {shlex.quote(str(tmp_path / 'dy1'))}", units)
    assert code == 3 and "writable by root only" in out, out


def test_symlink_on_the_way_is_refused(base: Path, units: Path) -> None:
    tmp_path = base
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    code, out = run_guard(f"dy_check_path {shlex.quote(str(tmp_path / 'link' / 'dy1'))}", units)
    assert code == 3 and "is a symbolic link" in out, out
    code, out = run_guard(f"dy_check_path {shlex.quote(str(tmp_path / 'real' / 'dy1'))}", units)
    assert code == 0, out


def test_parent_owned_by_a_user_or_writable_by_others_is_refused(base: Path, units: Path) -> None:
    tmp_path = base
    user_dir = tmp_path / "home-alice"
    user_dir.mkdir()
    os.chown(user_dir, 65534, 65534)
    code, out = run_guard(f"dy_check_path {shlex.quote(str(user_dir / 'dy1'))}", units)
    assert code == 3 and "belongs to uid 65534" in out, out
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    code, out = run_guard(f"dy_check_path {shlex.quote(str(shared / 'dy1'))}", units)
    assert code == 3 and "writable by root only" in out, out
    shared.chmod(0o755)
    assert run_guard(f"dy_check_path {shlex.quote(str(shared / 'dy1'))}", units)[0] == 0


@pytest.mark.parametrize(
    ("other_root", "words"),
    [("/srv/dy", "is already the root"), ("/srv", "lies inside"), ("/srv/dy/x", "contains")],
)
def test_roots_of_two_instances_never_nest(units: Path, other_root: str, words: str) -> None:
    unit(units, "zz_", other_root, OTHER)
    code, out = run_guard(f"dy_check_nesting /srv/dy {units}/dy1_docker.service", units)
    assert code == 3 and words in out and "zz_" in out, out


def test_siblings_and_own_unit_do_not_count_as_nesting(units: Path) -> None:
    unit(units, "zz_", "/srv/dy2", OTHER)
    own = unit(units, "dy1_", "/srv/dy", OWNER)
    assert run_guard(f"dy_check_nesting /srv/dy {own}", units) == (0, "")


def _check_owner(root: Path, units: Path, user: str = "dyguard_nobody", adopt: int = 0) -> str:
    return (
        f"dy_check_owner dy1_ {shlex.quote(str(root))} {units}/dy1_docker.service {user}"
        f" {shlex.quote(OWNER)} {adopt} dyguard_nogroup"
    )


def test_a_foreign_unit_is_refused_naming_its_owner(tmp_path: Path, units: Path) -> None:
    unit(units, "dy1_", str(tmp_path / "dy1"), OTHER)
    code, out = run_guard(_check_owner(tmp_path / "dy1", units), units)
    assert code == 3 and f"belongs to {OTHER}" in out, out


def test_an_existing_root_without_marker_is_refused(tmp_path: Path, units: Path) -> None:
    root = tmp_path / "dy1"
    root.mkdir()
    code, out = run_guard(_check_owner(root, units), units)
    assert code == 3 and "not a Dockyard instance root" in out, out
    (root / render.ROOT_MARKER_FILE).write_text(f"owner={OTHER}\nprefix=dy1_\n")
    code, out = run_guard(_check_owner(root, units), units)
    assert code == 3 and f"belongs to {OTHER}" in out, out
    (root / render.ROOT_MARKER_FILE).write_text(f"owner={OWNER}\nprefix=dy1_\n")
    assert run_guard(_check_owner(root, units), units) == (0, "")


def test_an_earlier_dockyards_instance_is_adopted_only_on_update(
    tmp_path: Path, units: Path
) -> None:
    root = tmp_path / "dy1"
    root.mkdir()
    unit(units, "dy1_", str(root), None)  # no owner line: made by an earlier version
    code, out = run_guard(_check_owner(root, units, adopt=0), units)
    assert code == 3 and "names no Dockyard owner" in out, out
    assert run_guard(_check_owner(root, units, adopt=1), units) == (0, "")


def test_a_user_that_is_not_the_instances_is_refused(tmp_path: Path, units: Path) -> None:
    code, out = run_guard(_check_owner(tmp_path / "dy1", units, user="root"), units)
    assert code == 3 and "user root already exists and is not this instance's" in out, out


def test_is_ours_reads_unit_and_marker(tmp_path: Path, units: Path) -> None:
    root = tmp_path / "dy1"
    root.mkdir()
    unit_file = unit(units, "dy1_", str(root), OWNER)
    call = f"dy_is_ours {unit_file} {shlex.quote(str(root))} {shlex.quote(OWNER)}"
    assert run_guard(call, units)[0] == 0
    (root / render.ROOT_MARKER_FILE).write_text(f"owner={OTHER}\n")
    assert run_guard(call, units)[0] == 1
    unit(units, "dy1_", str(root), OTHER)
    (root / render.ROOT_MARKER_FILE).write_text(f"owner={OWNER}\n")
    assert run_guard(call, units)[0] == 1


def test_stale_pid_is_not_taken_for_the_units(units: Path) -> None:
    # This very shell is not in dy1_docker.service's cgroup: its pid must not qualify.
    code, _ = run_guard("dy_pid_of_unit $$ dy1_docker.service", units)
    assert code == 1
    assert run_guard("dy_pid_of_unit '' dy1_docker.service", units)[0] == 1
    assert run_guard("dy_pid_of_container 999999999 abc", units)[0] == 1


@pytest.mark.parametrize(
    ("root", "refused"),
    [
        ("/var/lib/dpkg", True),
        ("/var/lib/docker/x", True),
        ("/root/.ssh", True),
        ("/home/alice", True),
        ("/srv", True),
        ("/opt", True),
        ("/var/run/dy1", True),
        ("/home/alice/dy1", False),  # the on-host parent check decides (alice owns her home)
        ("/srv/dy1", False),
        ("/opt/dockyard/dy1", False),
    ],
)
def test_scripts_refuse_system_directories_by_the_config_layers_lists(
    root: str, refused: bool
) -> None:
    guard = hostops._system_dir_guard()
    proc = subprocess.run(
        ["bash", "-c", f"{hostops.guards()}\nroot={shlex.quote(root)}\n{guard}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (proc.returncode == 3) is refused, proc.stderr
    spec = render.InstanceSpec.from_props(
        {
            "prefix": "dy1_",
            "root": "/dy1",
            "dockerDir": "/d",
            "sysboxDir": "/s",
            "bridgeCidr": "172.22.1.1/24",
            "fixedCidr": "172.22.1.0/24",
            "poolBase": "172.23.0.0/20",
            "poolSize": 24,
            "owner": OWNER,
        }
    )
    for script in (hostops._install_script(spec), hostops._remove_script(spec, [])):
        assert guard in script
