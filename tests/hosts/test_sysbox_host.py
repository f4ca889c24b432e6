"""SysboxHost on the QEMU test host with the STAND-IN artifacts (artifactsMode upload).

Provider methods are called directly; the engine-level runs are tested elsewhere. Each VM
round trip costs seconds under TCG, so the lifecycle is one scenario on the shared test host
that ends with the host clean again (delete), plus two failure scenarios that also clean up.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.hostops import artifacts
from dockyard_resources.hostops import sysbox_host as ops
from dockyard_resources.providers.sysbox_host import SysboxHostProvider, diff_props
from dockyard_resources.render import sysbox_host as r
from dockyard_resources.render.common import HOST_LOCK
from dockyard_resources.transport import SshTarget, TransportError, session

pytestmark = pytest.mark.vm

FAKE_INSTANCE_UNIT = "/etc/systemd/system/dyfake_docker.service"
# Everything a SysboxHost may leave on a host; after delete none of it may exist.
HOST_PATHS = (
    r.LIB_ROOT,
    r.CACHE_DIR,
    r.DATA_DIR,
    r.LOG_DIR,
    r.UNIT_PATH,
    r.SYSCTL_PATH,
    r.SYSBOXFS_MOUNTPOINT,
)


def connection(target: SshTarget) -> dict[str, Any]:
    key = target.private_key
    if key is None and target.key_file:
        key = Path(target.key_file).read_text()
    return {
        "host": target.host,
        "port": float(target.port or 22),
        "user": "root",
        "privateKey": key,
    }


def props(target: SshTarget, standins: Any, **changes: Any) -> dict[str, Any]:
    inputs: dict[str, Any] = {
        "connection": connection(target),
        "hostName": "testhost",
        "docker": {
            "version": "29.2.1",
            "artifacts": {
                "x86_64": {"url": str(standins.docker.path), "sha256": standins.docker.sha256}
            },
        },
        "sysbox": {
            "version": "0.6.7",
            "artifacts": {
                "x86_64": {"url": str(standins.sysbox.path), "sha256": standins.sysbox.sha256}
            },
        },
        "artifactsMode": "upload",
        "allowSysboxRestart": False,
    }
    inputs.update(changes)
    return inputs


def sh(host: Any, script: str) -> str:
    result = host.run(script)
    assert result.exit_code == 0, result.stderr
    return str(result.stdout)


def host_report(host: Any) -> dict[str, str]:
    """One round trip: which Dockyard paths exist, the sysbox user and subid lines, the unit."""
    checks = " ".join(HOST_PATHS)
    out = sh(
        host,
        f"""
for p in {checks}; do if [ -e "$p" ]; then echo "path $p"; fi; done
if id -u sysbox >/dev/null 2>&1; then echo "user sysbox"; fi
echo "subuid $(grep -c '^sysbox:' /etc/subuid || true)"
echo "subgid $(grep -c '^sysbox:' /etc/subgid || true)"
echo "active $(systemctl is-active {r.SERVICE_NAME} || true)"
echo "enabled-units $(systemctl list-unit-files {r.SERVICE_NAME} --no-legend | wc -l)"
""",
    )
    report: dict[str, str] = {}
    for line in out.splitlines():
        key, _, value = line.partition(" ")
        report[f"{key} {value}" if key == "path" else key] = value
    return report


def clean_host(provider: SysboxHostProvider, outs: dict[str, Any], host: Any) -> None:
    sh(host, f"rm -f {FAKE_INSTANCE_UNIT}")
    provider.delete("id", outs)


def test_lifecycle(test_host: Any, standins: Any) -> None:
    provider = SysboxHostProvider()
    inputs = props(test_host.target, standins)

    # create: everything in place, the service verified and stopped again (no instance).
    created = provider.create(inputs)
    outs = created.outs
    assert outs is not None
    try:
        assert outs["dockerDir"] == "/usr/local/lib/dockyard/docker-29.2.1"
        assert outs["sysboxDir"] == "/usr/local/lib/dockyard/sysbox-0.6.7"
        assert outs["dockerSha256"] == standins.docker.sha256
        assert outs["sysboxSha256"] == standins.sysbox.sha256
        assert outs["arch"] == "x86_64"
        assert outs["hostKey"].startswith("ssh-")
        assert outs["connection"]["hostKey"] == outs["hostKey"]
        assert outs["hostKeyFingerprint"].startswith("SHA256:")
        assert outs["drift"] == []
        report = host_report(test_host)
        assert f"path {r.UNIT_PATH}" in report
        assert report["user"] == "sysbox"
        assert report["subuid"] == "1" and report["subgid"] == "1"
        assert report["active"] == "inactive"
        binaries = sh(test_host, f"ls {r.docker_dir('29.2.1')} {r.sysbox_dir('0.6.7')}")
        for binary in (*r.DOCKER_BINARIES, *r.SYSBOX_BINARIES):
            assert binary in binaries.split()

        # read right after create: no drift, same outputs.
        read = provider.read(created.id, outs)
        assert read.outs == outs

        # a second install with the same inputs uploads and changes nothing.
        again = ops.install(
            SshTarget.from_props(outs["connection"]), ops.HostRequest.from_props(inputs)
        )
        assert again.actions == []
        assert diff_props(outs, inputs) == ([], [])

        # tampering shows in read and update repairs it.
        sh(
            test_host,
            f"rm {r.docker_dir('29.2.1')}/dockerd && echo '# edited' >> {r.UNIT_PATH}",
        )
        drifted = provider.read(created.id, outs).outs
        assert drifted is not None
        assert "docker 29.2.1: binaries changed or missing" in drifted["drift"]
        assert any(r.UNIT_PATH in d for d in drifted["drift"])
        assert drifted["dockerSha256"] == ""
        changed, replaces = diff_props(drifted, inputs)
        assert "drift" in changed and replaces == []
        updated = provider.update(created.id, drifted, inputs).outs
        assert updated == outs
        assert provider.read(created.id, updated).outs == outs

        # delete while an instance unit exists keeps the shared parts.
        sh(test_host, f"printf '# dockyard-instance: dyfake_\\n' > {FAKE_INSTANCE_UNIT}")
        provider.delete(created.id, outs)
        report = host_report(test_host)
        assert f"path {r.UNIT_PATH}" in report and f"path {r.LIB_ROOT}" in report
        assert report["user"] == "sysbox"
    finally:
        clean_host(provider, outs, test_host)

    # delete without instances leaves nothing; a second delete is a no-op.
    report = host_report(test_host)
    assert [k for k in report if k.startswith("path ")] == []
    assert "user" not in report
    assert report["subuid"] == "0" and report["subgid"] == "0"
    assert report["enabled-units"] == "0"
    second = ops.remove(SshTarget.from_props(outs["connection"]))
    assert second.actions == [] and second.kept_for == []


def test_wrong_sha256_fails_clearly_and_installs_nothing(test_host: Any, standins: Any) -> None:
    inputs = props(test_host.target, standins)
    inputs["sysbox"]["artifacts"]["x86_64"]["sha256"] = "0" * 64
    with pytest.raises(artifacts.ArtifactError) as failed:
        SysboxHostProvider().create(inputs)
    message = str(failed.value)
    assert "sysbox artifact: sha256 mismatch" in message
    assert f"expected {'0' * 64}, got {standins.sysbox.sha256}" in message
    report = host_report(test_host)
    assert [k for k in report if k.startswith("path ")] == []
    assert "user" not in report
    uploads = sh(test_host, f"ls {r.UPLOAD_DIR} | grep -c dockyard-artifact || true")
    assert uploads.strip() == "0"


def test_create_killed_halfway_converges_on_rerun(test_host: Any, standins: Any) -> None:
    inputs = props(test_host.target, standins)
    target = SshTarget.from_props(inputs["connection"])
    killed = threading.Event()

    def kill_install() -> None:
        # Every process holding the host lock is the install script or one of its children.
        session(target).run(
            """for fd in /proc/[0-9]*/fd/9; do
  if [ "$(readlink "$fd" 2>/dev/null)" = """
            + HOST_LOCK
            + """ ]; then
    pid=${fd#/proc/}; kill -KILL "${pid%%/*}" 2>/dev/null || true
  fi
done""",
            step="kill the install",
        )
        killed.set()

    def on_action(action: str) -> None:
        if action.startswith("docker binaries installed") and not killed.is_set():
            threading.Thread(target=kill_install, daemon=True).start()

    provider = SysboxHostProvider()
    outs: dict[str, Any] = {}
    try:
        with pytest.raises(TransportError):
            ops.install(target, ops.HostRequest.from_props(inputs), on_action)
        assert killed.is_set()
        created = provider.create(inputs)
        assert created.outs is not None
        outs = created.outs
        assert outs["drift"] == []
        assert provider.read(created.id, outs).outs == outs
    finally:
        provider.delete("id", outs or inputs)
