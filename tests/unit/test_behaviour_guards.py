"""The rendered install, remove, stop and network scripts of an instance, run by bash.

test_instance_guards.py runs the guard functions one by one; here whole rendered scripts run
against a real root directory, a unit directory and a stateful stand-in for iptables, with
the commands that would change the host (systemctl, userdel, ip, ...) replaced by bash
functions that record their calls. What the scripts leave behind is the verdict: which rules,
files, links and users go, and which stay because they are another owner's.
"""

from __future__ import annotations

import ipaddress
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard_resources.config import values
from dockyard_resources.hostops import instance as hostops
from dockyard_resources.hostops import network_claims
from dockyard_resources.render import common, iptables, layout
from dockyard_resources.render import instance as render
from tests.unit.test_instance_guards import OTHER, OWNER, run_guard, unit
from tests.unit.test_instance_render import PROPS

PREFIX = "zq9_"
# Where the scratch host keeps the SysboxHost's binaries (dockerDir, sysboxDir), below `base`.
BINARIES = "sysbox-host"
NEIGHBOUR = "zq90_"  # a prefix that starts like ours: its rules must never be taken for ours
FOREIGN_RULES = (
    f"-A FORWARD -i {NEIGHBOUR}docker0 -m comment --comment dockyard:{NEIGHBOUR} -j ACCEPT",
    "-A FORWARD -j DOCKER-USER",
)

# Stand-ins defined ahead of the script: bash functions win over PATH, which the scripts set.
# iptables keeps one file per table, each line as `iptables -S` prints it.
STUBS = r"""
dy_log() { printf '%s\n' "$*" >>"$DY_CALLS"; }
for dy_cmd in userdel groupdel useradd usermod gpasswd umount chown; do
  eval "$dy_cmd() { dy_log $dy_cmd \"\$@\"; }"
done
groupadd() {  # the new group is what getent finds from then on
  dy_log groupadd "$@"
  DY_GROUP="${*: -1}:x:${DY_NEW_GID:-990}:"
}
sysctl() {  # reads answer $DY_IP_FORWARD (default 0, as on a fresh host); writes are recorded
  dy_log sysctl "$@"
  if [ "$1" = -n ]; then echo "${DY_IP_FORWARD:-0}"; fi
}
systemctl() {  # no unit runs: a real `dockyard-net up` must never start from here
  dy_log systemctl "$@"
  case "$1" in is-active | is-enabled) return 3 ;; esac
}
install() {  # install -d [-o U -g G -m M] DIR..., or install [-o U -g G -m M] SRC DST
  dy_log install "$@"
  local dirs=0
  local -a paths=()
  while [ $# -gt 0 ]; do
    case "$1" in -d) dirs=1; shift ;; -o | -g | -m) shift 2 ;; *) paths+=("$1"); shift ;; esac
  done
  if [ "$dirs" = 1 ]; then mkdir -p -- "${paths[@]}"; else cp -- "${paths[0]}" "${paths[1]}"; fi
}
getent() {  # one user ($DY_PASSWD) and one group ($DY_GROUP), each a line of its database
  case "$1" in
    passwd) [ -n "${DY_PASSWD:-}" ] && [ "${DY_PASSWD%%:*}" = "$2" ] && echo "$DY_PASSWD" ;;
    group) [ -n "${DY_GROUP:-}" ] && [ "${DY_GROUP%%:*}" = "$2" ] && echo "$DY_GROUP" ;;
    *) return 2 ;;
  esac
}
ip() {
  dy_log ip "$@"
  if [ "$1 $2 $3" = "link show dev" ]; then
    case " ${DY_LINKS:-} " in *" $4 "*) return 0 ;; *) return 1 ;; esac
  fi
}
iptables() {
  [ "$1" = -w ] && shift
  local table=filter
  if [ "$1" = -t ]; then table=$2; shift 2; fi
  local op=$1 chain=$2; shift 2
  local file="$DY_IPT/$table" rule="-A $chain $*" line found=1
  touch "$file"
  case "$op" in
    -S) while IFS= read -r line; do
          [[ $line == "-A $chain "* ]] && printf '%s\n' "$line"
        done <"$file"; return 0 ;;
    -C) grep -qxF -- "$rule" "$file" ;;
    -P) dy_log iptables -P "$chain" "$@" ;;
    -A) printf '%s\n' "$rule" >>"$file" ;;
    -I) { printf '%s\n' "$rule"; cat "$file"; } >"$file.new"; mv "$file.new" "$file" ;;
    -D) : >"$file.new"
        while IFS= read -r line; do
          if [ "$found" = 1 ] && [ "$line" = "$rule" ]; then found=0; continue; fi
          printf '%s\n' "$line" >>"$file.new"
        done <"$file"
        mv "$file.new" "$file"; return "$found" ;;
  esac
}
"""


# Cutting a script short: every recorded command (the stand-ins above, and rm) counts, and
# the one numbered $DY_CUT_AT never runs: the script's whole process group dies first.
CUT = r"""
dy_log() {
  local n
  n=$(($(cat "$DY_CUT_COUNT") + 1))
  echo "$n" >"$DY_CUT_COUNT"
  if [ "$n" = "$DY_CUT_AT" ]; then kill -KILL -- "-$$"; fi
  printf '%s\n' "$*" >>"$DY_CALLS"
}
rm() { dy_log rm "$@"; command rm "$@"; }
mv() { dy_log mv "$@"; command mv "$@"; }
mktemp() {  # recorded after it ran: the cut lands between it and what follows
  local made
  made=$(command mktemp "$@")
  dy_log mktemp "$@"
  echo "$made"
}
"""
KILLED = -9


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    calls: list[str]
    rules: dict[str, list[str]]


@dataclass(frozen=True)
class Host:
    """A scratch host: instance roots under `base`, unit files in `units`, stub state in `work`."""

    base: Path
    units: Path
    work: Path

    def spec(self, root: Path | None = None, owner: str = OWNER) -> render.InstanceSpec:
        return render.InstanceSpec.from_props(
            {
                **PROPS,
                "prefix": PREFIX,
                "root": str(root or self.base / "dy"),
                "dockerDir": str(self.base / BINARIES / "docker"),
                "sysboxDir": str(self.base / BINARIES / "sysbox"),
                "members": [],
                "owner": owner,
            }
        )

    @property
    def claims(self) -> Path:
        """Where the scripts keep network claims (layout.NETWORK_CLAIMS_DIR on a host)."""
        return self.work / "state" / "claims"

    def seed_rules(self, table: str, *lines: str) -> None:
        (self.work / "ipt" / table).write_text("".join(f"{line}\n" for line in lines))

    def run(self, script: str, *args: str, cut_at: int = 0, **env: str) -> Ran:
        """Run `script`; with `cut_at`, killed (with everything it started) right before its
        `cut_at`-th recorded command, as a lost connection or a killed run cuts it."""
        calls = self.work / "calls"
        calls.write_text("")
        (self.work / "cut-count").write_text("0")
        # A lock of its own: never wait for (or hold) this machine's real host lock.
        script = script.replace(common.HOST_LOCK, str(self.work / "dockyard.lock"))
        assert common.HOST_LOCK not in script
        # Network claims of its own (the fixture points the scripts there), never the real ones.
        assert layout.NETWORK_CLAIMS_DIR not in script
        proc = subprocess.run(
            ["bash", "-c", STUBS + (CUT if cut_at else "") + script, "dockyard-script", *args],
            capture_output=True,
            text=True,
            env={
                **os.environ,
                "DY_CALLS": str(calls),
                "DY_IPT": str(self.work / "ipt"),
                "DY_UNIT_DIR": str(self.units),  # where the guards look for other instances
                "DY_CUT_AT": str(cut_at),
                "DY_CUT_COUNT": str(self.work / "cut-count"),
                **env,
            },
            check=False,
            start_new_session=bool(cut_at),  # the cut kills the script's process group only
        )
        ipt = self.work / "ipt"
        rules = {f.name: f.read_text().splitlines() for f in ipt.iterdir() if f.is_file()}
        return Ran(
            proc.returncode, proc.stdout + proc.stderr, calls.read_text().splitlines(), rules
        )


@pytest.fixture
def host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Host]:
    """Roots go below /srv: the scripts refuse roots in /tmp and /run (system trees), and
    every parent of a root must belong to root."""
    if os.geteuid() != 0 or not os.access("/srv", os.W_OK):
        pytest.skip("needs root and a writable /srv: instance roots cannot lie in /tmp or /run")
    units = tmp_path / "units"
    units.mkdir()
    (tmp_path / "ipt").mkdir()
    monkeypatch.setattr(render, "SYSTEMD_DIR", str(units))
    monkeypatch.setattr(hostops, "SYSTEMD_DIR", str(units))
    # Network claims in a directory of the test's own, made ahead as on a host that has some.
    (tmp_path / "state" / "claims").mkdir(parents=True)
    monkeypatch.setattr(network_claims, "STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(network_claims, "NETWORK_CLAIMS_DIR", str(tmp_path / "state" / "claims"))
    (units / layout.SYSBOX_SERVICE).write_text("[Unit]\n")
    base = Path(tempfile.mkdtemp(prefix="dockyard-test-", dir="/srv"))
    # What install's preflight wants of the SysboxHost: the shared service and binaries, in
    # directories only root can change (root runs them). `docker` records its calls.
    binaries = {
        "docker/dockerd": "exit 1",
        "docker/docker": 'echo "docker $*" >>"$DY_CALLS"',
        "sysbox/sysbox-runc": "exit 1",
    }
    for binary, body in binaries.items():
        (base / BINARIES / binary).parent.mkdir(parents=True, exist_ok=True)
        (base / BINARIES / binary).write_text(f"#!/bin/sh\n{body}\n")
        (base / BINARIES / binary).chmod(0o755)
    try:
        yield Host(base, units, tmp_path)
    finally:
        shutil.rmtree(base)


def own_rules(spec: render.InstanceSpec) -> dict[str, list[str]]:
    """`iptables -S` lines of every rule of the instance, per table, in the listed order."""
    listed: dict[str, list[str]] = {"filter": [], "nat": []}
    for rule in spec.rules():
        listed[rule.table].append(" ".join(("-A", rule.chain, *rule.args(spec.tag))))
    return listed


def make_root(root: Path, owner: str | None) -> None:
    root.mkdir()
    (root / "lib").mkdir()
    (root / "lib" / "data").write_text("precious\n")
    if owner is not None:
        (root / render.ROOT_MARKER_FILE).write_text(f"owner={owner}\nprefix={PREFIX}\n")


# --- remove ------------------------------------------------------------------------------


def test_remove_takes_away_everything_of_its_own_instance(host: Host) -> None:
    spec = host.spec()
    make_root(Path(spec.root), OWNER)
    unit(host.units, PREFIX, spec.root, OWNER)
    ours = own_rules(spec)
    host.seed_rules("filter", *ours["filter"][:3], *FOREIGN_RULES, *ours["filter"][3:])
    host.seed_rules("nat", *ours["nat"])
    pool_bridge = "br-0123456789ab"
    ran = host.run(
        hostops._remove_script(spec, [pool_bridge]),
        DY_LINKS=f"{spec.bridge_name} {pool_bridge}",
        DY_PASSWD=f"{spec.user}:x:990:990:{spec.user_comment}:{spec.root}:/usr/sbin/nologin",
    )
    assert ran.code == 0, ran.out
    assert "DOCKYARD_KEEP=" not in ran.out
    assert not os.path.lexists(spec.root)
    assert not os.path.lexists(spec.unit_path)
    # Its rules went, exactly: the neighbour's and Docker's stay.
    assert ran.rules == {"filter": list(FOREIGN_RULES), "nat": []}
    assert f"ip link del dev {spec.bridge_name}" in ran.calls
    assert f"ip link del dev {pool_bridge}" in ran.calls
    assert f"userdel {spec.user}" in ran.calls


def test_remove_leaves_another_owners_instance_alone(host: Host) -> None:
    spec = host.spec()
    make_root(Path(spec.root), OTHER)
    unit_file = unit(host.units, PREFIX, spec.root, OTHER)
    ours = own_rules(spec)
    host.seed_rules("filter", *ours["filter"])
    ran = host.run(
        hostops._remove_script(spec, []),
        DY_LINKS=spec.bridge_name,
        DY_PASSWD=f"{spec.user}:x:990:990:Dockyard instance {PREFIX} ({OTHER}):/:/bin/false",
    )
    assert ran.code == 0, ran.out
    assert f"belongs to {OTHER}" in ran.out and "left alone" in ran.out
    assert (Path(spec.root) / "lib" / "data").read_text() == "precious\n"
    assert unit_file.exists()
    assert ran.rules["filter"] == ours["filter"]
    assert ran.calls == []  # no unit stopped, no link, user or group deleted


def test_remove_keeps_a_root_that_has_no_marker(host: Host) -> None:
    """A directory at the root's path that Dockyard did not make (no marker, and no unit of
    an earlier Dockyard naming it) survives the delete; the rest of the instance goes."""
    spec = host.spec()
    make_root(Path(spec.root), None)
    host.seed_rules("filter", *own_rules(spec)["filter"])
    ran = host.run(hostops._remove_script(spec, []))
    assert ran.code == 0, ran.out
    assert "its marker names nobody" in ran.out
    assert (Path(spec.root) / "lib" / "data").read_text() == "precious\n"
    assert ran.rules["filter"] == []


def test_remove_of_an_earlier_dockyards_instance_takes_its_root(host: Host) -> None:
    """No marker, but the instance's own unit (no owner line) names the root: it is ours."""
    spec = host.spec()
    make_root(Path(spec.root), None)
    unit(host.units, PREFIX, spec.root, None)
    ran = host.run(hostops._remove_script(spec, []))
    assert ran.code == 0, ran.out
    assert not os.path.lexists(spec.root)


def test_remove_never_follows_a_symlinked_root(host: Host) -> None:
    target = host.base / "elsewhere"
    make_root(target, OWNER)
    link = host.base / "dy"
    link.symlink_to(target)
    spec = host.spec(link)
    ran = host.run(hostops._remove_script(spec, []))
    assert ran.code == 0, ran.out
    assert link.is_symlink()
    assert (target / "lib" / "data").read_text() == "precious\n"


@pytest.mark.parametrize(
    ("comment", "deleted"),
    [
        (f"Dockyard instance {PREFIX} ({OWNER})", True),
        (f"Dockyard instance {PREFIX}", True),  # made by an earlier Dockyard: no owner
        (f"Dockyard instance {PREFIX} ({OTHER})", False),
        ("Backup operator", False),
    ],
)
def test_remove_deletes_only_the_instances_own_user(
    host: Host, comment: str, deleted: bool
) -> None:
    spec = host.spec()
    ran = host.run(
        hostops._remove_script(spec, []),
        DY_PASSWD=f"{spec.user}:x:990:990:{comment}:/home/x:/bin/sh",
    )
    assert ran.code == 0, ran.out
    assert (f"userdel {spec.user}" in ran.calls) is deleted, ran.calls
    assert (f"user {spec.user} left in place" in ran.out) is not deleted, ran.out


# --- stop --------------------------------------------------------------------------------


@pytest.mark.parametrize(("owner", "stopped"), [(OWNER, True), (OTHER, False)])
def test_stop_stops_only_its_own_owners_unit(host: Host, owner: str, stopped: bool) -> None:
    spec = host.spec()
    make_root(Path(spec.root), owner)
    unit(host.units, PREFIX, spec.root, owner)
    ran = host.run(hostops._stop_script(spec))
    assert ran.code == 0, ran.out
    wanted = [
        f"systemctl disable -q --no-reload {spec.service_name}",
        f"systemctl stop {spec.service_name}",
    ]
    assert [c for c in ran.calls if c in wanted] == (wanted if stopped else [])


# --- the unit's network script (ExecStartPre up, ExecStopPost down) ------------------------


def test_net_down_sweeps_exactly_the_instances_rules(host: Host) -> None:
    spec = host.spec()
    ours = own_rules(spec)
    host.seed_rules("filter", *ours["filter"][:4], *FOREIGN_RULES, *ours["filter"][4:])
    host.seed_rules("nat", *ours["nat"])
    ran = host.run(render.net_script(spec), "down")
    assert ran.code == 0, ran.out
    assert ran.rules == {"filter": list(FOREIGN_RULES), "nat": []}


def test_net_up_replaces_rules_of_an_older_configuration(host: Host) -> None:
    spec = host.spec()
    # Left by an earlier pool of this instance: `up` must not keep it beside the new rules.
    stale = f"-A FORWARD -o br-+ -d 172.31.0.0/16 -m comment --comment {spec.tag} -j DROP"
    host.seed_rules("filter", stale, *FOREIGN_RULES)
    ran = host.run(render.net_script(spec), "up", DY_LINKS=spec.bridge_name)
    assert ran.code == 0, ran.out
    ours = own_rules(spec)
    top = [r for r in spec.rules() if r.table == "filter" and not r.append]
    # Guards on top in the listed order, the neighbour's rules below them, egress at the end.
    assert ran.rules["filter"] == [
        *ours["filter"][: len(top)],
        *FOREIGN_RULES,
        *ours["filter"][len(top) :],
    ]
    assert ran.rules["nat"] == ours["nat"]
    assert host.run(render.net_script(spec), "check", DY_LINKS=spec.bridge_name).code == 0
    # A second `up` finds every rule present and changes nothing.
    again = host.run(render.net_script(spec), "up", DY_LINKS=spec.bridge_name)
    assert again.rules == ran.rules


@pytest.mark.parametrize(
    ("forwarding", "changes"),
    [
        # A host that did not forward: FORWARD's policy becomes DROP before forwarding starts,
        # so the host never routes between its other interfaces (Docker does the same).
        ("0", ["iptables -P FORWARD DROP", "sysctl -q -w net.ipv4.ip_forward=1"]),
        # A host that forwarded already (its admin routes through it): policy left alone.
        ("1", []),
    ],
)
def test_net_up_turns_forwarding_on_as_docker_does(
    host: Host, forwarding: str, changes: list[str]
) -> None:
    spec = host.spec()
    ran = host.run(
        render.net_script(spec), "up", DY_LINKS=spec.bridge_name, DY_IP_FORWARD=forwarding
    )
    assert ran.code == 0, ran.out
    made = [c for c in ran.calls if c.startswith(("iptables -P", "sysctl -q -w"))]
    assert made == changes, ran.calls
    assert ran.rules["filter"] == own_rules(spec)["filter"]


# --- the lists of system directories, on the config side and on the host -----------------

# Literal on purpose: a tree dropped from values.py must fail here, not silently shrink a loop.
MUST_REFUSE = (
    "/",
    "/dev",
    "/dev/shm/dy1",
    "/proc/dy1",
    "/sys/fs/dy1",
    "/run/dy1",
    "/tmp/dy1",
    "/var/tmp/dy1",
    "/etc/dy1",
    "/usr/dy1",
    "/boot/dy1",
    "/root/dy1",
    "/var/lib/docker/dy1",
    "/home/alice",
)


@pytest.mark.parametrize("root", MUST_REFUSE)
def test_kernel_device_and_system_trees_are_refused_by_config_and_host(root: str) -> None:
    with pytest.raises(ValueError, match=r"system directory|is inside|is /|home directory"):
        values.root_dir(root)
    proc = subprocess.run(
        ["bash", "-c", f"{hostops.guards()}\nroot={root}\n{hostops._system_dir_guard()}"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3 and "refusing" in proc.stderr, proc.stderr


# --- the root's marker ---------------------------------------------------------------------


def test_a_symlinked_marker_does_not_make_a_directory_ours(host: Host) -> None:
    """A directory whose marker is a link to a real marker of ours (anyone who can create the
    link could aim it anywhere) is not an instance root: install refuses it, remove keeps it."""
    real = host.base / "real"
    make_root(real, OWNER)
    spec = host.spec()
    root = Path(spec.root)
    make_root(root, None)
    (root / render.ROOT_MARKER_FILE).symlink_to(real / render.ROOT_MARKER_FILE)
    code, out = run_guard(
        f"dy_check_owner {PREFIX} {root} {spec.unit_path} {PREFIX}nouser '{OWNER}' 0"
        f" {PREFIX}nogroup",
        host.units,
    )
    assert code == 3 and "not a Dockyard instance root" in out, out
    ran = host.run(hostops._remove_script(spec, []))
    assert ran.code == 0, ran.out
    assert (root / "lib" / "data").read_text() == "precious\n"


# --- install: every guard runs before anything on the host changes ---------------------------


def test_install_of_a_fresh_root_passes_the_guards_and_marks_the_root(host: Host) -> None:
    spec = host.spec()
    ran = host.run(hostops._install_script(spec))
    assert ran.code == 0, ran.out
    assert f"{hostops.CHANGED_MARK}1" in ran.out
    marker = Path(spec.marker_path).read_text()
    assert marker == f"owner={OWNER}\nprefix={PREFIX}\n"
    assert f"{layout.OWNER_MARKER}{OWNER}" in Path(spec.unit_path).read_text()
    # Installing again is allowed: everything found is this owner's.
    assert host.run(hostops._install_script(spec)).code == 0


def test_install_creates_the_missing_parents_of_a_nested_root(host: Host) -> None:
    """A root like stacks/Pulumi.existing.example.yaml's /srv-dockyard/ci on a host that has
    no /srv-dockyard yet: its parents are made root's and 0755, as dy_check_path wants."""
    spec = host.spec(root=host.base / "srv-dockyard" / "ci")
    ran = host.run(hostops._install_script(spec))
    assert ran.code == 0, ran.out
    parent = host.base / "srv-dockyard"
    assert (parent.stat().st_uid, parent.stat().st_mode & 0o777) == (0, 0o755)
    assert Path(spec.marker_path).is_file()
    assert host.run(hostops._install_script(spec)).code == 0


# Records, at the moment each of these commands runs, whether the host lock and the lock of
# the instance's root are held (a second `flock -n` on the same file fails while they are).
LOCK_PROBE = f"""
dy_locks() {{
  local on_host=free on_root=free
  flock -n {common.HOST_LOCK} true || on_host=held
  flock -n "$root" true || on_root=held
  dy_log "$1 host-lock=$on_host root-lock=$on_root"
}}
useradd() {{ dy_locks useradd; }}
gpasswd() {{ dy_locks gpasswd; }}
mkdir() {{ dy_locks mkdir; command mkdir "$@"; }}  # install -d of the instance's directories
systemctl() {{
  case "$1" in
    daemon-reload | enable) dy_locks "systemctl-$1" ;;
    is-active | is-enabled) return 3 ;;
  esac
}}
"""


def test_install_claims_under_the_host_lock_and_writes_its_own_files_under_its_root_lock(
    host: Host,
) -> None:
    """The checks, the claims (user, members, unit file) and systemd's reload and enable
    hold the host lock; the instance's own directories and files only its root's lock, so
    parallel installs on one host take turns for the short part only."""
    spec = host.spec()
    ran = host.run(LOCK_PROBE + hostops._install_script(spec))
    assert ran.code == 0, ran.out
    seen = [call for call in ran.calls if "-lock=" in call]
    assert seen == [
        "useradd host-lock=held root-lock=free",
        "gpasswd host-lock=held root-lock=free",
        "systemctl-daemon-reload host-lock=held root-lock=free",
        "systemctl-enable host-lock=held root-lock=free",
        *["mkdir host-lock=free root-lock=held"] * len(render.DIR_MODES),
    ], ran.calls
    # Nothing of the instance's own files is written before the unit file claims the root.
    script = hostops._install_script(spec)
    released = script.index(common.RELEASE_HOST_LOCK)
    assert script.index(f"put_file {spec.unit_path} ") < released
    assert script.index("install -d ") > released
    assert script.index("exec 8<") < released


def _tree(*tops: Path) -> dict[str, str]:
    """Every path below `tops` with its kind and content: what a refused install must not
    change."""
    found = {}
    for top in tops:
        for path in [top, *top.rglob("*")]:
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            found[str(path)] = path.read_text() if kind == "file" else kind
    return found


def _refused(host: Host, spec: render.InstanceSpec, words: str, **env: str) -> None:
    before = _tree(host.base, host.units)
    ran = host.run(hostops._install_script(spec), **env)
    assert ran.code == 3 and words in ran.out, ran.out
    assert ran.calls == []  # no user, group, directory, unit or rule touched
    assert _tree(host.base, host.units) == before


def test_install_refuses_a_root_behind_a_symbolic_link(host: Host) -> None:
    (host.base / "real").mkdir()
    (host.base / "link").symlink_to(host.base / "real")
    _refused(host, host.spec(host.base / "link" / "dy"), "is a symbolic link")


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o770])
def test_install_refuses_a_parent_others_can_write(host: Host, mode: int) -> None:
    """Group- or world-writable: a member of that group could swap in their own bin/."""
    shared = host.base / "shared"
    shared.mkdir()
    shared.chmod(mode)
    _refused(host, host.spec(shared / "dy"), "writable by root only")


@pytest.mark.parametrize(
    ("other", "words"),
    [("outer", "lies inside"), ("dy/inner", "contains"), ("dy", "is already the root")],
)
def test_install_refuses_a_root_nested_with_another_instances_root(
    host: Host, other: str, words: str
) -> None:
    """`other` (relative to the scratch base) is the root named by another instance's unit;
    ours is base/dy, or base/outer/dy when the other one is base/outer."""
    other_root = host.base / other
    if other == "outer":
        make_root(other_root, OTHER)
    unit(host.units, NEIGHBOUR, str(other_root), OTHER)
    root = other_root / "dy" if other == "outer" else host.base / "dy"
    _refused(host, host.spec(root), words)


def test_install_refuses_an_existing_directory_without_marker(host: Host) -> None:
    spec = host.spec()
    make_root(Path(spec.root), None)
    _refused(host, spec, "not a Dockyard instance root")


def test_install_refuses_a_root_that_is_a_symbolic_link(host: Host) -> None:
    """Even to a real root of this very owner: the link itself is not that root."""
    real = host.base / "real"
    make_root(real, OWNER)
    (host.base / "dy").symlink_to(real)
    _refused(host, host.spec(), "is a symbolic link")
    # The owner check refuses it on its own too (install runs the path check first).
    spec = host.spec()
    code, out = run_guard(
        f"dy_check_owner {PREFIX} {spec.root} {spec.unit_path} {PREFIX}nouser '{OWNER}' 0"
        f" {PREFIX}nogroup",
        host.units,
    )
    assert code == 3 and "exists and is not a directory" in out, out


def test_install_refuses_another_owners_unit_of_the_same_name(host: Host) -> None:
    spec = host.spec()
    unit(host.units, PREFIX, spec.root, OTHER)
    _refused(host, spec, f"belongs to {OTHER}")


def test_install_refuses_to_run_without_an_owner(host: Host) -> None:
    _refused(host, host.spec(owner=""), "no owner given")


# --- install: the temporary directory a new root is built in --------------------------------

# Literal on purpose (values.ROOT_STAGING_MARK): what install.sh.j2 names its temporary root.
STAGING = ".dockyard-new"


def test_install_keeps_a_sibling_root_that_looks_like_its_leftover(host: Host) -> None:
    """Another stack's instance rooted at <root>.dockyard-new.prod (made before such roots
    were refused) matches the leftover glob of <root>: it keeps its data."""
    sibling = host.base / f"dy{STAGING}.prod"
    make_root(sibling, OTHER)
    unit(host.units, NEIGHBOUR, str(sibling), OTHER)
    ran = host.run(hostops._install_script(host.spec()))
    assert ran.code == 0, ran.out
    assert (sibling / "lib" / "data").read_text() == "precious\n"
    assert (sibling / render.ROOT_MARKER_FILE).read_text() == f"owner={OTHER}\nprefix={PREFIX}\n"


def test_install_removes_only_its_own_leftovers(host: Host) -> None:
    """A run cut short leaves <root>.dockyard-new.XXXXXX with this owner's marker: the next
    run removes it; an unmarked directory and a symlink to our own leftover stay."""
    ours = host.base / f"dy{STAGING}.Ab12Cd"
    make_root(ours, OWNER)
    unmarked = host.base / f"dy{STAGING}.Zz99Yy"
    make_root(unmarked, None)
    target = host.base / "target"
    make_root(target, OWNER)
    link = host.base / f"dy{STAGING}.link"
    link.symlink_to(target)
    ran = host.run(hostops._install_script(host.spec()))
    assert ran.code == 0, ran.out
    assert not os.path.lexists(ours)
    assert (unmarked / "lib" / "data").read_text() == "precious\n"
    assert link.is_symlink() and (target / "lib" / "data").read_text() == "precious\n"


@pytest.mark.parametrize("name", [f"a{STAGING}.prod", f"a{STAGING}"])
def test_install_refuses_a_root_named_like_a_leftover(host: Host, name: str) -> None:
    _refused(host, host.spec(host.base / name), f"contains '{STAGING}'")


# --- the instance's group: its own only when it made it -------------------------------------

GID = "4242"


def _group_line(spec: render.InstanceSpec, gid: str = GID) -> str:
    return f"{spec.group}:x:{gid}:"


def _user_line(spec: render.InstanceSpec, gid: str = GID) -> str:
    return f"{spec.user}:x:990:{gid}:{spec.user_comment}:{spec.root}:/usr/sbin/nologin"


def _record(spec: render.InstanceSpec) -> Path:
    return Path(spec.root) / render.GROUP_RECORD_FILE


def test_install_refuses_a_group_that_existed_before(host: Host) -> None:
    spec = host.spec()
    _refused(
        host,
        spec,
        f"group {spec.group} already exists and is not this instance's",
        DY_GROUP=_group_line(spec),
    )


def test_install_records_the_group_it_makes_and_keeps_it_from_then_on(host: Host) -> None:
    spec = host.spec()
    first = host.run(hostops._install_script(spec))
    assert first.code == 0, first.out
    assert f"groupadd --system {spec.group}" in first.calls
    assert _record(spec).read_text() == "gid=990\n"
    # The next run finds the group the first one made (groupadd's gid 990): its own.
    again = host.run(hostops._install_script(spec), DY_GROUP=_group_line(spec, "990"))
    assert again.code == 0, again.out
    assert not [c for c in again.calls if c.startswith("groupadd")]


@pytest.mark.parametrize(
    ("record", "user", "accepted"),
    [
        (f"gid={GID}\n", "", True),  # recorded by an earlier run
        ("", "", True),  # a run cut between its record and groupadd's end
        ("gid=990\n", "", False),  # ours was deleted; this one is someone else's
        (None, "ours", True),  # an earlier Dockyard's: the primary group of our user
        (None, "ours, other primary group", False),
        (None, "", False),
    ],
)
def test_install_takes_an_existing_group_only_by_its_record_or_its_user(
    host: Host, record: str | None, user: str, accepted: bool
) -> None:
    spec = host.spec()
    make_root(Path(spec.root), OWNER)
    if record is not None:
        _record(spec).write_text(record)
    env = {"DY_GROUP": _group_line(spec)}
    if user:
        env["DY_PASSWD"] = _user_line(spec, GID if user == "ours" else "100")
    if not accepted:
        _refused(host, spec, f"group {spec.group} already exists and is not this instance's", **env)
        return
    ran = host.run(hostops._install_script(spec), **env)
    assert ran.code == 0, ran.out
    assert _record(spec).read_text() == f"gid={GID}\n"


@pytest.mark.parametrize(
    ("record", "user", "deleted"),
    [
        (f"gid={GID}\n", "", True),
        (None, "ours", True),  # an earlier Dockyard's: the primary group of our user
        (None, "", False),  # existed before the instance (or is someone else's)
        ("gid=990\n", "", False),
    ],
)
def test_remove_deletes_the_group_only_when_the_instance_made_it(
    host: Host, record: str | None, user: str, deleted: bool
) -> None:
    spec = host.spec()
    make_root(Path(spec.root), OWNER)
    unit(host.units, PREFIX, spec.root, OWNER)
    if record is not None:
        _record(spec).write_text(record)
    env = {"DY_GROUP": _group_line(spec)}
    if user:
        env["DY_PASSWD"] = _user_line(spec)
    ran = host.run(hostops._remove_script(spec, []), **env)
    assert ran.code == 0, ran.out
    assert (f"groupdel {spec.group}" in ran.calls) is deleted, ran.calls
    kept = f"group {spec.group} left in place: Dockyard did not make it for this instance"
    assert (kept in ran.out) is not deleted, ran.out
    assert not os.path.lexists(spec.root)


# --- partial failures: scripts cut short anywhere --------------------------------------------


def _own_instance(host: Host, spec: render.InstanceSpec) -> dict[str, str]:
    """This owner's complete instance on the scratch host; the passwd and group lines."""
    if os.path.lexists(spec.root):
        shutil.rmtree(spec.root)
    make_root(Path(spec.root), OWNER)
    _record(spec).write_text(f"gid={GID}\n")
    unit(host.units, PREFIX, spec.root, OWNER)
    return {"DY_PASSWD": _user_line(spec), "DY_GROUP": _group_line(spec)}


def test_a_delete_cut_anywhere_leaves_the_root_claimed_and_the_next_one_finishes(
    host: Host,
) -> None:
    """Cut before each of its commands in turn: the unit file (the claim other instances'
    checks read) outlives the root, another owner's root inside it stays refused while it
    exists, and the next delete removes the rest."""
    spec = host.spec()
    inner = render.InstanceSpec.from_props(
        {**PROPS, "prefix": NEIGHBOUR, "root": f"{spec.root}/inner", "owner": OTHER,
         "members": [], "dockerDir": spec.docker_dir, "sysboxDir": spec.sysbox_dir}
    )  # fmt: skip
    for cut in itertools.count(1):
        env = _own_instance(host, spec)
        ran = host.run(hostops._remove_script(spec, []), cut_at=cut, **env)
        if ran.code == 0:  # past the last command: nothing was cut
            break
        assert ran.code == KILLED, ran.out
        if os.path.lexists(spec.root):
            assert os.path.exists(spec.unit_path), f"cut {cut}: root without its claim"
            nested = host.run(hostops._install_script(inner))
            assert nested.code == 3 and "lies inside" in nested.out, (cut, nested.out)
            assert not os.path.lexists(inner.root)
        again = host.run(hostops._remove_script(spec, []), **env)
        assert again.code == 0, (cut, again.out)
        assert not os.path.lexists(spec.root) and not os.path.lexists(spec.unit_path), cut
    assert cut > 5, "the remove script recorded too few commands to cut"


def test_the_nesting_check_sees_a_root_whose_unit_is_gone(host: Host) -> None:
    """An install or delete cut short can leave a marked root without a unit."""
    outer = host.base / "outer"
    make_root(outer, OTHER)
    _refused(host, host.spec(outer / "dy"), f"lies inside {outer}, the root of a Dockyard")


def test_removing_what_a_create_cut_anywhere_made_leaves_nothing(host: Host) -> None:
    """A failed create runs remove (hostops.create): from any point the install was cut at,
    it takes away the root, temporary roots, unit, user and group the install made."""
    spec = host.spec()
    for cut in itertools.count(1):
        ran = host.run(hostops._install_script(spec), cut_at=cut)
        if ran.code == 0:
            break
        assert ran.code == KILLED, ran.out
        made = " ".join(ran.calls)
        env = {}
        if "groupadd " in made:  # the group exists (gid 990, the stand-in's)
            env["DY_GROUP"] = _group_line(spec, "990")
        if "useradd " in made:
            env["DY_PASSWD"] = _user_line(spec, "990")
        removed = host.run(hostops._remove_script(spec, []), **env)
        assert removed.code == 0, (cut, removed.out)
        assert "DOCKYARD_KEEP=" not in removed.out, (cut, removed.out)
        left = [p.name for p in host.base.iterdir() if p.name != BINARIES]
        assert left == [], (cut, left, ran.calls)
        assert not os.path.lexists(spec.unit_path), cut
        assert ("groupdel " in " ".join(removed.calls)) == ("DY_GROUP" in env), cut
        assert ("userdel " in " ".join(removed.calls)) == ("DY_PASSWD" in env), cut
    assert cut > 10, "the install script recorded too few commands to cut"


# --- binaries root runs: dockerDir and sysboxDir ---------------------------------------------


def _untrust(host: Host, how: str) -> str:
    """Make the docker directory (or a path on its way) changeable by someone but root, the
    way `how` names; returns the input key the refusal must name."""
    docker = host.base / BINARIES / "docker"
    if how == "dir writable by others":
        docker.chmod(0o757)
    elif how == "binary writable by a group":
        os.chown(docker / "dockerd", 0, 65534)
        (docker / "dockerd").chmod(0o775)
    elif how == "parent owned by a user":
        os.chown(docker.parent, 65534, 65534)
    elif how == "dir is a symlink":
        shutil.move(docker, host.base / "real-docker")
        docker.symlink_to(host.base / "real-docker")
    elif how == "sysbox dir writable by others":
        (host.base / BINARIES / "sysbox").chmod(0o777)
        return "sysboxDir"
    return "dockerDir"


@pytest.mark.parametrize(
    "how",
    [
        "dir writable by others",
        "binary writable by a group",
        "parent owned by a user",
        "dir is a symlink",
        "sysbox dir writable by others",
    ],
)
def test_install_refuses_binaries_someone_else_can_change(host: Host, how: str) -> None:
    key = _untrust(host, how)
    spec = host.spec()
    path = spec.docker_dir if key == "dockerDir" else spec.sysbox_dir
    _refused(host, spec, f"{key} {path}: ")


def test_binaries_of_root_alone_pass(host: Host) -> None:
    """The positive control: group root may write (mode 775, gid 0), nobody else."""
    (host.base / BINARIES / "docker").chmod(0o775)
    ran = host.run(hostops._install_script(host.spec()))
    assert ran.code == 0, ran.out


@pytest.mark.parametrize("trusted", [True, False])
def test_stop_runs_the_docker_client_only_from_a_directory_of_root_alone(
    host: Host, trusted: bool
) -> None:
    spec = host.spec()
    make_root(Path(spec.root), OWNER)
    unit(host.units, PREFIX, spec.root, OWNER)
    Path(spec.socket_path).parent.mkdir()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(spec.socket_path)
        if not trusted:
            _untrust(host, "dir writable by others")
        ran = host.run(hostops._stop_script(spec))
    assert ran.code == 0, ran.out
    client = [c for c in ran.calls if c.startswith("docker ")]
    assert client == ([f"docker -H {spec.docker_host} ps -q"] if trusted else []), ran.calls
    assert f"systemctl stop {spec.service_name}" in ran.calls


def test_read_reports_binaries_someone_else_can_change_and_does_not_run_them(
    host: Host,
) -> None:
    spec = host.spec()
    make_root(Path(spec.root), OWNER)
    Path(spec.socket_path).parent.mkdir()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(spec.socket_path)
        trusted = host.run(hostops._inspect_script(spec))
        _untrust(host, "dir writable by others")
        untrusted = host.run(hostops._inspect_script(spec))
    assert trusted.code == 0 and untrusted.code == 0, (trusted.out, untrusted.out)
    assert [c for c in trusted.calls if c.startswith("docker ")] != []  # positive control
    assert hostops.parse_state(trusted.out).untrusted_binaries == ""
    assert [c for c in untrusted.calls if c.startswith("docker ")] == []
    state = hostops.parse_state(untrusted.out)
    problems = [p for p in state.problems(spec) if p.startswith("binaries root must not run")]
    assert problems == [
        f"binaries root must not run: {spec.docker_dir}: {spec.docker_dir} belongs to uid 0,"
        " gid 0 with mode 757"
    ]


# --- isolation is the default of the rule set ----------------------------------------------


def test_instance_rules_isolate_unless_told_otherwise() -> None:
    bridge, fixed, pool = "zq9_docker0", "172.22.9.0/24", "172.23.144.0/20"
    rules = iptables.instance_rules(
        bridge, ipaddress.IPv4Network(fixed), ipaddress.IPv4Network(pool)
    )
    drops = [r.spec for r in rules if r.spec[-1] == "DROP" and not r.append]
    assert ("-o", bridge, "-j", "DROP") in drops
    assert ("-o", iptables.POOL_BRIDGES, "-d", pool, "-j", "DROP") in drops
