"""Pick QEMU's accelerator: KVM only when a quick probe shows it really runs guests.

On some machines /dev/kvm exists but a guest hangs in the BIOS (broken nested
virtualisation). The probe boots an empty machine and waits, with a hard
timeout, for SeaBIOS to reach its boot menu on the debug console.
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
PROBE_SECONDS = 8.0
_BIOS_DONE_MARKERS = ("Booting from", "No bootable device")


def accelerator_args() -> tuple[str, ...]:
    """QEMU arguments for the accelerator; `DOCKYARD_QEMU_ACCEL=kvm|tcg` overrides the probe."""
    forced = os.environ.get("DOCKYARD_QEMU_ACCEL", "").strip().lower()
    if forced == "kvm":
        return KVM_ARGS
    if forced == "tcg":
        return TCG_ARGS
    return KVM_ARGS if kvm_works() else TCG_ARGS


@functools.cache
def kvm_works() -> bool:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False
    with tempfile.TemporaryDirectory(prefix="dykvm-") as tmp:
        log = Path(tmp) / "bios.log"
        argv = [
            "qemu-system-x86_64",
            *KVM_ARGS,
            "-nodefaults",
            "-display",
            "none",
            "-m",
            "64",
            "-no-reboot",
            "-debugcon",
            f"file:{log}",
            "-global",
            "isa-debugcon.iobase=0x402",
        ]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + PROBE_SECONDS
            while time.monotonic() < deadline and proc.poll() is None:
                text = log.read_text(errors="replace") if log.exists() else ""
                if any(marker in text for marker in _BIOS_DONE_MARKERS):
                    return True
                time.sleep(0.2)
            return False
        finally:
            proc.kill()
            proc.wait()
