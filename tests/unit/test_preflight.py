"""Preflight decisions on recorded host facts: every problem found, in plain words."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dockyard_resources.errors import HostOutputError
from dockyard_resources.hostops.preflight import (
    HostFacts,
    PreflightFailed,
    check,
    evaluate,
    kernel_release,
)
from dockyard_resources.render.sysbox_host import FACTS_PREFIX

# Recorded from the Debian trixie test VM.
TRIXIE_VM = {
    "distroId": "debian",
    "distroVersion": "13",
    "distroName": "Debian GNU/Linux 13 (trixie)",
    "kernel": "6.12.48+deb13-cloud-amd64",
    "arch": "x86_64",
    "pid1": "systemd",
    "freeMbUsrLocal": 2900,
    "freeMbVar": 2900,
    "shiftfs": False,
    "distroSysboxActive": [],
    "foreignSockets": [],
    "cloudInit": False,
    "aptDpkg": True,
    "cachedSha256": [],
}


def facts(**changes: object) -> HostFacts:
    return dataclasses.replace(HostFacts.from_json(TRIXIE_VM), **changes)  # type: ignore[arg-type]


def test_a_good_host_passes() -> None:
    assert evaluate(facts()) == []
    check("vm", facts())


def test_facts_are_parsed_from_the_script_output() -> None:
    output = f"noise\n{FACTS_PREFIX}{json.dumps(TRIXIE_VM)}\n"
    parsed = HostFacts.from_output(output)
    assert parsed.kernel == "6.12.48+deb13-cloud-amd64"
    assert parsed.apt_dpkg is True


def test_output_without_facts_is_an_error() -> None:
    with pytest.raises(HostOutputError, match="printed no 'preflight' fact"):
        HostFacts.from_output("bash: something broke\n")


@pytest.mark.parametrize(
    ("kernel", "release"),
    [("6.1.0-27-cloud-amd64", (6, 1)), ("5.4.0-150-generic", (5, 4)), ("weird", None)],
)
def test_kernel_release(kernel: str, release: tuple[int, int] | None) -> None:
    assert kernel_release(kernel) == release


def test_old_kernel_without_shiftfs_is_refused() -> None:
    [problem] = evaluate(facts(kernel="5.4.0-150-generic"))
    assert "older than 5.12" in problem and "shiftfs" in problem


def test_old_kernel_with_shiftfs_is_accepted() -> None:
    assert evaluate(facts(kernel="5.4.0-150-generic", shiftfs=True)) == []


def test_kernel_5_12_is_enough() -> None:
    assert evaluate(facts(kernel="5.12.0")) == []


def test_known_broken_ubuntu_kernel_is_refused() -> None:
    [problem] = evaluate(facts(kernel="6.17.0-14-generic"))
    assert "6.17.0-14-generic" in problem and "sysbox-runc" in problem
    # The same series in a fixed build is fine.
    assert evaluate(facts(kernel="6.17.0-20-generic")) == []


def test_wrong_arch_is_refused() -> None:
    [problem] = evaluate(facts(arch="riscv64"))
    assert "riscv64" in problem and "x86_64" in problem


def test_aarch64_is_supported() -> None:
    assert evaluate(facts(arch="aarch64")) == []


def test_no_systemd_is_refused() -> None:
    [problem] = evaluate(facts(pid1="init"))
    assert "PID 1 is init, not systemd" in problem


def test_low_disk_is_refused() -> None:
    problems = evaluate(facts(free_mb_var=100, free_mb_usr_local=10))
    assert any("100 MB free on /var" in p for p in problems)
    assert any("10 MB free on /usr/local" in p for p in problems)


def test_distro_sysbox_running_is_a_conflict() -> None:
    [problem] = evaluate(facts(distro_sysbox_active=("sysbox.service", "sysbox-fs.service")))
    assert "sysbox.service, sysbox-fs.service" in problem
    assert "systemctl disable --now sysbox" in problem


def test_foreign_socket_listener_is_a_conflict() -> None:
    [problem] = evaluate(facts(foreign_sockets=("/run/sysbox/sysfs.sock",)))
    assert "/run/sysbox/sysfs.sock" in problem


def test_without_apt_the_distro_is_refused() -> None:
    [problem] = evaluate(facts(apt_dpkg=False, distro_name="Fedora Linux 41"))
    assert "Fedora Linux 41" in problem and "apt" in problem


def test_all_problems_are_reported_together() -> None:
    bad = facts(
        kernel="5.4.0-150-generic",
        arch="riscv64",
        pid1="init",
        distro_sysbox_active=("sysbox.service",),
        free_mb_var=5,
    )
    with pytest.raises(PreflightFailed) as failed:
        check("old-box", bad)
    assert len(failed.value.problems) == 5
    message = str(failed.value)
    assert message.startswith("host old-box is not ready for Dockyard:")
    for fragment in ("older than 5.12", "riscv64", "PID 1 is init", "sysbox.service", "/var"):
        assert fragment in message
