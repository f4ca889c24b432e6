"""An artifact upgrade reaches the running daemons, one instance at a time.

The host starts on the STAND-IN artifacts (Debian's Docker 26.1 in Docker's layout, named
29.2.1) and is switched to the test bed's real Docker 29.2.1 + sysbox 0.6.7: same version,
new sha256, so the directories keep their names while the binaries under them change.

Docker first, alone: the SysboxHost update swaps the binaries under the running daemons and
restarts nothing, so a refresh sees each dockerd running a binary that is gone; the instance
updates then restart each onto the new binary, never both at the same time. Sysbox second:
with allowSysboxRestart the shared service restarts, and with it (Requires=) every instance
at once, as docs/sysbox-host.md warns; the SysboxHost update returns only once they all run
again, and the instance updates then take the new sysbox-runc one at a time.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from dockyard_resources.providers.instance import DockyardInstanceProvider
from dockyard_resources.providers.sysbox_host import SysboxHostProvider
from tests.fixtures.sysbox_template import ArtifactFile, sysbox_host_props, sysbox_layer
from tests.fixtures.vm import TestHost, booted_vm
from tests.hosts.checks import SshShell
from tests.hosts.test_instances import DOCKER_VERSION, _connection, _props
from tools.standins.build import Standins
from tools.testbed.artifacts import TestbedArtifacts

pytestmark = [pytest.mark.vm, pytest.mark.timeout(3600)]

OWNER = "tests/upgrade/testhost-sysbox"


def sysbox_props(docker: ArtifactFile, sysbox: ArtifactFile) -> dict[str, Any]:
    """The SysboxHost's inputs without `connection`."""
    return sysbox_host_props(docker, sysbox, owner=OWNER, allow_restart=True)


@pytest.fixture(scope="module")
def host(testbed_artifacts: TestbedArtifacts, standins: Standins) -> Iterator[TestHost]:
    """A clone of the template on which the STAND-IN SysboxHost is installed: the test's
    own create of it then only converges (the upgrade from there is what is tested)."""
    if not testbed_artifacts.real_sysbox:
        pytest.skip(
            "the test bed itself uses the STAND-INs: there is no second set of binaries to"
            f" upgrade to ({testbed_artifacts.describe()})"
        )
    layer = sysbox_layer(sysbox_props(standins.docker, standins.sysbox))
    with booted_vm(layer=layer) as booted:
        yield booted


def server_version(sh: SshShell, root: str) -> str:
    return sh.out(f"{root}/bin/docker version --format '{{{{.Server.Version}}}}'")


def restart_window(sh: SshShell, unit: str) -> tuple[int, int]:
    """From the moment the unit began to stop to the moment it was active again."""
    out = sh.out(
        f"systemctl show -P ActiveExitTimestampMonotonic {unit};"
        f" systemctl show -P ActiveEnterTimestampMonotonic {unit}"
    )
    stopped, active = (int(x) for x in out.split())
    return stopped, active


def sysbox_runc_edition(sh: SshShell, root: str) -> str:
    return sh.out(f"{root}/bin/sysbox-runc --version | grep -i edition")


def test_new_binaries_restart_each_instance_onto_them_one_at_a_time(
    host: TestHost, standins: Standins, testbed_artifacts: TestbedArtifacts
) -> None:
    sh = SshShell(host.target)
    conn = _connection(host.target)
    hosts = SysboxHostProvider()
    provider = DockyardInstanceProvider()
    units = [f"dy{n}_docker.service" for n in (1, 2)]
    old_inputs = {**sysbox_props(standins.docker, standins.sysbox), "connection": conn}
    old = hosts.create(old_inputs).outs or {}

    def with_binaries(props: dict[str, Any], outs: dict[str, Any]) -> dict[str, Any]:
        return {**props, "dockerSha256": outs["dockerSha256"], "sysboxSha256": outs["sysboxSha256"]}

    def update_both(olds: list[dict[str, Any]], news: list[dict[str, Any]]) -> None:
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda i: provider.update("id", olds[i], news[i]), (0, 1)))

    def assert_healthy(wanted: list[dict[str, Any]]) -> None:
        for props, outs in zip(wanted, made, strict=True):
            read = provider.read("id", {**props, **outs}).outs or {}
            assert read["healthy"] is True, read["health"]

    wanted = [with_binaries(_props(conn, n, []), old) for n in (1, 2)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        made = [r.outs or {} for r in pool.map(provider.create, wanted)]
    try:
        before = [server_version(sh, f"/dy{n}") for n in (1, 2)]
        assert all(v != DOCKER_VERSION for v in before), before  # Debian's 26.1 stand-in

        # 1. New Docker binaries, sysbox unchanged: the host update restarts nothing.
        docker_inputs = {
            **sysbox_props(testbed_artifacts.docker, standins.sysbox),
            "connection": conn,
        }
        new = hosts.update("id", old, docker_inputs).outs or {}
        assert new["dockerDir"] == old["dockerDir"]  # same version: same directory
        assert new["dockerSha256"] != old["dockerSha256"]
        assert new["sysboxSha256"] == old["sysboxSha256"]
        # A refresh now sees the daemon running a binary that is gone.
        stale = provider.read("id", {**wanted[0], **made[0]}).outs or {}
        assert stale["healthy"] is False
        assert any("dockerd runs" in p for p in stale["health"]["problems"]), stale["health"]

        news = [with_binaries(_props(conn, n, []), new) for n in (1, 2)]
        assert provider.diff("id", made[0], news[0]).changes is True
        update_both(made, news)

        assert [server_version(sh, f"/dy{n}") for n in (1, 2)] == [DOCKER_VERSION] * 2
        first, second = sorted(restart_window(sh, unit) for unit in units)
        assert first[1] <= second[0], f"both instances were down at once: {first}, {second}"
        assert_healthy(news)

        # 2. New sysbox binaries: the service restarts (allowSysboxRestart) and every instance
        # with it, at once (docs/sysbox-host.md); the update returns once they run again.
        up_since = [restart_window(sh, unit)[1] for unit in units]
        sysbox_inputs = {
            **sysbox_props(testbed_artifacts.docker, testbed_artifacts.sysbox),
            "connection": conn,
        }
        final = hosts.update("id", new, sysbox_inputs).outs or {}
        assert final["sysboxDir"] == new["sysboxDir"]
        assert final["sysboxSha256"] != new["sysboxSha256"]
        windows = [restart_window(sh, unit) for unit in units]
        assert all(w[0] > since for w, since in zip(windows, up_since, strict=True)), windows
        first, second = sorted(windows)
        assert second[0] < first[1], f"the sysbox restart restarted them apart: {windows}"
        for props, outs in zip(news, made, strict=True):
            after = provider.read("id", {**props, **outs}).outs or {}
            assert after["health"]["serviceActive"] is True, after["health"]
            stale = [
                p
                for p in after["health"]["problems"]
                if "dockerd runs" in p or "containerd runs" in p
            ]
            assert not stale, after["health"]
        # Each instance's copy of sysbox-runc is still the old one until its own update.
        assert "STAND-IN" in sysbox_runc_edition(sh, "/dy1")

        finals = [with_binaries(_props(conn, n, []), final) for n in (1, 2)]
        assert provider.diff("id", made[0], finals[0]).changes is True
        update_both(made, finals)
        first, second = sorted(restart_window(sh, unit) for unit in units)
        assert first[1] <= second[0], f"both instances were down at once: {first}, {second}"
        assert [server_version(sh, f"/dy{n}") for n in (1, 2)] == [DOCKER_VERSION] * 2
        assert all("STAND-IN" not in sysbox_runc_edition(sh, f"/dy{n}") for n in (1, 2))
        assert_healthy(finals)
    finally:
        for props in wanted:
            provider.delete("id", props)
        hosts.delete("id", {**old, "owner": OWNER})
