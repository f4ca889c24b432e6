"""How long one instance install holds the host-wide lock: the part of it that parallel
installs on one host must take in turns, whatever the machine's CPU (the rest overlaps).

Runs the very install script Dockyard renders, with bash xtrace timestamps on stderr, for
one instance on the bench VM, then deletes the instance."""

from __future__ import annotations

import re

from dockyard_resources.hostops import instance as hostops
from dockyard_resources.render.common import HOST_LOCK_TIMEOUT_S, RELEASE_HOST_LOCK
from dockyard_resources.render.instance import InstanceSpec
from dockyard_resources.vm import runner
from tools.bench.measure import Recorder
from tools.bench.provider_phases import host_session, instance_props

PROFILED = 9  # an instance number the scaling phases do not use
_STAMPED = re.compile(r"^\++ (\d+\.\d+) (.*)$")
_TAKE = f"flock -w {HOST_LOCK_TIMEOUT_S} 9"
_RELEASE = RELEASE_HOST_LOCK.splitlines()[0]


def traced(script: str) -> str:
    """The script with every command timestamped on stderr (strict mode stays first); a
    last no-op stamps the end of the command before it."""
    head, sep, rest = script.partition("\n")
    return head + sep + "PS4='+ $EPOCHREALTIME '\nset -x\n" + rest.rstrip("\n") + "\n: end\n"


def lock_span(xtrace: str) -> tuple[float, float]:
    """(seconds holding the host lock, seconds of the whole script) from an xtrace log:
    from the lock's `flock` to its release, or to the end when the script never releases it."""
    stamps = [(float(m[1]), m[2]) for m in map(_STAMPED.match, xtrace.splitlines()) if m]
    if not stamps:
        raise ValueError("no timestamped xtrace lines: was the script run with traced()?")
    end = stamps[-1][0]
    taken = next(t for t, command in stamps if command.startswith(_TAKE))
    released = next((t for t, command in stamps if command.startswith(_RELEASE)), end)
    return released - taken, end - stamps[0][0]


def host_lock_per_install(rec: Recorder, vm: runner.Vm) -> None:
    spec = InstanceSpec.from_props(instance_props(vm, PROFILED))
    ssh = host_session(vm)
    try:
        with rec.phase("install under xtrace: time holding the host lock") as phase:
            result = ssh.run(traced(hostops._install_script(spec)), step="install (xtrace)")
            held, whole = lock_span(result.stderr)
            phase.extra.update(hostLockSeconds=round(held, 2), scriptSeconds=round(whole, 2))
    finally:
        hostops.remove(ssh, spec)
