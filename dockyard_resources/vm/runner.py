"""Run one Debian VM with QEMU: overlay disk, seed disk, SSH on a local port.

A VM is a state directory (`${DOCKYARD_CACHE}/vms/<name>/`) holding its qcow2
overlay on the cached base image, its seed disk, its keys, the QEMU pidfile,
QMP socket and serial console log, and `vm.json`. The VM lives as long as its
QEMU process on this machine: nothing restarts it after this machine reboots.

Memory snapshots: `save_snapshot` / `load_snapshot` keep the whole running VM
(RAM, devices, disk) as an internal snapshot of its qcow2 overlay, and
`start(loadvm=tag)` starts QEMU from one instead of booting; booted templates
and their clones are built on them in `snapshot.py`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import paramiko
from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

from dockyard_resources.errors import DockyardError
from dockyard_resources.paths import vms_dir
from dockyard_resources.vm import accel, image, keys, probe, qmp, seed

SSH_HOST = "127.0.0.1"
ROOT_USER = "root"
SUDO_USER = "dockyard"
BOOT_DEADLINE = 300.0
PROBE_TIMEOUT = 10.0
# savevm writes every guest page in use (hundreds of MB under TCG): far beyond QMP's 5 s.
SAVEVM_TIMEOUT = 600.0
LOADVM_TIMEOUT = 300.0


class VmError(DockyardError):
    """The VM did not start, stop or answer as expected; carries the console tail."""


class StaleBoot(RuntimeError):
    """SSH answered, but from the boot we are waiting to see replaced."""


@dataclass(frozen=True)
class VmSpec:
    name: str
    memory_mb: int = 2048
    cpus: int = 2
    disk_gb: int = 10
    suite: str = image.DEFAULT_SUITE


@dataclass
class VmRecord:
    """What `vm.json` keeps about a VM (the private key lives in its own 0600 file)."""

    name: str
    memory_mb: int
    cpus: int
    disk_gb: int
    suite: str
    image_key: str
    machine_id: str
    host_key: str
    port: int = 0
    pid: int = 0


class Vm:
    """Handle on one VM's state directory; methods act on its QEMU process."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    # --- files ---------------------------------------------------------------
    @property
    def overlay(self) -> Path:
        return self.state_dir / "disk.qcow2"

    @property
    def seed_disk(self) -> Path:
        return self.state_dir / "seed.img"

    @property
    def pidfile(self) -> Path:
        return self.state_dir / "qemu.pid"

    @property
    def qmp_socket(self) -> Path:
        return self.state_dir / "qmp.sock"

    @property
    def console_log(self) -> Path:
        return self.state_dir / "console.log"

    @property
    def record_file(self) -> Path:
        return self.state_dir / "vm.json"

    @property
    def private_key_file(self) -> Path:
        return self.state_dir / "id_ed25519"

    def exists(self) -> bool:
        return self.record_file.is_file()

    def record(self) -> VmRecord:
        return VmRecord(**json.loads(self.record_file.read_text()))

    def _save(self, record: VmRecord) -> None:
        tmp = self.record_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record), indent=2) + "\n")
        os.replace(tmp, self.record_file)

    @property
    def private_key(self) -> str:
        return self.private_key_file.read_text()

    @property
    def host_key(self) -> str:
        return self.record().host_key

    @property
    def port(self) -> int:
        return self.record().port

    @property
    def pid(self) -> int:
        return self.record().pid

    # --- life cycle ----------------------------------------------------------
    def prepare(self, spec: VmSpec, *, clone_of: Path | None = None) -> None:
        """Create keys, overlay and seed disk (first time only).

        `clone_of`: copy this qcow2 overlay (a template's, with its internal
        snapshots; same base image and size) instead of creating an empty one.
        The keys, seed disk and machine-id are this VM's own all the same.
        """
        base = image.ensure_image(spec.suite)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir.chmod(0o700)
        if self.exists() and self.record().image_key == base.key:
            return
        self.stop()  # a VM made on another image (or half-made) starts over
        for stale in (self.overlay, self.seed_disk, self.record_file):
            stale.unlink(missing_ok=True)
        host_key = keys.generate_ed25519(f"root@{spec.name}")
        client_key = keys.generate_ed25519(f"dockyard-client@{spec.name}")
        fd = os.open(self.private_key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(client_key.private_openssh)
        if clone_of is not None:
            # A plain sparse copy keeps the internal snapshots (qemu-img convert drops them).
            _check_call(
                ["cp", "--sparse=always", "--reflink=auto", str(clone_of), str(self.overlay)],
                "copy of the template overlay",
            )
        else:
            _check_call(
                [
                    "qemu-img",
                    "create",
                    "-q",
                    "-f",
                    "qcow2",
                    "-b",
                    str(base.raw),
                    "-F",
                    "raw",
                    str(self.overlay),
                    f"{spec.disk_gb}G",
                ],
                "qemu-img create",
            )
        seed.write_seed_disk(
            self.seed_disk,
            host_key=host_key,
            authorized_key=client_key.public_line,
            hostname=spec.name,
        )
        self._save(
            VmRecord(
                name=spec.name,
                memory_mb=spec.memory_mb,
                cpus=spec.cpus,
                disk_gb=spec.disk_gb,
                suite=spec.suite,
                image_key=base.key,
                machine_id=uuid.uuid4().hex,
                host_key=host_key.public_line,
            )
        )

    def start(self, *, loadvm: str | None = None) -> None:
        """Boot QEMU in the background (returns before the guest is up).

        `loadvm`: start from this internal snapshot of the overlay instead of
        booting (QEMU restores it before it daemonizes, so a snapshot that does
        not load fails here, with QEMU's message).
        """
        if self.is_alive():
            return
        record = self.record()
        base = image.cached_image(record.image_key)
        self.pidfile.unlink(missing_ok=True)
        self.qmp_socket.unlink(missing_ok=True)
        last_error = ""
        for _attempt in range(3):  # a free port can be taken between pick and bind
            port = record.port if record.port and _port_free(record.port) else _free_port()
            proc = subprocess.run(
                self._qemu_argv(record, base, port, loadvm=loadvm),
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode == 0:
                record.port = port
                record.pid = int(self.pidfile.read_text().strip())
                self._save(record)
                return
            last_error = proc.stderr.strip()
            record.port = 0
            if loadvm is not None and "forwarding rule" not in last_error:
                raise VmError(f"qemu did not start from snapshot {loadvm!r}: {last_error}")
        raise VmError(f"qemu did not start: {last_error}")

    def qemu_argv(self, port: int = 0, *, loadvm: str | None = None) -> list[str]:
        """The QEMU command line this VM starts with (on `port`)."""
        record = self.record()
        return self._qemu_argv(record, image.cached_image(record.image_key), port, loadvm=loadvm)

    def _qemu_argv(
        self, record: VmRecord, base: image.BaseImage, port: int, *, loadvm: str | None = None
    ) -> list[str]:
        # panic=5: under TCG the guest kernel has been seen to panic in early boot
        # (sched_clock_tick); rebooting itself turns that flake into a slower boot.
        append = (
            "root=/dev/vda rw console=ttyS0 net.ifnames=0 panic=5 "
            f"systemd.machine_id={record.machine_id}"
        )
        return [
            "qemu-system-x86_64",
            "-name",
            f"dockyard-{record.name}",
            *accel.accelerator_args(base.kernel),
            "-m",
            str(record.memory_mb),
            "-smp",
            str(record.cpus),
            "-nodefaults",
            "-display",
            "none",
            "-kernel",
            str(base.kernel),
            "-initrd",
            str(base.initrd),
            "-append",
            append,
            "-drive",
            f"file={self.overlay},if=virtio,format=qcow2,discard=unmap",
            "-drive",
            f"file={self.seed_disk},if=virtio,format=raw,readonly=on",
            "-netdev",
            f"user,id=net0,hostfwd=tcp:{SSH_HOST}:{port}-:22",
            "-device",
            "virtio-net-pci,netdev=net0",
            "-object",
            "rng-random,id=rng0,filename=/dev/urandom",
            "-device",
            "virtio-rng-pci,rng=rng0",
            # A new generation id per QEMU process: the guest kernel reseeds its
            # RNG when a snapshot is loaded, so clones of one snapshot diverge.
            "-device",
            "vmgenid,guid=auto",
            "-chardev",
            f"file,id=console,path={self.console_log},append=on",
            "-serial",
            "chardev:console",
            "-qmp",
            f"unix:{self.qmp_socket},server=on,wait=off",
            "-daemonize",
            "-pidfile",
            str(self.pidfile),
            *(["-loadvm", loadvm] if loadvm is not None else []),
        ]

    def is_alive(self) -> bool:
        """True when the recorded pid is a running QEMU of this VM (not a reused pid)."""
        if not self.exists():
            return False
        pid = self.record().pid
        if pid <= 0:
            return False
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
        return b"qemu-system" in cmdline and str(self.overlay).encode() in cmdline

    def probe(self, command: str, *, user: str = ROOT_USER, timeout: float = PROBE_TIMEOUT) -> str:
        status, out = probe.run_probe(
            host=SSH_HOST,
            port=self.port,
            user=user,
            private_key=self.private_key,
            host_key=self.host_key,
            command=command,
            timeout=timeout,
        )
        if status != 0:
            raise VmError(f"probe {command!r} exited {status}")
        return out

    def boot_id(self) -> str:
        return self.probe("cat /proc/sys/kernel/random/boot_id").strip()

    def wait_for_ssh(
        self, *, previous_boot_id: str | None = None, deadline: float = BOOT_DEADLINE
    ) -> str:
        """Wait until sshd answers with the pinned key (from a new boot); return boot_id."""

        def attempt() -> str:
            if not self.is_alive():
                raise VmError(f"qemu exited while booting; console tail:\n{self.console_tail()}")
            boot_id = self.boot_id()
            if previous_boot_id is not None and boot_id == previous_boot_id:
                raise StaleBoot(boot_id)
            return boot_id

        retrying = Retrying(
            stop=stop_after_delay(deadline),
            wait=wait_fixed(2),
            retry=retry_if_exception_type((OSError, EOFError, paramiko.SSHException, StaleBoot)),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except (OSError, EOFError, paramiko.SSHException, StaleBoot) as exc:
            raise VmError(
                f"no SSH answer from {self.state_dir.name} within {deadline} s ({exc!r}); "
                f"console tail:\n{self.console_tail()}"
            ) from exc

    def reboot(self, *, deadline: float = BOOT_DEADLINE) -> str:
        """Reboot the guest cleanly; return the new boot_id once SSH is back."""
        before = self.boot_id()
        # The connection may drop as the guest goes down; the reboot is
        # detached so it does not race the probe's own channel.
        with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
            self.probe("systemd-run --no-block systemctl reboot")
        return self.wait_for_ssh(previous_boot_id=before, deadline=deadline)

    # --- memory snapshots (internal, in the qcow2 overlay) ---------------------
    def hmp(self, command_line: str, *, timeout: float = 5.0) -> str:
        """Run a human-monitor command through QMP; returns its text output."""
        return qmp.hmp_command(self.qmp_socket, command_line, timeout=timeout)

    def pause(self) -> None:
        """Stop the vCPUs (QMP `stop`): the guest changes nothing until it is resumed."""
        qmp.qmp_command(self.qmp_socket, "stop")

    def resume(self) -> None:
        qmp.qmp_command(self.qmp_socket, "cont")

    def snapshot_tags(self) -> list[str]:
        """Tags of the internal snapshots of the running VM's disks (`info snapshots`)."""
        return qmp.snapshot_tags(self.hmp("info snapshots"))

    def save_snapshot(self, tag: str, *, timeout: float = SAVEVM_TIMEOUT) -> None:
        """`savevm tag`: RAM, device state and disk, kept inside the qcow2 overlay.

        The read-only raw seed disk is not part of it (QEMU snapshots only the
        writable disks), so a clone may bring its own seed disk. The VM keeps
        the run state it had (a paused VM stays paused).
        """
        reply = self.hmp(f"savevm {tag}", timeout=timeout)
        if qmp.hmp_failed(reply):
            raise VmError(f"savevm {tag} on {self.state_dir.name} failed: {reply.strip()}")
        if tag not in self.snapshot_tags():
            raise VmError(f"savevm {tag} on {self.state_dir.name} left no snapshot: {reply!r}")

    def load_snapshot(self, tag: str, *, timeout: float = LOADVM_TIMEOUT) -> None:
        """`loadvm tag` in the running QEMU: the guest continues from the snapshot.

        Everything since the snapshot is gone, the guest's clock included (it
        continues from the snapshot's time): see `snapshot.adopt_identity`.
        A tag the disks do not hold is refused before the VM is touched (HMP's
        loadvm would leave it paused).
        """
        tags = self.snapshot_tags()
        if tag not in tags:
            raise VmError(f"no snapshot {tag!r} in {self.state_dir.name} (it has {tags})")
        reply = self.hmp(f"loadvm {tag}", timeout=timeout)
        if qmp.hmp_failed(reply):
            raise VmError(f"loadvm {tag} on {self.state_dir.name} failed: {reply.strip()}")

    def quit(self, *, timeout: float = 30.0) -> None:
        """End QEMU at once (QMP `quit`: no guest shutdown), else `stop()`. Idempotent."""
        if not self.is_alive():
            return
        pid = self.pid
        with contextlib.suppress(OSError, qmp.QmpError):
            qmp.qmp_command(self.qmp_socket, "quit")
        if not _wait_exit(pid, timeout):
            self.stop()

    def stop(self, *, timeout: float = 60.0) -> None:
        """ACPI power-down, wait, then kill by pid. Idempotent."""
        if not self.is_alive():
            return
        pid = self.pid
        with contextlib.suppress(OSError, qmp.QmpError):
            qmp.qmp_command(self.qmp_socket, "system_powerdown")
        if not _wait_exit(pid, timeout):
            for sig in (signal.SIGTERM, signal.SIGKILL):
                if not self.is_alive():  # re-check: never signal a reused pid
                    break
                _signal(pid, sig)
                if _wait_exit(pid, 10):
                    break
        if self.is_alive():
            raise VmError(f"qemu pid {pid} of {self.state_dir.name} did not exit")

    def destroy(self) -> None:
        """Stop the VM and remove its state directory (overlay, keys). Idempotent."""
        if self.state_dir.exists():
            self.stop()
            shutil.rmtree(self.state_dir)

    def console_tail(self, lines: int = 25) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.splitlines()[-lines:])


def vm_for(name: str) -> Vm:
    return Vm(vms_dir() / name)


def _quiet(_message: str) -> None:
    return None


def launch(
    spec: VmSpec, *, deadline: float = BOOT_DEADLINE, log: Callable[[str], None] = _quiet
) -> Vm:
    """Prepare (or reuse) the VM named `spec.name`, boot it and wait for SSH."""
    vm = vm_for(spec.name)
    log(f"image for {spec.suite} (built once and cached; the first build takes minutes)")
    vm.prepare(spec)
    log(f"booting QEMU ({spec.cpus} cpu, {spec.memory_mb} MB)")
    vm.start()
    log(f"waiting for SSH on 127.0.0.1:{vm.port} (up to {deadline:.0f} s under emulation)")
    boot_id = vm.wait_for_ssh(deadline=deadline)
    log(f"SSH answers with the pinned host key (boot {boot_id[:8]})")
    return vm


def _check_call(argv: list[str], step: str) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise VmError(f"{step} failed ({proc.returncode}): {proc.stderr.strip()}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((SSH_HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((SSH_HOST, port))
        except OSError:
            return False
        return True


def pid_running(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (an exited process not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _wait_exit(pid: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not pid_running(pid):
            return True
        time.sleep(0.5)
    return not pid_running(pid)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)
