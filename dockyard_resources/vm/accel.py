"""Pick QEMU's accelerator: KVM only when a quick probe shows it really runs guests.

On some machines /dev/kvm exists and even the BIOS runs, but the Linux kernel
stops with "KVM internal error ... emulation failure" (broken nested
virtualisation). The probe therefore boots the real kernel without a root
file system, with a hard timeout, and trusts KVM only when the kernel's boot
banner appears on the serial console.
"""

from __future__ import annotations

import functools
import os
import subprocess
import tempfile
import time
from pathlib import Path

KVM_ARGS = ("-accel", "kvm", "-cpu", "host")
TCG_ARGS = ("-accel", "tcg,thread=multi", "-cpu", "max")
PROBE_SECONDS = 15.0
_KERNEL_STARTED = "Linux version"
_KVM_BROKEN = "KVM internal error"


def accelerator_args(kernel: Path) -> tuple[str, ...]:
    """QEMU arguments for the accelerator; `DOCKYARD_QEMU_ACCEL=kvm|tcg` overrides the probe."""
    forced = os.environ.get("DOCKYARD_QEMU_ACCEL", "").strip().lower()
    if forced == "kvm":
        return KVM_ARGS
    if forced == "tcg":
        return TCG_ARGS
    return KVM_ARGS if kvm_works(kernel) else TCG_ARGS


@functools.cache
def kvm_works(kernel: Path) -> bool:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    with tempfile.TemporaryDirectory(prefix="dykvm-") as tmp:
        console = Path(tmp) / "console.log"
        errors = Path(tmp) / "stderr.log"
        argv = [
            "qemu-system-x86_64",
            *KVM_ARGS,
            "-nodefaults",
            "-display",
            "none",
            "-m",
            "256",
            "-no-reboot",
            "-kernel",
            str(kernel),
            "-append",
            "console=ttyS0 panic=-1",
            "-serial",
            f"file:{console}",
        ]
        with open(errors, "wb") as stderr:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + PROBE_SECONDS
            while time.monotonic() < deadline and proc.poll() is None:
                if _KVM_BROKEN in _read(errors):
                    return False
                if _KERNEL_STARTED in _read(console):
                    return True
                time.sleep(0.2)
            return _KERNEL_STARTED in _read(console)
        finally:
            proc.kill()
            proc.wait()


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
