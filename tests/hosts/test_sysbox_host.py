"""SysboxHost on the QEMU test host with the STAND-IN artifacts.

Provider methods are called directly; the engine-level runs are tested elsewhere. Each VM
round trip costs seconds under TCG, so every scenario runs on the shared session test host
and ends with the host clean again (delete in `finally`), which lets the next one start from
a bare host without booting another VM.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import shutil
import socket
import subprocess
import tarfile
import threading
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest

from dockyard_resources.hostops import artifacts
from dockyard_resources.hostops import sysbox_host as ops
from dockyard_resources.providers.sysbox_host import SysboxHostProvider, diff_props
from dockyard_resources.render import sysbox_host as r
from dockyard_resources.render.common import HOST_LOCK
from dockyard_resources.transport import CommandFailed, ConnectionLost, SshTarget, session
from tests.fixtures.vm import TestHost
from tests.hosts.checks import File, Service, SshShell, User
from tools.testbed.artifacts import TestbedArtifacts

pytestmark = pytest.mark.vm

DOCKER_VERSION = "29.2.1"
SYSBOX_VERSION = "0.6.7"
DOCKER_DIR = r.docker_dir(DOCKER_VERSION)
SYSBOX_DIR = r.sysbox_dir(SYSBOX_VERSION)
FAKE_INSTANCE_UNIT = f"{r.SYSTEMD_DIR}/dyfake_docker.service"
# QEMU user networking (slirp) forwards this guest address to the test machine's 127.0.0.1.
SLIRP_HOST = "10.0.2.2"
# Everything a SysboxHost may leave on a host; after delete none of it may exist.
HOST_PATHS = (
    r.LIB_ROOT,
    r.CACHE_DIR.rsplit("/", 1)[0],
    r.DATA_DIR,
    r.LOG_DIR,
    r.RUN_DIR,
    r.UNIT_PATH,
    r.SYSCTL_PATH,
    r.SYSBOXFS_MOUNTPOINT,
)
# What a no-op re-run must leave untouched: inode, size and mtime of every installed file.
# (The log and data dirs change on purpose: every run starts the service once to verify it.)
SNAPSHOT_SCRIPT = f"""
find {r.LIB_ROOT} {r.CACHE_DIR} -printf '%p %i %s %T@\\n' | sort
stat -c '%n %i %s %Y' {r.UNIT_PATH} {r.SYSCTL_PATH} /etc/passwd /etc/group /etc/subuid \\
  /etc/subgid
"""


# --- inputs --------------------------------------------------------------------------------


def connection(target: SshTarget) -> dict[str, Any]:
    key = target.private_key
    if key is None and target.key_file:
        key = Path(target.key_file).read_text()
    # No hostKey: the first create pins the key it sees (trust on first use), as in a stack.
    return {
        "host": target.host,
        "port": float(target.port or 22),
        "user": "root",
        "privateKey": key,
    }


def artifact_spec(version: str, url: str, sha256: str) -> dict[str, Any]:
    return {"version": version, "artifacts": {"x86_64": {"url": url, "sha256": sha256}}}


def props(
    target: SshTarget,
    testbed_artifacts: TestbedArtifacts,
    *,
    mode: str = "upload",
    docker_url: str | None = None,
    sysbox_url: str | None = None,
    docker_sha: str | None = None,
    sysbox_sha: str | None = None,
) -> dict[str, Any]:
    return {
        "connection": connection(target),
        "hostName": "testhost",
        "docker": artifact_spec(
            DOCKER_VERSION,
            docker_url or str(testbed_artifacts.docker.path),
            docker_sha or testbed_artifacts.docker.sha256,
        ),
        "sysbox": artifact_spec(
            SYSBOX_VERSION,
            sysbox_url or str(testbed_artifacts.sysbox.path),
            sysbox_sha or testbed_artifacts.sysbox.sha256,
        ),
        "artifactsMode": mode,
        "allowSysboxRestart": False,
        "owner": "tests/hosts/testhost-sysbox",
    }


# --- host state ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shell(test_host: TestHost) -> SshShell:
    return SshShell(test_host.target)


def host_leftovers(shell: SshShell) -> list[str]:
    """Every trace of a SysboxHost still on the host, in one round trip."""
    out = shell.out(
        f"""
for p in {" ".join(HOST_PATHS)}; do if [ -e "$p" ]; then echo "path $p"; fi; done
if getent passwd sysbox >/dev/null; then echo "user sysbox"; fi
grep -H '^sysbox:' /etc/subuid /etc/subgid || true
state=$(systemctl show -p LoadState --value {r.SERVICE_NAME})
if [ "$state" != not-found ]; then echo "unit {r.SERVICE_NAME} $state"; fi
"""
    )
    return [line for line in out.splitlines() if line]


def nothing_installed(shell: SshShell) -> list[str]:
    """Installed parts (not the artifact cache, which a failed run may have filled)."""
    return [line for line in host_leftovers(shell) if not line.startswith("path /var/cache/")]


def cached_artifacts(shell: SshShell) -> list[str]:
    return shell.out(f"ls {r.CACHE_DIR} 2>/dev/null || true").split()


# --- log capture ---------------------------------------------------------------------------


@dataclass
class Logs:
    """What the provider told the Pulumi engine (info lines, warnings)."""

    infos: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def said(self, text: str) -> bool:
        return any(text in line for line in self.infos)


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Logs:
    captured = Logs()
    monkeypatch.setattr(pulumi.log, "info", lambda msg, *_a, **_k: captured.infos.append(msg))
    monkeypatch.setattr(pulumi.log, "warn", lambda msg, *_a, **_k: captured.warnings.append(msg))
    return captured


# --- an HTTP server the VM downloads from --------------------------------------------------


@dataclass
class ArtifactServer:
    port: int = 0
    gets: Counter[str] = field(default_factory=Counter)
    user_agents: set[str] = field(default_factory=set)

    def url(self, path: str) -> str:
        return f"http://{SLIRP_HOST}:{self.port}{path}"


@contextmanager
def serve_files(files: Mapping[str, Path]) -> Iterator[ArtifactServer]:
    """Serve `files` (URL path -> local file) on 127.0.0.1 for the duration of the block,
    counting GETs per path."""
    record = ArtifactServer()
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        timeout = 120  # a stalled client cannot hold a handler thread forever

        def do_GET(self) -> None:
            with lock:
                record.gets[self.path] += 1
                record.user_agents.add(self.headers.get("User-Agent", ""))
            path = files.get(self.path)
            if path is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(path.stat().st_size))
            self.end_headers()
            with path.open("rb") as source:
                shutil.copyfileobj(source, self.wfile)

        def log_message(self, format: str, *args: Any) -> None:
            return None  # the counters are the record; keep pytest's output readable

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    thread.start()
    try:
        record.port = int(server.server_address[1])
        yield record
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- scenarios -----------------------------------------------------------------------------


def test_lifecycle(
    test_host: TestHost, shell: SshShell, testbed_artifacts: TestbedArtifacts, logs: Logs
) -> None:
    provider = SysboxHostProvider()
    inputs = props(test_host.target, testbed_artifacts)
    outs: dict[str, Any] = {}
    try:
        # create: everything in place, the service verified and stopped again (no instance).
        created = provider.create(inputs)
        assert created.outs is not None
        outs = created.outs
        assert outs["dockerDir"] == DOCKER_DIR
        assert outs["sysboxDir"] == SYSBOX_DIR
        assert outs["dockerVersion"] == DOCKER_VERSION
        assert outs["sysboxVersion"] == SYSBOX_VERSION
        assert outs["dockerSha256"] == testbed_artifacts.docker.sha256
        assert outs["sysboxSha256"] == testbed_artifacts.sysbox.sha256
        assert outs["arch"] == "x86_64"
        assert outs["distro"].startswith("Debian")
        assert outs["hostKey"].split()[:2] == test_host.host_key.split()[:2]
        assert outs["connection"]["hostKey"] == outs["hostKey"]
        assert outs["hostKeyFingerprint"].startswith("SHA256:")
        assert outs["drift"] == []
        assert logs.said("uploaded docker") and logs.said("uploaded sysbox")
        service = Service.of(shell, r.SERVICE_NAME)
        assert service.unit_file_exists and not service.active, service
        assert User.of(shell, "sysbox").exists
        assert shell.out("grep -c '^sysbox:' /etc/subuid /etc/subgid").split() == [
            "/etc/subuid:1",
            "/etc/subgid:1",
        ]
        installed = shell.out(f"ls {DOCKER_DIR} {SYSBOX_DIR}").split()
        for binary in (*r.DOCKER_BINARIES, *r.SYSBOX_BINARIES):
            assert binary in installed
        assert sorted(cached_artifacts(shell)) == sorted(
            [testbed_artifacts.docker.sha256, testbed_artifacts.sysbox.sha256]
        )
        assert shell.out(f"ls -A {r.UPLOAD_DIR} | wc -l") == "0"  # moved into the cache

        # read right after create: no drift, same outputs.
        read = provider.read(created.id, outs)
        assert read.outs == outs

        # a second run with the same inputs uploads and changes nothing.
        before = shell.out(SNAPSHOT_SCRIPT)
        assert diff_props(outs, inputs) == ([], [])
        logs.infos.clear()
        again = provider.update(created.id, outs, inputs)
        assert again.outs == outs
        assert "SysboxHost testhost: nothing to change" in logs.infos, logs.infos
        assert not logs.said("uploaded")
        assert shell.out(SNAPSHOT_SCRIPT) == before
        assert not Service.of(shell, r.SERVICE_NAME).active

        # tampering shows in read and update repairs it.
        shell.out(f"rm {DOCKER_DIR}/dockerd && echo '# edited' >> {r.UNIT_PATH}")
        drifted = provider.read(created.id, outs).outs
        assert drifted is not None
        assert f"docker {DOCKER_VERSION}: binaries changed or missing" in drifted["drift"]
        assert f"{r.UNIT_PATH}: content differs from what Dockyard writes" in drifted["drift"]
        assert len(drifted["drift"]) == 2, drifted["drift"]
        assert drifted["dockerSha256"] == "" and drifted["dockerVersion"] == ""
        changed, replaces = diff_props(drifted, inputs)
        assert "drift" in changed and replaces == []
        logs.infos.clear()
        updated = provider.update(created.id, drifted, inputs).outs
        assert updated == outs
        assert logs.said(f"docker binaries installed into {DOCKER_DIR}")
        assert logs.said(f"file {r.UNIT_PATH} written")
        assert not logs.said("uploaded")  # repaired from the host's cache
        assert File.of(shell, f"{DOCKER_DIR}/dockerd").mode == 0o755
        assert provider.read(created.id, updated).outs == outs

        # delete while an instance unit exists keeps the shared parts and says why.
        shell.out(f"printf '{r.INSTANCE_MARKER} dyfake_\\n' > {FAKE_INSTANCE_UNIT}")
        provider.delete(created.id, outs)
        assert any(FAKE_INSTANCE_UNIT in w for w in logs.warnings), logs.warnings
        assert Service.of(shell, r.SERVICE_NAME).unit_file_exists
        assert File.of(shell, f"{DOCKER_DIR}/dockerd").exists
        assert File.of(shell, f"{SYSBOX_DIR}/sysbox-fs").exists
        assert User.of(shell, "sysbox").exists
    finally:
        shell.out(f"rm -f {FAKE_INSTANCE_UNIT}")
        provider.delete("id", outs or inputs)

    # delete without instances leaves nothing; a second delete is a no-op.
    assert host_leftovers(shell) == []
    assert not User.of(shell, "sysbox").exists
    second = ops.remove(SshTarget.from_props(outs["connection"]))
    assert second.actions == [] and second.kept_for == []


def test_wrong_sha256_fails_clearly_and_installs_nothing(
    test_host: TestHost, shell: SshShell, testbed_artifacts: TestbedArtifacts
) -> None:
    wrong = "0" * 64
    inputs = props(test_host.target, testbed_artifacts, sysbox_sha=wrong)
    try:
        with pytest.raises(artifacts.ArtifactError) as failed:
            SysboxHostProvider().create(inputs)
        message = str(failed.value)
        assert "sysbox artifact: sha256 mismatch" in message
        assert f"expected {wrong}, got {testbed_artifacts.sysbox.sha256}" in message
        assert "nothing was installed" in message
        # Checked before anything is sent: not even the correct docker artifact went over.
        assert host_leftovers(shell) == []
    finally:
        SysboxHostProvider().delete("id", inputs)


def test_create_killed_halfway_converges_on_rerun(
    test_host: TestHost, shell: SshShell, testbed_artifacts: TestbedArtifacts, logs: Logs
) -> None:
    inputs = props(test_host.target, testbed_artifacts)
    target = SshTarget.from_props(inputs["connection"])
    ssh = session(target)  # the pooled session install() uses
    dropped: list[str] = []

    def drop_connection_after_docker(action: str) -> None:
        # Runs in the reader of the install's output: the connection dies mid-script, as
        # when the machine running Pulumi crashes or the network goes away.
        if action.startswith("docker binaries installed") and not dropped:
            dropped.append(action)
            ssh.drop_connection()

    provider = SysboxHostProvider()
    outs: dict[str, Any] = {}
    try:
        with pytest.raises(ConnectionLost):
            ops.install(target, ops.HostRequest.from_props(inputs), drop_connection_after_docker)
        assert dropped
        # The orphaned script dies at its next write to the dead connection; waiting for
        # the artifact lock (which it held then), then the host lock, waits for it.
        shell.out(f"flock -w 600 {r.ARTIFACT_LOCK} true && flock -w 600 {HOST_LOCK} true")
        assert File.of(shell, f"{DOCKER_DIR}/dockerd").exists
        assert not File.of(shell, r.UNIT_PATH).exists, "the first run was not cut short"

        created = provider.create(inputs)
        assert created.outs is not None
        outs = created.outs
        assert outs["drift"] == []
        assert not logs.said("uploaded")  # the artifacts made it into the cache
        assert not logs.said("docker binaries installed")  # finished work is kept
        assert logs.said(f"file {r.UNIT_PATH} written")
        assert provider.read(created.id, outs).outs == outs
        assert not Service.of(shell, r.SERVICE_NAME).active
    finally:
        provider.delete("id", outs or inputs)
    assert host_leftovers(shell) == []


def test_download_mode_fetches_on_the_host_verifies_and_caches(
    test_host: TestHost, shell: SshShell, testbed_artifacts: TestbedArtifacts, logs: Logs
) -> None:
    files = {
        "/docker.tgz": testbed_artifacts.docker.path,
        "/sysbox.deb": testbed_artifacts.sysbox.path,
        "/wrong-pin/sysbox.deb": testbed_artifacts.sysbox.path,
    }
    provider = SysboxHostProvider()
    outs: dict[str, Any] = {}
    with serve_files(files) as server:
        inputs = props(
            test_host.target,
            testbed_artifacts,
            mode="download",
            docker_url=server.url("/docker.tgz"),
            sysbox_url=server.url("/sysbox.deb"),
        )
        try:
            # A wrong pin: the host downloads the file, rejects it and installs nothing.
            wrong = "f" * 64
            bad_url = server.url("/wrong-pin/sysbox.deb")
            bad = {**inputs, "sysbox": artifact_spec(SYSBOX_VERSION, bad_url, wrong)}
            with pytest.raises(CommandFailed) as failed:
                provider.create(bad)
            message = str(failed.value)
            assert f"sysbox artifact: sha256 mismatch: expected {wrong}, got " in message
            assert testbed_artifacts.sysbox.sha256 in message and "nothing was installed" in message
            assert nothing_installed(shell) == []
            assert testbed_artifacts.sysbox.sha256 not in cached_artifacts(shell)

            created = provider.create(inputs)
            assert created.outs is not None
            outs = created.outs
            assert outs["drift"] == []
            assert outs["sysboxSha256"] == testbed_artifacts.sysbox.sha256
            # One GET per artifact, made by curl on the host; docker came from the cache
            # the failed run had filled.
            assert server.gets == {"/docker.tgz": 1, "/sysbox.deb": 1, "/wrong-pin/sysbox.deb": 1}
            assert all(agent.startswith("curl/") for agent in server.user_agents)
            assert logs.said(f"artifact sysbox: downloaded {server.url('/sysbox.deb')}")
            assert sorted(cached_artifacts(shell)) == sorted(
                [testbed_artifacts.docker.sha256, testbed_artifacts.sysbox.sha256]
            )

            # The same inputs again: nothing downloaded, nothing changed.
            logs.infos.clear()
            again = provider.update(created.id, outs, inputs)
            assert again.outs == outs
            assert "SysboxHost testhost: nothing to change" in logs.infos, logs.infos
            assert server.gets == {"/docker.tgz": 1, "/sysbox.deb": 1, "/wrong-pin/sysbox.deb": 1}
        finally:
            provider.delete("id", outs or inputs)
    assert host_leftovers(shell) == []


def test_download_from_unreachable_url_points_at_upload_mode(
    test_host: TestHost, shell: SshShell, testbed_artifacts: TestbedArtifacts
) -> None:
    base = f"http://{SLIRP_HOST}:{closed_port()}"
    inputs = props(
        test_host.target,
        testbed_artifacts,
        mode="download",
        docker_url=f"{base}/docker.tgz",
        sysbox_url=f"{base}/sysbox.deb",
    )
    provider = SysboxHostProvider()
    try:
        with pytest.raises(CommandFailed) as failed:
            provider.create(inputs)
        message = str(failed.value)
        assert f"docker artifact: the host could not download {base}/docker.tgz" in message
        assert "set 'artifacts: upload' for it" in message
        assert "use the testbed stack: make up STACK=testbed" in message
        assert nothing_installed(shell) == []
        assert cached_artifacts(shell) == []
    finally:
        provider.delete("id", inputs)
    assert host_leftovers(shell) == []


# What uid 65534 runs on the host: a local user without any privilege.
AS_NOBODY = "setpriv --reuid=65534 --regid=65534 --clear-groups --"


def genuine_binaries(testbed_artifacts: TestbedArtifacts) -> dict[str, str]:
    """sha256 of dockerd and sysbox-runc inside the artifacts on this machine."""
    with tarfile.open(testbed_artifacts.docker.path) as docker:
        member = docker.extractfile("docker/dockerd")
        assert member is not None
        dockerd = hashlib.sha256(member.read()).hexdigest()
    tar = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", str(testbed_artifacts.sysbox.path)],
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as sysbox:
        member = sysbox.extractfile("./usr/bin/sysbox-runc")
        assert member is not None
        runc = hashlib.sha256(member.read()).hexdigest()
    return {f"{DOCKER_DIR}/dockerd": dockerd, f"{SYSBOX_DIR}/sysbox-runc": runc}


def test_a_local_user_gets_no_bytes_into_an_upload_mode_install(
    test_host: TestHost, shell: SshShell, testbed_artifacts: TestbedArtifacts, logs: Logs
) -> None:
    """uid 65534 prepares everything it can: directories at the paths where uploads were once
    staged (/var/tmp), and a fake cache of its own holding a payload under each genuine
    sha256. The host is also left in a state that user could exploit (as after an admin's
    mistake): the staging directory is that user's, with a payload in it, and the cache is a
    link into the user's directory. The install must replace all of it and install only the
    verified bytes, owned by root in directories only root can enter."""
    docker_sha, sysbox_sha = testbed_artifacts.docker.sha256, testbed_artifacts.sysbox.sha256
    evil = "/var/tmp/dy-evil-cache"
    inputs = props(test_host.target, testbed_artifacts)
    provider = SysboxHostProvider()
    outs: dict[str, Any] = {}
    try:
        shell.out(
            f"""
{AS_NOBODY} mkdir /var/tmp/dockyard-artifact-{docker_sha} /var/tmp/dockyard-artifact-{sysbox_sha}
{AS_NOBODY} mkdir {evil}
{AS_NOBODY} sh -c 'echo evil > {evil}/{docker_sha}; echo evil > {evil}/{sysbox_sha}'
if {AS_NOBODY} mkdir {r.CACHE_ROOT} 2>/dev/null; then echo "uid 65534 wrote it" >&2; exit 1; fi
mkdir -p {r.UPLOAD_DIR}
chown 65534:65534 {r.UPLOAD_DIR}
chmod 0777 {r.UPLOAD_DIR}
{AS_NOBODY} sh -c 'echo evil > {r.upload_path(docker_sha)}'
ln -s {evil} {r.CACHE_DIR}
"""
        )
        created = provider.create(inputs)
        assert created.outs is not None
        outs = created.outs
        assert outs["drift"] == []
        assert logs.said("uploaded docker") and logs.said("uploaded sysbox")  # nothing "cached"
        assert logs.said(f"{r.UPLOAD_DIR} replaced: it was not a directory of root's alone")
        assert logs.said(f"{r.CACHE_DIR} replaced: it was not a directory of root's alone")
        dirs = shell.out(f"stat -c '%n %u %a %F' {r.CACHE_ROOT} {r.CACHE_DIR} {r.UPLOAD_DIR}")
        assert dirs.splitlines() == [
            f"{path} 0 700 directory" for path in (r.CACHE_ROOT, r.CACHE_DIR, r.UPLOAD_DIR)
        ]
        # Only verified bytes: each cached file is what its name says, the binaries are the
        # ones inside the artifacts on this machine.
        expected = {
            f"{r.CACHE_DIR}/{docker_sha}": docker_sha,
            f"{r.CACHE_DIR}/{sysbox_sha}": sysbox_sha,
            **genuine_binaries(testbed_artifacts),
        }
        found = shell.out(f"sha256sum {' '.join(expected)}").splitlines()
        assert {path: digest for digest, path in (line.split() for line in found)} == expected
        # Nothing of ours went into the user's directories.
        assert shell.out("find /var/tmp/dockyard-artifact-* -mindepth 1 | wc -l") == "0"
        assert shell.out(f"cat {evil}/*").split() == ["evil", "evil"]
    finally:
        provider.delete("id", outs or inputs)
        shell.out(f"rm -rf /var/tmp/dockyard-artifact-* {evil}")
    assert host_leftovers(shell) == []
