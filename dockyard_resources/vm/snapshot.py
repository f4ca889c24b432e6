"""Booted VM templates and their clones: boot once cold, then start in seconds from `-loadvm`.

A template is a VM booted cold once per base image, VM spec (memory, cpus,
disk, suite), QEMU version and QEMU command line: SSH answered, systemd
finished starting, `sync`, vCPUs stopped, `savevm booted`, QEMU quit. It stays
in `${DOCKYARD_CACHE}/vms/template-<image key>-<hash>/` (a name no VM reaper
matches) with `template.json` (its inputs, the QEMU version, timings), and is
rebuilt only when one of those inputs changes (a new name); templates nobody
can load any more are removed when a new one is built. An `fcntl` lock per template
(`vms/.template-....lock`) makes concurrent callers wait for one build; clones
copy it under a shared lock.

A clone is a new VM directory whose overlay is a sparse copy of the template's
(the internal snapshot travels inside the qcow2 file) with its own client key,
SSH host key, seed disk and machine-id. QEMU starts with the template's command
line (only the clone's own paths, port, name and machine-id differ) plus
`-loadvm booted`: the guest continues where the template stopped, with the
template's identity, clock and boot_id. `adopt_identity` therefore logs in
with the template's keys (kept in the clone's directory) and, in one command,
sets the clock to this machine's time, installs the clone's host key,
authorized key and hostname from its own seed disk (the guest's own
`dockyard-seed`), writes its machine-id, restarts journald and sshd. From then
on the clone answers only with its own pinned host key and client key; its
next reboot boots its own kernel command line and seed disk. The kernel's
boot_id stays the template's until the clone reboots (`reboot()` still sees it
change), and `vmgenid` makes the guest reseed its RNG on the load.

A layered template (`Layer`) starts as a clone of the booted template, gets what the
layer's `prepare` puts on it (for the tests: an installed SysboxHost), and is saved under
the layer's own tag; its name covers the layer's inputs, so whatever changes what
`prepare` leaves on the VM builds a new one. Its clones take the same path as above.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import paramiko
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from dockyard_resources.paths import vms_dir
from dockyard_resources.vm import image, probe, runner

# Bump when the way templates are made changes in a way the inputs do not show.
TEMPLATE_VERSION = "1"
LAYER_VERSION = "1"  # the same, for layered templates only
TEMPLATE_PREFIX = "template-"
SNAPSHOT_TAG = "booted"
SETTLE_SECONDS = 200  # systemctl is-system-running --wait, at most
ADOPT_DEADLINE = 120.0
ADOPT_COMMAND_TIMEOUT = 60.0
TEMPLATE_META = "template.json"
CLONE_META = "clone.json"
TEMPLATE_KEY = "template_id_ed25519"
# A layered template nobody cloned for this long goes when another of its layer is built
# (each product change that alters the layer makes a new one; older ones would pile up).
LAYER_UNUSED_SECONDS = 24 * 3600


class SnapshotError(runner.VmError):
    """A template could not be built, or a clone not started from it."""


@dataclass(frozen=True)
class Layer:
    """What a layered template adds to the booted one: `prepare` runs on a clone of it.

    `inputs` must name everything that changes what `prepare` leaves on the VM (rendered
    scripts, artifact sha256s, the code that installs them): they are part of the template's
    name. `name` is also the snapshot's tag.
    """

    name: str
    inputs: dict[str, Any]
    prepare: Callable[[runner.Vm], None]


@dataclass(frozen=True)
class Template:
    vm: runner.Vm
    meta: dict[str, Any]

    @property
    def name(self) -> str:
        return self.vm.state_dir.name


def _log(message: str) -> None:
    print(f"[dockyard vm] {message}", file=sys.stderr, flush=True)


@functools.cache
def qemu_version() -> str:
    """First line of `qemu-system-x86_64 --version` (a snapshot loads only in the QEMU it was
    saved with, or a compatible one)."""
    proc = subprocess.run(
        ["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        raise SnapshotError(f"qemu-system-x86_64 --version failed: {proc.stderr.strip()}")
    return proc.stdout.splitlines()[0].strip()


def template_inputs(
    spec: runner.VmSpec, base: image.BaseImage, layer: Layer | None = None
) -> dict[str, Any]:
    """Everything a template depends on, the QEMU command line included (its per-VM parts
    blanked): a changed runner, accelerator, spec, image or QEMU means a new template; for a
    layered one also the layer's inputs."""
    record = runner.VmRecord(
        name="NAME",
        memory_mb=spec.memory_mb,
        cpus=spec.cpus,
        disk_gb=spec.disk_gb,
        suite=spec.suite,
        image_key=base.key,
        machine_id="0" * 32,
        host_key="",
    )
    argv = runner.Vm(Path("/VM"))._qemu_argv(record, base, 0)
    inputs = {
        "version": TEMPLATE_VERSION,
        "tag": SNAPSHOT_TAG,
        "image": base.key,
        # The overlay holds only the blocks the guest changed: a rebuilt image under the
        # same key (its cache deleted) would not match them.
        "imageBuild": base.build_id,
        "suite": spec.suite,
        "memoryMb": spec.memory_mb,
        "cpus": spec.cpus,
        "diskGb": spec.disk_gb,
        "qemu": qemu_version(),
        "argv": argv,
    }
    if layer is not None:
        inputs.update(
            {
                "tag": layer.name,
                "layer": layer.name,
                "layerVersion": LAYER_VERSION,
                "layerInputs": layer.inputs,
            }
        )
    return inputs


def template_name(inputs: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    layer = f"{inputs['layer']}-" if inputs.get("layer") else ""
    return f"{TEMPLATE_PREFIX}{inputs['image']}-{layer}{digest[:12]}"


def clone(spec: runner.VmSpec, layer: Layer | None = None) -> runner.Vm:
    """Start VM `spec.name` from the booted template of its spec (with `layer`: from that
    layered template); return it answering SSH.

    Replaces any VM directory of that name. Raises `runner.VmError` (the VM
    directory is then removed) when the template cannot be built or loaded; what a
    layer's `prepare` raises while its template is built comes through as it is.
    """
    started = time.monotonic()
    base = image.ensure_image(spec.suite)
    inputs = template_inputs(spec, base, layer)
    name = template_name(inputs)
    vm = runner.vm_for(spec.name)
    vm.destroy()
    built = False
    try:
        for _attempt in range(3):
            with _locked(name, fcntl.LOCK_SH):
                template = _load_template(name, inputs)
                if template is not None:
                    _copy_template(template, spec, vm)
                    break
            with _locked(name, fcntl.LOCK_EX):
                if _load_template(name, inputs) is None:
                    _build_template(spec, name, inputs, layer)
                    _prune_stale_templates(keep=name)
                    built = True
        else:
            raise SnapshotError(f"template {name} vanished three times while cloning it")
        copied = time.monotonic()
        vm.start(loadvm=inputs["tag"])
        loaded = time.monotonic()
        adopt_identity(vm)
        ready = time.monotonic()
    except BaseException:
        vm.destroy()
        raise
    info = clone_info(vm)
    info.update(
        {
            "templateBuilt": built,
            "copySeconds": round(copied - started, 1),
            "loadSeconds": round(loaded - copied, 1),
            "adoptSeconds": round(ready - loaded, 1),
            "startSeconds": round(ready - started, 1),
        }
    )
    _write_json(vm.state_dir / CLONE_META, info)
    return vm


def launch(spec: runner.VmSpec, layer: Layer | None = None) -> runner.Vm:
    """`clone(spec, layer)`, else (logged) a cold boot of a fresh VM, then the layer's
    `prepare` on it: a template that cannot be built or loaded (another QEMU, a damaged
    file) costs time, not the VM."""
    try:
        return clone(spec, layer)
    except (runner.VmError, probe.ProbeHostKeyMismatch) as exc:
        _log(f"no clone for {spec.name} ({exc}); booting it cold instead")
    vm = runner.launch(spec)
    if layer is not None:
        layer.prepare(vm)
    return vm


def restore(vm: runner.Vm, tag: str | None = None) -> str:
    """Put a running clone back to its template's snapshot (`loadvm` over QMP) and give it
    its own identity and the current time again; returns its boot_id."""
    vm.load_snapshot(tag or clone_info(vm)["tag"])
    return adopt_identity(vm)


def template_meta(name: str) -> dict[str, Any]:
    """`template.json` of template `name`: inputs, QEMU version, boot_id, timings."""
    data = json.loads((vms_dir() / name / TEMPLATE_META).read_text())
    assert isinstance(data, dict)
    return data


def clone_info(vm: runner.Vm) -> dict[str, Any]:
    """`clone.json` of a clone: its template, the template's host key, start timings."""
    data = json.loads((vm.state_dir / CLONE_META).read_text())
    assert isinstance(data, dict)
    return data


def adopt_identity(vm: runner.Vm) -> str:
    """Log in to a VM just loaded from its template's snapshot with the template's keys and
    switch it to its own: clock, host key, authorized key, hostname, machine-id.
    Returns the boot_id once it answers with its own pinned key."""
    info = clone_info(vm)
    record = vm.record()
    template_key = (vm.state_dir / TEMPLATE_KEY).read_text()

    def attempt() -> None:
        if not vm.is_alive():
            raise SnapshotError(
                f"qemu of {vm.state_dir.name} exited after loadvm; console tail:\n"
                f"{vm.console_tail()}"
            )
        # The epoch is taken at the last moment: the guest's clock is the snapshot's.
        status, out = probe.run_probe(
            host=runner.SSH_HOST,
            port=record.port,
            user=runner.ROOT_USER,
            private_key=template_key,
            host_key=info["templateHostKey"],
            command=_adopt_script(record.machine_id, time.time()),
            timeout=ADOPT_COMMAND_TIMEOUT,
        )
        if status != 0:
            raise SnapshotError(
                f"switching {vm.state_dir.name} to its own identity exited {status}:\n{out}"
            )

    retrying = Retrying(
        stop=stop_after_delay(ADOPT_DEADLINE),
        wait=wait_fixed(1),
        retry=retry_if_exception_type((OSError, EOFError, paramiko.SSHException)),
        reraise=True,
    )
    try:
        retrying(attempt)
    except (OSError, EOFError, paramiko.SSHException) as exc:
        raise SnapshotError(
            f"no SSH answer from {vm.state_dir.name} after loadvm within {ADOPT_DEADLINE} s "
            f"({exc!r}); console tail:\n{vm.console_tail()}"
        ) from exc
    # sshd was restarted synchronously (Type=notify), so its own key answers at once;
    # one retry covers a connection the old listener took just before it went.
    for _attempt in range(3):
        try:
            return vm.wait_for_ssh(deadline=60.0)
        except probe.ProbeHostKeyMismatch:
            time.sleep(2)
    return vm.wait_for_ssh(deadline=60.0)


def _adopt_script(machine_id: str, epoch: float) -> str:
    # dockyard-seed (guest_config.sh) installs host key, authorized keys and hostname from
    # the seed disk: this clone's own. Its block cache is dropped first, in case the
    # template's seed disk is still cached. sshd and journald read host key and machine-id
    # only when they start; KillMode=process keeps this session alive across the restart.
    return f"""set -eu
exec 2>&1
date -s @{epoch:.3f} >/dev/null
seed=$(blkid -L dyseed)
blockdev --flushbufs "$seed"
/usr/local/sbin/dockyard-seed >/dev/null
if mountpoint -q /etc/machine-id; then
    printf '%s\\n' {machine_id} > /run/machine-id
else
    printf '%s\\n' {machine_id} > /etc/machine-id
fi
systemctl restart systemd-journald.service
systemctl restart ssh.service
"""


def _copy_template(template: Template, spec: runner.VmSpec, vm: runner.Vm) -> None:
    vm.prepare(spec, clone_of=template.vm.overlay)
    key_file = vm.state_dir / TEMPLATE_KEY
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(template.vm.private_key)
    _write_json(
        vm.state_dir / CLONE_META,
        {
            "template": template.name,
            "tag": template.meta["inputs"]["tag"],
            "templateHostKey": template.vm.host_key,
            "templateBuildSeconds": template.meta.get("buildSeconds"),
        },
    )


def _load_template(name: str, inputs: dict[str, Any]) -> Template | None:
    vm = runner.Vm(vms_dir() / name)
    try:
        meta = json.loads((vm.state_dir / TEMPLATE_META).read_text())
    except (OSError, ValueError):
        return None
    if meta.get("inputs") != inputs or not (vm.overlay.is_file() and vm.exists()):
        return None
    # Last use, for pruning layered templates nobody needs any more (mtime only).
    os.utime(vm.state_dir / TEMPLATE_META)
    return Template(vm=vm, meta=meta)


def _build_template(
    spec: runner.VmSpec, name: str, inputs: dict[str, Any], layer: Layer | None
) -> Template:
    """Bring a VM to the template's state, savevm with the vCPUs stopped, quit. Holds the lock."""
    vm = runner.Vm(vms_dir() / name)
    vm.destroy()  # what a killed build left behind, its QEMU included
    tag = inputs["tag"]
    how = "cold boot" if layer is None else f"clone of the booted template, {layer.name}"
    _log(f"building VM template {name} ({how}, then savevm {tag})")
    started = time.monotonic()
    try:
        if layer is None:
            facts = _boot_cold(vm, replace(spec, name=name))
        else:
            facts = _apply_layer(replace(spec, name=name), layer)
        ready = time.monotonic()
        vm.pause()
        vm.save_snapshot(tag)
        saved = time.monotonic()
        vm.quit()
        snapshots = _snapshots_in(vm.overlay)
        if tag not in snapshots:
            raise SnapshotError(f"{vm.overlay} holds no snapshot {tag} after savevm")
        meta = {
            "name": name,
            "inputs": inputs,
            "qemuVersion": inputs["qemu"],
            "builtAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **facts,
            "saveSeconds": round(saved - ready, 1),
            "buildSeconds": round(time.monotonic() - started, 1),
            "vmStateBytes": snapshots[tag],
            "overlayBytes": vm.overlay.stat().st_blocks * 512,
        }
        _write_json(vm.state_dir / TEMPLATE_META, meta)
    except BaseException:
        vm.destroy()
        raise
    steps = ", ".join(f"{k.removesuffix('Seconds')} {v} s" for k, v in meta.items() if "Sec" in k)
    _log(f"built VM template {name} ({steps})")
    return Template(vm=vm, meta=meta)


def _boot_cold(vm: runner.Vm, spec: runner.VmSpec) -> dict[str, Any]:
    """The booted template's state: a cold boot, finished, on disk."""
    started = time.monotonic()
    vm.prepare(spec)
    vm.start()
    boot_id = vm.wait_for_ssh()
    booted = time.monotonic()
    # A clone continues exactly here: let systemd finish starting units first, then
    # put everything on disk.
    state = vm.probe(
        f"timeout {SETTLE_SECONDS} systemctl is-system-running --wait; sync",
        timeout=SETTLE_SECONDS + 30,
    ).strip()
    return {
        "bootId": boot_id,  # every clone runs on with it until it reboots
        "systemState": state,
        "bootSeconds": round(booted - started, 1),
        "settleSeconds": round(time.monotonic() - booted, 1),
    }


def _apply_layer(spec: runner.VmSpec, layer: Layer) -> dict[str, Any]:
    """A layered template's state: a clone of the booted template (its own identity, which
    the layered template's clones then log in with), the layer's `prepare`, on disk."""
    started = time.monotonic()
    vm = clone(spec)
    cloned = time.monotonic()
    layer.prepare(vm)
    prepared = time.monotonic()
    # The page cache would be saved with the RAM (hundreds of MB after an install): every
    # clone would copy and load it. The files are on the disk.
    vm.probe("sync && echo 3 > /proc/sys/vm/drop_caches", timeout=120)
    return {
        "bootId": vm.boot_id(),  # the booted template's: a clone keeps it until it reboots
        "parent": clone_info(vm)["template"],
        "cloneSeconds": round(cloned - started, 1),
        "prepareSeconds": round(prepared - cloned, 1),
    }


def _snapshots_in(overlay: Path) -> dict[str, int]:
    """Internal snapshots of a qcow2 file (QEMU not running on it): tag -> VM state bytes."""
    proc = subprocess.run(
        ["qemu-img", "info", "--output=json", str(overlay)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SnapshotError(f"qemu-img info {overlay} failed: {proc.stderr.strip()}")
    info = json.loads(proc.stdout)
    return {snap["name"]: int(snap.get("vm-state-size", 0)) for snap in info.get("snapshots", [])}


def _prune_stale_templates(*, keep: str) -> None:
    """Remove templates nobody can load any more (other QEMU, image or template version),
    half-built ones nobody is building, and templates of `keep`'s layer nobody cloned for
    LAYER_UNUSED_SECONDS; templates of other specs stay."""
    root = vms_dir()
    layer = json.loads((root / keep / TEMPLATE_META).read_text())["inputs"].get("layer")
    for state_dir in root.glob(f"{TEMPLATE_PREFIX}*"):
        if state_dir.name == keep or not state_dir.is_dir():
            continue
        try:
            meta_file = state_dir / TEMPLATE_META
            inputs = json.loads(meta_file.read_text())["inputs"]
            unused = time.time() - meta_file.stat().st_mtime > LAYER_UNUSED_SECONDS
            stale = (
                inputs.get("version") != TEMPLATE_VERSION
                or inputs.get("qemu") != qemu_version()
                or inputs.get("image") != image.image_key(inputs.get("suite", ""))
                or inputs.get("imageBuild") != image.cached_image(inputs["image"]).build_id
                or (layer is not None and inputs.get("layer") == layer and unused)
            )
        except (OSError, ValueError, KeyError, TypeError, image.ImageBuildError):
            stale = True  # no metadata: half-built (its builder holds the lock)
        if not stale:
            continue
        with _try_locked(state_dir.name) as locked:
            if locked:
                _log(f"removing stale VM template {state_dir.name}")
                try:
                    runner.Vm(state_dir).destroy()
                except runner.VmError:
                    shutil.rmtree(state_dir, ignore_errors=True)


def _lock_path(name: str) -> Path:
    root = vms_dir()
    root.mkdir(parents=True, exist_ok=True)
    return root / f".{name}.lock"


@contextmanager
def _locked(name: str, operation: int) -> Iterator[None]:
    with open(_lock_path(name), "a+") as handle:
        fcntl.flock(handle, operation)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _try_locked(name: str) -> Iterator[bool]:
    with open(_lock_path(name), "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
