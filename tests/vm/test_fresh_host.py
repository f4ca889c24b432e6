"""Destructive checks on a VM of their own: stand-ins, clean stop. (Reboots are covered by
tests/vm/test_snapshot.py on a clone, and with the real binaries by the acceptance suite.)"""

from __future__ import annotations

import pytest

from dockyard_resources.transport import session
from dockyard_resources.vm import runner
from tests.fixtures.vm import TestHost, qemu_pids_using
from tools.standins.build import DOCKER_LAYOUT, Standins

pytestmark = pytest.mark.vm

STANDIN_DIR = "/opt/standin-test"


def test_standins_run_on_the_vm_then_it_stops_cleanly(
    fresh_host: TestHost, standins: Standins
) -> None:
    host = fresh_host
    ssh = session(host.target)
    ssh.upload(standins.docker.path, f"{STANDIN_DIR}/docker.tgz")
    ssh.upload(standins.sysbox.path, f"{STANDIN_DIR}/sysbox.deb")
    host.run(
        f"cd {STANDIN_DIR} && echo '{standins.docker.sha256}  docker.tgz' | sha256sum -c - && "
        f"echo '{standins.sysbox.sha256}  sysbox.deb' | sha256sum -c - && "
        "tar -xzf docker.tgz && dpkg-deb -x sysbox.deb sysbox"
    )
    listing = host.run(f"ls {STANDIN_DIR}/docker").stdout.split()
    assert sorted(listing) == sorted(DOCKER_LAYOUT)
    assert "Docker version" in host.run(f"{STANDIN_DIR}/docker/dockerd --version").stdout
    assert "runc version" in host.run(f"{STANDIN_DIR}/docker/runc --version").stdout

    bin_dir = f"{STANDIN_DIR}/sysbox/usr/bin"
    version = host.run(f"{bin_dir}/sysbox-runc --version").stdout
    assert "STAND-IN" in version and "0.6.7" in version
    # Anything but --version goes to runc: runc's own `list` header proves the exec.
    assert "STATUS" in host.run(f"{bin_dir}/sysbox-runc --root /run/standin-runc list").stdout

    # Type=notify: systemd-run returns only after the daemon sent READY=1.
    host.run(
        f"systemd-run --unit=standin-mgr --service-type=notify {bin_dir}/sysbox-mgr "
        "--log /var/log/standin-mgr.log --log-level debug --data-root /var/lib/sysbox && "
        f"systemd-run --unit=standin-fs --service-type=notify {bin_dir}/sysbox-fs "
        "--log /var/log/standin-fs.log --mountpoint /var/lib/sysboxfs"
    )
    sockets = ("sysmgr.sock", "sysfs.sock", "sysfs-seccomp.sock")
    for sock in sockets:
        assert host.run(f"test -S /run/sysbox/{sock}", check=False).exit_code == 0, sock
    mgr_pid = host.run("systemctl show -P MainPID standin-mgr").stdout.strip()
    assert host.run("cat /run/sysbox/sysmgr.pid").stdout.strip() == mgr_pid
    # The stand-in answers with one line; curl reads it as an HTTP/0.9 reply.
    answer = host.run("curl -s --http0.9 --unix-socket /run/sysbox/sysmgr.sock http://mgr/")
    assert "sysbox-mgr STAND-IN" in answer.stdout
    host.run("systemctl stop standin-mgr standin-fs")
    for sock in sockets:
        assert host.run(f"test -e /run/sysbox/{sock}", check=False).exit_code != 0, sock

    pid = host.vm.pid
    host.vm.stop()
    assert not host.vm.is_alive()
    assert not runner.pid_running(pid)
    assert qemu_pids_using(host.vm.overlay) == []
