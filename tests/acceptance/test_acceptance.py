"""Acceptance of a deployed Dockyard stack: every check of the original tool's suite.

Runs in file order against the host with the most instances; its first three instances play
the original suite's A, B and C: created in parallel, services, `docker run`, outbound
traffic and DNS, Docker-in-Docker without `--privileged`, isolation, stop/start, socket
mode, destroy under load, a second destroy, the others staying healthy, reboot, and the full
destroy. Destroys go through `pulumi destroy --target` (docs/ci.md has the table).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import itertools
import json
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.operate.deployed import DeployedStack, Host, Instance, StackError
from dockyard_resources.providers.instance import DockyardInstanceProvider
from dockyard_resources.render.layout import SYSBOX_SERVICE
from dockyard_resources.transport import SshTarget, close_all, session
from tests.acceptance.stack import destroy_targets, shell_of
from tests.hosts import docker_clients
from tests.hosts.checks import Group, IptablesRules, Service, Socket, SshShell, dockyard_traces
from tools.testimage import busybox_image, dind_image

SYSBOX_UNIT = SYSBOX_SERVICE
SYSBOX_DATA_ROOT = "/var/lib/dockyard-sysbox"
PULLED_DIND = "docker:26.1-dind"
PULLED_BUSYBOX = "busybox:1.36"
IMAGE_TAR_ON_HOST = "/var/tmp/dockyard-acceptance-busybox.tar"
DIND_TAR_ON_HOST = "/var/tmp/dockyard-acceptance-dind.tar"
INNER_IMAGE = "dockyard-inner/busybox:1"
# A container's address (Docker 29 dropped the top-level .NetworkSettings.IPAddress).
ADDRESS_FORMAT = "'{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}'"
OUTSIDER = "dyaccept_none"
MEMBER = "dyaccept_a"
# QEMU user networking maps this machine's 127.0.0.1 to 10.0.2.2 inside a local VM.
SLIRP_HOST = "10.0.2.2"
_names = itertools.count(1)


def wait_until(condition: Callable[[], bool], what: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for: {what}")
        time.sleep(2)


def unique(name: str) -> str:
    return f"acc-{name}-{next(_names)}"


# --- roles and images ----------------------------------------------------------------------


@dataclass(frozen=True)
class Roles:
    a: Instance
    b: Instance
    c: Instance


@pytest.fixture(scope="module")
def roles(host: Host) -> Roles:
    if len(host.instances) < 3:
        pytest.skip(
            f"host {host.name} has {len(host.instances)} instance(s); the suite's A, B and C"
            " need a host with at least 3 (add instances to the stack file)"
        )
    a, b, c = host.instances[:3]
    return Roles(a, b, c)


@pytest.fixture(scope="module")
def sh(host: Host) -> SshShell:
    return shell_of(host)


@pytest.fixture(scope="module")
def real_sysbox(host: Host, sh: SshShell) -> bool:
    """False when the host runs the STAND-IN sysbox (no isolation at all)."""
    # Asked of the first instance still there: with --destructive-only the first use may
    # come after a check destroyed A.
    for inst in host.instances:
        runc = shlex.quote(inst.root + "/bin/sysbox-runc")
        if sh.ok(f"test -e {runc}"):
            return "STAND-IN" not in sh.out(f"{runc} --version")
    raise AssertionError(f"no instance on {host.name} has a sysbox-runc any more")


@pytest.fixture(scope="module")
def image(host: Host, sh: SshShell) -> str:
    """A small image in every instance: built from the host's static busybox, else pulled."""
    # `ldd` fails on a static binary: only a static busybox makes a one-file image.
    if sh.ok("test -x /bin/busybox && ! ldd /bin/busybox >/dev/null 2>&1"):
        busybox = sh.out("base64 -w0 /bin/busybox")
        archive = busybox_image.image_archive(base64.b64decode(busybox))
        session(host.target).upload(archive, IMAGE_TAR_ON_HOST, 0o644)
        for inst in host.instances:
            sh.out(inst.docker(f"load -i {IMAGE_TAR_ON_HOST}"))
        return busybox_image.DEFAULT_TAG
    for inst in host.instances:
        sh.out(inst.docker(f"pull -q {PULLED_BUSYBOX}"))
    return PULLED_BUSYBOX


@dataclass(frozen=True)
class Dind:
    """How to run a Docker-in-Docker container and get an image into its inner daemon."""

    image: str
    run_args: str
    local: bool
    tar_on_host: str = ""

    def load_into(self, sh: SshShell, inst: Instance) -> None:
        if self.local:
            command = dind_image.import_command(inst.root + "/bin/docker", self.tar_on_host)
            sh.out(command)
        else:
            sh.out(inst.docker(f"pull -q {shlex.quote(self.image)}"))

    def ensure_in(self, sh: SshShell, inst: Instance) -> None:
        """`load_into` unless the instance has the image already (an earlier check loaded
        it; with --destructive-only that check ran in an earlier run, maybe on another
        instance)."""
        if not sh.ok(inst.docker(f"image inspect {shlex.quote(self.image)} >/dev/null 2>&1")):
            self.load_into(sh, inst)

    def inner_image_script(self, inst: Instance, name: str) -> str:
        """Makes INNER_IMAGE inside the DinD container `name`."""
        if self.local:
            # The local image carries a static busybox: one file is an inner image.
            inner = (
                "tar -C / -c bin/busybox | docker import"
                f" -c 'ENTRYPOINT [\"/bin/busybox\"]' - {INNER_IMAGE} >/dev/null"
            )
        else:
            inner = f"docker pull -q {PULLED_BUSYBOX} && docker tag {PULLED_BUSYBOX} {INNER_IMAGE}"
        return inst.docker(f"exec {name} sh -c {shlex.quote(inner)}")


@pytest.fixture(scope="module")
def dind(pytestconfig: pytest.Config, host: Host, sh: SshShell, real_sysbox: bool) -> Dind:
    if not real_sysbox:
        pytest.skip(
            "STAND-IN sysbox on this host: Docker-in-Docker without --privileged was NOT"
            " proven (the stand-in has no isolation; run with real sysbox artifacts)"
        )
    choice = str(pytestconfig.getoption("--dind-image"))
    if choice == "auto":
        choice = "local" if host.provision == "qemu" else PULLED_DIND
    if choice != "local":
        # docker:*-dind would start TLS without this; the inner CLI then needs certs.
        return Dind(choice, "-e DOCKER_TLS_CERTDIR=", local=False)
    built = dind_image.build_dind_image()
    # A run against the same stack before (--skip-destructive, then --destructive-only) may
    # have left the very same file there: the upload is 260 MB.
    with built.path.open("rb") as tar:
        local = hashlib.file_digest(tar, "sha256").hexdigest()
    code, there = sh.run(f"sha256sum {DIND_TAR_ON_HOST} 2>/dev/null")
    if code != 0 or there.split()[:1] != [local]:
        session(host.target).upload(built.path, DIND_TAR_ON_HOST, 0o644)
    return Dind(built.tag, "", local=True, tar_on_host=DIND_TAR_ON_HOST)


# --- outbound traffic ----------------------------------------------------------------------


class _Token(http.server.BaseHTTPRequestHandler):
    token = b""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.token)))
        self.end_headers()
        self.wfile.write(self.token)

    def log_message(self, *_args: Any) -> None:
        return None


@dataclass(frozen=True)
class Outbound:
    url: str
    expect: str  # text the fetched page contains


@pytest.fixture(scope="module")
def outbound(pytestconfig: pytest.Config, host: Host) -> Iterator[Outbound]:
    """A URL containers fetch: a server on this machine for local VMs, else --outbound-url."""
    if host.provision != "qemu":
        yield Outbound(str(pytestconfig.getoption("--outbound-url")), "")
        return
    _Token.token = f"dockyard-{time.monotonic_ns()}".encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Token)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Outbound(f"http://{SLIRP_HOST}:{server.server_address[1]}/", _Token.token.decode())
    finally:
        server.shutdown()
        server.server_close()


def fetch_ok(out: str, outbound: Outbound) -> bool:
    return outbound.expect in out if outbound.expect else bool(out.strip())


# --- DinD helpers --------------------------------------------------------------------------


def start_dind(sh: SshShell, inst: Instance, dind: Dind, name: str, extra: str = "") -> None:
    """A FRESH DinD container whose inner daemon must come up on this very first start."""
    sh.out(inst.docker(f"run -d --name {name} {extra} {dind.run_args} {shlex.quote(dind.image)}"))
    wait_inner_daemon(sh, inst, name)


def wait_inner_daemon(sh: SshShell, inst: Instance, name: str, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while True:
        code, _ = sh.run(inst.docker(f"exec {name} docker info --format '{{{{.ID}}}}'"))
        if code == 0:
            return
        state = sh.out(inst.docker(f"inspect -f '{{{{.State.Status}}}}' {name}"))
        if state != "running" or time.monotonic() > deadline:
            logs = sh.run(inst.docker(f"logs --tail 30 {name} 2>&1"))[1]
            raise AssertionError(
                f"inner dockerd of {name} on {inst.prefix} is not up (container {state});"
                f" its log:\n{logs}"
            )
        time.sleep(3)


def mapped_root(sh: SshShell, inst: Instance, name: str) -> tuple[int, int]:
    pid = sh.out(inst.docker(f"inspect -f '{{{{.State.Pid}}}}' {name}"))
    uid = sh.out(f"awk '$1 == 0 {{print $2}}' /proc/{pid}/uid_map")
    gid = sh.out(f"awk '$1 == 0 {{print $2}}' /proc/{pid}/gid_map")
    return int(uid), int(gid)


def check_dind(sh: SshShell, inst: Instance, dind: Dind, name: str, outbound: Outbound) -> None:
    """Inner container, inner networking, and the inner daemon's data owned correctly."""
    assert sh.out(inst.docker(f"inspect -f '{{{{.HostConfig.Privileged}}}}' {name}")) == "false"
    runtime = sh.out(inst.docker(f"inspect -f '{{{{.HostConfig.Runtime}}}}' {name}"))
    assert runtime == "sysbox-runc", runtime
    uid, gid = mapped_root(sh, inst, name)
    assert uid >= 65536 and gid >= 65536, f"container root is host uid {uid}, not a mapped uid"
    # The inner /var/lib/docker is sysbox-mgr's per-container directory, owned by the
    # container's own root as seen from inside. On the host it is either 0:0 and mounted
    # ID-mapped (kernels with ID-mapped mounts), or owned by the mapped uid (shiftfs/chown).
    assert sh.out(inst.docker(f"exec {name} stat -c %u:%g /var/lib/docker")) == "0:0"
    full_id = sh.out(inst.docker(f"inspect -f '{{{{.Id}}}}' {name}"))
    backing = sh.out(f"stat -c %u:%g {SYSBOX_DATA_ROOT}/docker/{full_id}")
    options = sh.out(inst.docker(f"exec {name} findmnt -no OPTIONS /var/lib/docker"))
    if "idmapped" in options.split(","):
        assert backing == "0:0", (backing, options)
    else:
        assert backing == f"{uid}:{gid}", (backing, options)
    sh.out(dind.inner_image_script(inst, name))
    hello = sh.out(inst.docker(f"exec {name} docker run --rm {INNER_IMAGE} echo inner-hello"))
    assert hello.splitlines()[-1] == "inner-hello"
    fetched = sh.out(
        inst.docker(
            f"exec {name} docker run --rm {INNER_IMAGE} wget -qO- {shlex.quote(outbound.url)}"
        )
    )
    assert fetch_ok(fetched, outbound), fetched


# --- created in parallel, everything active -----------------------------------------


def _start_window(sh: SshShell, inst: Instance) -> tuple[int, int]:
    out = sh.out(
        f"systemctl show -P InactiveExitTimestampMonotonic {shlex.quote(inst.service_name)};"
        f" systemctl show -P ActiveEnterTimestampMonotonic {shlex.quote(inst.service_name)}"
    )
    began, active = (int(x) for x in out.split())
    return began, active


def test_instances_started_in_parallel(sh: SshShell, roles: Roles) -> None:
    """Pulumi created A, B and C together: some of their units' start windows overlap.

    Their install steps take the host lock in turn (each one longer on a slow VM), so the
    three windows need not all overlap; sequential creation would leave every window
    disjoint from every other.
    """
    windows = sorted(_start_window(sh, inst) for inst in (roles.a, roles.b, roles.c))
    assert all(began > 0 and active >= began for began, active in windows), windows
    overlapping = [(w, v) for i, w in enumerate(windows) for v in windows[i + 1 :] if v[0] < w[1]]
    assert overlapping, f"no two start windows overlap, as if created one by one: {windows}"


def test_sysbox_service_and_every_instance_active(host: Host, sh: SshShell) -> None:
    assert Service.of(sh, SYSBOX_UNIT).active
    for inst in host.instances:
        service = Service.of(sh, inst.service_name)
        assert service.active and service.enabled, service
        info = sh.out(inst.docker("info --format '{{.DefaultRuntime}} {{.ServerVersion}}'"))
        assert info == f"sysbox-runc {host.docker_version}", info


def test_socket_is_root_and_instance_group_0660(host: Host, sh: SshShell) -> None:
    for inst in host.instances:
        sock = Socket.of(sh, inst.socket_path)
        assert sock.exists, inst.socket_path
        assert (sock.owner, sock.group, sock.mode) == ("root", inst.group, 0o660)


# --- containers, outbound traffic, DNS ----------------------------------------------


def test_docker_run_on_each_instance(
    host: Host, sh: SshShell, image: str, real_sysbox: bool
) -> None:
    for inst in host.instances:
        out = sh.out(inst.docker(f"run --rm {image} cat /proc/self/uid_map"))
        first = out.split()
        assert first[0] == "0", out
        if real_sysbox:
            # sysbox maps the container's root to an unprivileged uid range on the host.
            assert int(first[1]) >= 65536, out


def test_container_reaches_outside(
    roles: Roles, sh: SshShell, image: str, outbound: Outbound
) -> None:
    out = sh.out(roles.a.docker(f"run --rm {image} wget -qO- {shlex.quote(outbound.url)}"))
    assert fetch_ok(out, outbound), out


def test_container_resolves_names(
    pytestconfig: pytest.Config, roles: Roles, sh: SshShell, image: str
) -> None:
    name = str(pytestconfig.getoption("--dns-name"))
    out = sh.out(roles.b.docker(f"run --rm {image} nslookup {shlex.quote(name)}"))
    answer = out.split(f"Name:\t{name}", 1)
    assert len(answer) == 2, out
    assert re.search(r"Address( \d+)?:\s*\d+\.\d+\.\d+\.\d+", answer[1]), out


# --- Docker-in-Docker without --privileged ------------------------------------------


def test_docker_in_docker_without_privileged(
    roles: Roles, sh: SshShell, dind: Dind, outbound: Outbound
) -> None:
    dind.load_into(sh, roles.b)
    name = unique("dind")
    start_dind(sh, roles.b, dind, name)
    check_dind(sh, roles.b, dind, name, outbound)
    sh.out(roles.b.docker(f"rm -f {name}"))


# --- isolation by daemon and group -----------------------------------------------------


def test_daemons_and_groups_are_isolated(
    host: Host, roles: Roles, sh: SshShell, image: str
) -> None:
    a, b = roles.a, roles.b
    name = unique("keeper")
    sh.out(a.docker(f"run -d --name {name} --restart always {image} sleep 100000"))
    assert name in sh.out(a.docker("ps --format '{{.Names}}'")).split()
    assert name not in sh.out(b.docker("ps -a --format '{{.Names}}'")).split()
    sh.out(
        f"for u in {MEMBER} {OUTSIDER}; do id -u $u >/dev/null 2>&1 || useradd -M $u; done;"
        f" gpasswd -a {MEMBER} {shlex.quote(a.group)} >/dev/null"
    )
    try:
        cli = f"{a.root}/bin/docker"
        assert sh.ok(f"runuser -u {MEMBER} -- {cli} ps -q")
        other = f"{host.instances[1].root}/bin/docker"
        assert not sh.ok(f"runuser -u {MEMBER} -- {other} ps -q"), "A's member reached B"
        for inst in host.instances:
            assert not sh.ok(f"runuser -u {OUTSIDER} -- {inst.root}/bin/docker ps -q")
    finally:
        sh.out(
            f"gpasswd -d {MEMBER} {shlex.quote(a.group)} >/dev/null 2>&1 || true;"
            f" userdel {MEMBER} 2>/dev/null || true; userdel {OUTSIDER} 2>/dev/null || true"
        )
    assert MEMBER not in Group.of(sh, a.group).members


def _fetch(sh: SshShell, inst: Instance, image: str, url: str) -> tuple[int, str]:
    """(exit code, page body without its trailing newline) of a wget from a fresh container."""
    code, out = sh.run(inst.docker(f"run --rm {image} wget -T 5 -qO- {shlex.quote(url)} 2>&1"))
    return code, out.strip()


def test_instances_cannot_reach_each_others_containers(
    roles: Roles, sh: SshShell, image: str
) -> None:
    a, b = roles.a, roles.b
    server = unique("web")
    page = (
        f"busybox mkdir -p /www && echo token-{server} >/www/index.html"
        " && exec busybox httpd -f -p 8080 -h /www"
    )
    sh.out(b.docker(f"run -d --name {server} {image} sh -c {shlex.quote(page)}"))
    address = sh.out(b.docker(f"inspect -f {ADDRESS_FORMAT} {server}"))
    url = f"http://{address}:8080/"
    last: list[tuple[int, str]] = []

    def answers_its_own_instance() -> bool:
        last[:] = [_fetch(sh, b, image, url)]
        return last[0] == (0, f"token-{server}")

    try:
        try:
            wait_until(
                answers_its_own_instance,
                f"{server} answering its own instance {b.prefix} (positive control)",
                seconds=120,
            )
        except AssertionError as exc:
            logs = sh.run(b.docker(f"logs --tail 20 {server} 2>&1; ps -a 2>&1"))[1]
            raise AssertionError(f"{exc}; last fetch {last}; server: {logs}") from None
        code, out = _fetch(sh, a, image, url)
        assert code != 0 and "token" not in out, f"{a.prefix} reached {b.prefix}'s container"
    finally:
        sh.out(b.docker(f"rm -f {server}"))


# --- day-2 commands: status, tunnel, logs, parking an instance -------------------------


def dockyard(
    deployed: DeployedStack, *args: str, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`python -m dockyard_resources ARGS --stack <this stack>` as a user runs it."""
    argv = [
        sys.executable, "-m", "dockyard_resources", *args,
        "--stack", deployed.name, "--project-dir", str(deployed.project_dir),
    ]  # fmt: skip
    return subprocess.run(
        argv, env=deployed.env, capture_output=True, text=True, timeout=timeout, check=False
    )


def test_status_shows_every_host_and_instance(deployed: DeployedStack, host: Host) -> None:
    shown = dockyard(deployed, "status", "--json")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    (seen,) = [h for h in json.loads(shown.stdout) if h["name"] == host.name]
    assert seen["reachable"] and seen["sysbox_service"] == "active"
    assert seen["sysbox_version"].startswith(host.sysbox_version), seen
    assert [i["prefix"] for i in seen["instances"]] == [i.prefix for i in host.instances]
    for inst in seen["instances"]:
        assert inst["active"] == "active" and inst["hints"] == [], inst
        assert inst["docker_version"] == host.docker_version
    table = dockyard(deployed, "status")
    assert all(i.prefix in table.stdout for i in host.instances), table.stdout


def test_tunnel_reaches_an_instances_docker_from_this_machine(
    deployed: DeployedStack, host: Host, roles: Roles, image: str, tmp_path: Path
) -> None:
    """The command as a user runs it, then what docker-py users do through it: the
    sequences that used to end in ConnectionResetError, and 8 runs at once."""
    sock = tmp_path / "dy.sock"
    argv = [
        sys.executable, "-m", "dockyard_resources", "tunnel", f"{host.name}/{roles.b.prefix}",
        "--socket", str(sock), "--stack", deployed.name,
        "--project-dir", str(deployed.project_dir),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, env=deployed.env, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().strip()
        assert first == f"export DOCKER_HOST=unix://{sock}", first
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert server_version_through(sock) == host.docker_version
        client = docker_clients.docker_py(sock)
        docker_clients.issue_sequences(client, image)
        docker_clients.parallel_runs(client, image, count=8, at_once=8)
        assert server_version_through(sock) == host.docker_version
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert not sock.exists(), "Ctrl-C closes the tunnel and removes its socket"


def server_version_through(sock: Path) -> str:
    """`docker version` against the socket (the API directly when no docker CLI is here)."""
    docker = shutil.which("docker")
    if docker:
        return subprocess.run(
            [docker, "-H", f"unix://{sock}", "version", "--format", "{{.Server.Version}}"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip()  # fmt: skip
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(60)
        client.connect(str(sock))
        client.sendall(b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n")
        reply = b"".join(iter(lambda: client.recv(65536), b""))
    return str(json.loads(reply.split(b"\r\n\r\n", 1)[1])["Version"])


def test_logs_show_the_journal_and_the_daemons(
    deployed: DeployedStack, host: Host, roles: Roles
) -> None:
    shown = dockyard(deployed, "logs", f"{host.name}/{roles.b.prefix}", "--lines", "200")
    assert shown.returncode == 0, shown.stderr
    assert f"==> journal of {roles.b.service_name}" in shown.stdout
    assert "API listen on" in shown.stdout, shown.stdout[-3000:]  # dockerd.log
    missing = dockyard(deployed, "logs", f"{host.name}/nope_")
    assert missing.returncode == 1 and "has no instance 'nope_'" in missing.stderr


def _instance_path(deployed: DeployedStack, host: Host, inst: Instance) -> str:
    hosts = json.loads(deployed.pulumi("config", "get", "dockyard:hosts", "--json").stdout)
    value = json.loads(hosts["value"]) if isinstance(hosts, dict) else hosts
    i = next(n for n, h in enumerate(value) if h["name"] == host.name)
    j = next(n for n, x in enumerate(value[i]["instances"]) if x["prefix"] == inst.prefix)
    return f"dockyard:hosts[{i}].instances[{j}].enabled"


def test_parking_an_instance_keeps_its_data_and_brings_it_back(
    destructive: None, deployed: DeployedStack, host: Host, roles: Roles, sh: SshShell, image: str
) -> None:
    c = roles.c
    name = unique("parked")
    sh.out(
        c.docker(
            f"run -d --name {name} --restart always -v accdata:/data {image}"
            " sh -c 'echo kept > /data/f && exec sleep 100000'"
        )
    )
    key = _instance_path(deployed, host, c)
    deployed.pulumi("config", "set", "--path", key, "false")
    try:
        preview = json.loads(deployed.pulumi("preview", "--json").stdout)
        assert preview["changeSummary"].get("update") == 1, preview["changeSummary"]
        assert [x["urn"] for x in preview["steps"] if x["op"] == "update"] == [c.urn]
        deployed.pulumi("up", "--yes", "--skip-preview")
        parked = Service.of(sh, c.service_name)
        assert parked.unit_file_exists and not parked.active and not parked.enabled, parked
        assert Group.of(sh, c.group).exists and sh.ok(f"test -d {c.root}/lib/docker/volumes")
        assert IptablesRules.of(sh).tagged(c.tag) == []
    finally:
        deployed.pulumi("config", "set", "--path", key, "true")
        deployed.pulumi("up", "--yes", "--skip-preview")
    assert Service.of(sh, c.service_name).active
    wait_until(
        lambda: name in sh.out(c.docker("ps --format '{{.Names}}'")).split(),
        f"{name} (--restart always) running again after enabled: true",
    )
    assert sh.out(c.docker(f"run --rm -v accdata:/data {image} cat /data/f")) == "kept"
    deployed.pulumi("config", "rm", "--path", key)


def _config_path(deployed: DeployedStack, host: Host, inst: Instance, key: str) -> str:
    return _instance_path(deployed, host, inst).removesuffix(".enabled") + f".{key}"


def test_a_change_that_would_delete_an_instances_data_is_refused_at_preview(
    deployed: DeployedStack, host: Host, roles: Roles, sh: SshShell
) -> None:
    """A new root replaces the instance (delete first): refused at preview, naming the
    instance and the opt-in; with `allowDataLoss: true` the preview shows the replace. Nothing
    runs: the instance is untouched and the config is put back."""
    c = roles.c
    root_key = _config_path(deployed, host, c, "root")
    allow_key = _config_path(deployed, host, c, "allowDataLoss")
    deployed.pulumi("config", "set", "--path", root_key, c.root + "-moved")
    try:
        with pytest.raises(StackError) as refused:
            deployed.pulumi("preview")
        message = str(refused.value)
        assert f"instance {c.prefix} on host {host.name}" in message, message[-2000:]
        assert f"deletes its data root {c.root}" in message and "allowDataLoss: true" in message
        deployed.pulumi("config", "set", "--path", allow_key, "true")
        preview = json.loads(deployed.pulumi("preview", "--json").stdout)
        replaced = [x["urn"] for x in preview["steps"] if x["op"] in ("replace", "delete-replaced")]
        assert c.urn in replaced, preview["changeSummary"]
    finally:
        deployed.pulumi("config", "set", "--path", root_key, c.root)
        deployed.pulumi("config", "rm", "--path", allow_key)
    assert Service.of(sh, c.service_name).active
    deployed.pulumi("preview", "--expect-no-changes")


# --- stop/start ------------------------------------------------------------------------


def test_stop_start_brings_back_restart_policy_containers(
    roles: Roles, sh: SshShell, image: str
) -> None:
    a = roles.a
    name = unique("always")
    sh.out(a.docker(f"run -d --name {name} --restart always {image} sleep 100000"))
    sh.out(f"systemctl stop {shlex.quote(a.service_name)}")
    assert not Service.of(sh, a.service_name).active
    assert IptablesRules.of(sh).tagged(a.tag) == [], "rules go with the daemon"
    assert Service.of(sh, roles.b.service_name).active
    sh.out(f"systemctl start {shlex.quote(a.service_name)}")
    wait_until(
        lambda: name in sh.out(a.docker("ps --format '{{.Names}}'")).split(),
        f"{name} (--restart always) running again after stop/start",
    )


# --- destroy under load, twice, the others stay healthy -----------------------------


def _healthy(sh: SshShell, inst: Instance, image: str) -> None:
    assert Service.of(sh, inst.service_name).active, inst.service_name
    out = sh.out(inst.docker(f"run --rm {image} echo alive-{inst.prefix}"))
    assert out.splitlines()[-1] == f"alive-{inst.prefix}"


def _no_trace(sh: SshShell, inst: Instance) -> None:
    assert not Service.of(sh, inst.service_name).unit_file_exists
    assert IptablesRules.of(sh).tagged(inst.tag) == []
    assert dockyard_traces(sh, [inst.prefix], [inst.root], shared=False) == []


def test_destroy_under_load_twice_leaves_the_others_healthy(
    destructive: None, deployed: DeployedStack, roles: Roles, sh: SshShell, image: str
) -> None:
    a = roles.a
    load = unique("load")
    sh.out(a.docker(f"run -d --name {load} {image} sh -c 'while :; do :; done'"))
    state = deployed.resource_state(a.urn)
    first = destroy_targets(deployed, [a.urn])
    assert first.change_summary == {"delete": 1}, first.describe()
    _no_trace(sh, a)
    # Pulumi refuses a second targeted destroy of a resource its state no longer has; the
    # host side of a second destroy is the same delete run again with the same state.
    DockyardInstanceProvider().delete(state["id"], state["outputs"])
    _no_trace(sh, a)
    for inst in (roles.b, roles.c):
        _healthy(sh, inst, image)


# --- reboot -------------------------------------------------------------------------


def _boot_id(target: SshTarget) -> str:
    return session(target).run("cat /proc/sys/kernel/random/boot_id", step="boot id").stdout.strip()


def test_reboot_brings_back_instances_and_dind(
    destructive: None, host: Host, roles: Roles, sh: SshShell, image: str, dind: Dind,
    outbound: Outbound,
) -> None:  # fmt: skip
    b, c = roles.b, roles.c
    survivor = unique("dind-always")
    dind.ensure_in(sh, b)
    start_dind(sh, b, dind, survivor, extra="--restart always")
    # <root>/run is on disk but must start empty in every boot, like Docker's tmpfs /run:
    # state of the earlier boot kept `--restart always` containers down ("container with id
    # exists"). A file planted there must be gone after the reboot.
    planted = shlex.quote(f"{b.root}/run/docker/planted-before-reboot")
    sh.out(f"touch {planted}")
    before = _boot_id(host.target)
    session(host.target).run("systemd-run --no-block systemctl reboot", step="reboot", check=False)
    close_all()

    def rebooted() -> bool:
        try:
            return _boot_id(host.target) != before
        except Exception:
            close_all()
            return False

    wait_until(rebooted, f"host {host.name} back with a new boot id", seconds=600)
    for inst in (b, c):
        wait_until(lambda i=inst: Service.of(sh, i.service_name).active, f"{inst.prefix} active")
        _healthy(sh, inst, image)
    assert sh.run(f"test -e {planted}")[0] != 0, f"{planted}: state of the earlier boot kept"
    wait_until(
        lambda: sh.out(b.docker(f"inspect -f '{{{{.State.Running}}}}' {survivor}")) == "true",
        f"{survivor} (--restart always) running after the reboot",
    )
    wait_inner_daemon(sh, b, survivor)
    check_dind(sh, b, dind, survivor, outbound)
    # A new Docker-in-Docker container starts after the reboot too: on B, which has the image
    # (loading its 260 MB into C as well cost minutes under TCG and proved nothing more); C's
    # new containers reach the outside world.
    fresh = unique("dind-after-reboot")
    start_dind(sh, b, dind, fresh)
    check_dind(sh, b, dind, fresh, outbound)
    fetched = sh.out(c.docker(f"run --rm {image} wget -qO- {shlex.quote(outbound.url)}"))
    assert fetch_ok(fetched, outbound), fetched


# --- full destroy -------------------------------------------------------------------


def test_full_destroy_leaves_no_trace(
    destructive: None, deployed: DeployedStack, hosts: list[Host]
) -> None:
    """Every instance and SysboxHost destroyed (machines stay so they can be inspected)."""
    wanted = {inst.urn for h in hosts for inst in h.instances} | {h.sysbox_urn for h in hosts}
    present = [str(r["urn"]) for r in deployed.resources() if r["urn"] in wanted]
    destroyed = destroy_targets(deployed, present)
    assert destroyed.change_summary == {"delete": len(present)}, destroyed.describe()
    for h in hosts:
        prefixes = [inst.prefix for inst in h.instances]
        roots = [inst.root for inst in h.instances]
        traces = dockyard_traces(shell_of(h), prefixes, roots)
        assert traces == [], f"{h.name}: {traces}"
