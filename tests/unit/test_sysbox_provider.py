"""SysboxHost check/diff logic (local only) and the pure parts of its host operations."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import dill
import pytest
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc

from dockyard_resources.errors import InputError
from dockyard_resources.hostops import artifacts
from dockyard_resources.hostops.sysbox_host import HostRequest, HostState
from dockyard_resources.providers.sysbox_host import (
    SysboxHostProvider,
    check_props,
    diff_props,
    sysbox_restart_problem,
)
from dockyard_resources.render import sysbox_host as r

SHA_D = "d" * 64
SHA_S = "5" * 64


def inputs() -> dict[str, Any]:
    return {
        "connection": {"host": "10.0.0.5", "port": 22.0, "user": "root", "privateKey": "KEY"},
        "hostName": "box",
        "owner": "dockyard/prod/box-sysbox",
        "docker": {
            "version": "29.2.1",
            "artifacts": {
                "x86_64": {"url": "https://d.test/x86_64/docker.tgz", "sha256": SHA_D},
                "aarch64": {"url": "https://d.test/aarch64/docker.tgz", "sha256": None},
            },
        },
        "sysbox": {
            "version": "0.6.7",
            "artifacts": {
                "x86_64": {"url": "https://s.test/sysbox_amd64.deb", "sha256": SHA_S},
                "aarch64": {"url": "https://s.test/sysbox_arm64.deb", "sha256": "6" * 64},
            },
        },
        "artifactsMode": "download",
        "allowSysboxRestart": False,
    }


def outputs() -> dict[str, Any]:
    """What create returns for inputs(): inputs echoed plus host facts and the pinned key."""
    outs = inputs()
    outs["connection"]["hostKey"] = "ssh-ed25519 AAAAPINNED"
    outs.update(arch="x86_64", hostKey="ssh-ed25519 AAAAPINNED", drift=[])
    return outs


def paths(problems: list[tuple[str, str]]) -> list[str]:
    return [p for p, _ in problems]


# --- check ---------------------------------------------------------------------------------


def test_valid_inputs_pass() -> None:
    assert check_props({}, inputs()) == []


def test_bad_values_are_all_reported_with_their_keys() -> None:
    bad = inputs()
    bad["connection"]["port"] = 70000.0
    bad["docker"]["artifacts"]["x86_64"]["sha256"] = "not-a-sha"
    bad["sysbox"]["version"] = ""
    bad["artifactsMode"] = "carrier-pigeon"
    bad["allowSysboxRestart"] = "yes"
    assert sorted(paths(check_props({}, bad))) == [
        "allowSysboxRestart",
        "artifactsMode",
        "connection.port",
        "docker.artifacts.x86_64.sha256",
        "sysbox.version",
    ]


def test_unknown_arch_and_download_from_a_local_path_are_refused() -> None:
    bad = inputs()
    bad["docker"]["artifacts"]["riscv64"] = {"url": "https://x", "sha256": SHA_D}
    bad["sysbox"]["artifacts"]["x86_64"]["url"] = "/srv/sysbox.deb"
    problems = dict(check_props({}, bad))
    assert "unknown architecture" in problems["docker.artifacts.riscv64"]
    assert "not an http(s) URL the host can download" in problems["sysbox.artifacts.x86_64.url"]


def test_upload_mode_accepts_local_paths() -> None:
    ok = inputs()
    ok["artifactsMode"] = "upload"
    ok["sysbox"]["artifacts"]["x86_64"]["url"] = "/srv/sysbox.deb"
    assert check_props({}, ok) == []


def test_unknown_values_at_preview_are_not_errors() -> None:
    news = inputs()
    news["connection"]["host"] = rpc.UNKNOWN
    news["connection"]["port"] = rpc.UNKNOWN
    news["docker"] = rpc.UNKNOWN
    news["sysbox"]["artifacts"]["x86_64"] = rpc.UNKNOWN
    assert check_props({}, news) == []


def test_check_normalizes_sha256_case_and_defaults() -> None:
    news = inputs()
    news["docker"]["artifacts"]["x86_64"]["sha256"] = SHA_D.upper()
    del news["artifactsMode"], news["allowSysboxRestart"]
    result = SysboxHostProvider().check({}, news)
    assert result.failures == []
    assert result.inputs["docker"]["artifacts"]["x86_64"]["sha256"] == SHA_D
    assert result.inputs["artifactsMode"] == "download"
    assert result.inputs["allowSysboxRestart"] is False


def test_sysbox_upgrade_needs_the_opt_in_at_check() -> None:
    news = inputs()
    news["sysbox"]["version"] = "0.7.0"
    problems = dict(check_props(inputs(), news))
    assert "restarts sysbox-fs" in problems["allowSysboxRestart"]
    assert "hosts[i].allowSysboxRestart: true" in problems["allowSysboxRestart"]
    news["allowSysboxRestart"] = True
    assert check_props(inputs(), news) == []


def test_docker_upgrade_needs_no_opt_in() -> None:
    news = inputs()
    news["docker"]["version"] = "29.3.0"
    assert check_props(inputs(), news) == []


def test_restart_rule_looks_only_at_the_hosts_arch_when_known() -> None:
    news = inputs()
    news["sysbox"]["artifacts"]["aarch64"]["sha256"] = "7" * 64
    assert sysbox_restart_problem(inputs()["sysbox"], news["sysbox"], False, "x86_64") is None
    assert sysbox_restart_problem(inputs()["sysbox"], news["sysbox"], False, "aarch64")


# --- diff ----------------------------------------------------------------------------------


def test_same_inputs_no_changes() -> None:
    news = inputs()
    news["connection"]["port"] = 22  # int vs float: the same port
    assert diff_props(outputs(), news) == ([], [])


def test_new_address_or_port_replaces() -> None:
    for key, value in (("host", "10.0.0.6"), ("port", 2222.0)):
        news = inputs()
        news["connection"][key] = value
        changed, replaces = diff_props(outputs(), news)
        assert replaces == ["connection"]
        assert f"connection.{key}" in changed


def test_unknown_address_replaces() -> None:
    news = inputs()
    news["connection"]["host"] = rpc.UNKNOWN
    assert diff_props(outputs(), news)[1] == ["connection"]


def test_version_or_artifact_change_is_an_in_place_update() -> None:
    news = inputs()
    news["docker"]["version"] = "29.3.0"
    assert diff_props(outputs(), news) == (["docker"], [])
    news = inputs()
    news["artifactsMode"] = "upload"
    assert diff_props(outputs(), news) == (["artifactsMode"], [])


def test_pinned_host_key_in_outputs_is_not_a_change() -> None:
    news = inputs()
    assert "hostKey" not in news["connection"]
    assert diff_props(outputs(), news) == ([], [])
    news["connection"]["hostKey"] = "ssh-ed25519 AAAAOTHER"
    assert diff_props(outputs(), news) == (["connection.hostKey"], [])


def test_drift_found_by_read_asks_for_an_update() -> None:
    olds = outputs()
    olds["drift"] = ["docker 29.2.1: binaries changed or missing"]
    assert diff_props(olds, inputs()) == (["drift"], [])


def test_provider_diff() -> None:
    provider = SysboxHostProvider()
    news = inputs()
    news["connection"]["port"] = 2222.0
    result = provider.diff("id", outputs(), news)
    assert result.changes is True
    assert result.replaces == ["connection"]
    assert provider.diff("id", outputs(), inputs()).changes is False


def test_provider_diff_fails_loudly_on_a_sysbox_upgrade_without_opt_in() -> None:
    news = inputs()
    news["sysbox"]["artifacts"]["x86_64"]["sha256"] = "9" * 64
    with pytest.raises(InputError, match="breaks every running sysbox container"):
        SysboxHostProvider().diff("id", outputs(), news)
    news["allowSysboxRestart"] = True
    result = SysboxHostProvider().diff("id", outputs(), news)
    assert result.changes is True and result.replaces == []


@pytest.mark.parametrize(
    "change",
    ["sysbox version", "sysbox artifact of the host's arch", "unit drift", "sysbox drift"],
)
def test_preview_says_that_a_sysbox_restart_restarts_every_instance_on_the_host(
    warnings: list[str], change: str
) -> None:
    """With allowSysboxRestart the update restarts dockyard-sysbox.service, and through
    Requires= every instance of every stack on the host at once: the preview says so."""
    olds, news = outputs(), inputs()
    olds["allowSysboxRestart"] = news["allowSysboxRestart"] = True
    if change == "sysbox version":
        news["sysbox"]["version"] = "0.6.8"
    elif change == "sysbox artifact of the host's arch":
        news["sysbox"]["artifacts"]["x86_64"]["sha256"] = "9" * 64
    elif change == "unit drift":
        olds["drift"] = [f"{r.UNIT_PATH}: content differs from what Dockyard writes"]
    else:
        olds["drift"] = ["sysbox 0.6.7: binaries changed or missing"]
    assert SysboxHostProvider().diff("id", olds, news).changes is True
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith("SysboxHost box: ")
    assert "restarts dockyard-sysbox.service" in warnings[0]
    assert "every Dockyard instance on this host, of every stack, restarts" in warnings[0]


def test_no_restart_warning_when_nothing_of_sysbox_changes(warnings: list[str]) -> None:
    olds, news = outputs(), inputs()
    olds["allowSysboxRestart"] = news["allowSysboxRestart"] = True
    news["docker"]["version"] = "29.3.0"
    news["sysbox"]["artifacts"]["aarch64"]["sha256"] = "7" * 64  # not this host's arch
    olds["drift"] = ["docker 29.2.1: binaries changed or missing"]
    assert SysboxHostProvider().diff("id", olds, news).changes is True
    assert warnings == []


def test_provider_pickles_without_state() -> None:
    provider = SysboxHostProvider()
    assert vars(provider) == {}
    assert isinstance(serialize_provider(provider), str)
    assert type(dill.loads(dill.dumps(provider))) is SysboxHostProvider  # noqa: S301 - our own bytes


# --- pure parts of the host operations -----------------------------------------------------


def test_host_arch_picks_the_artifact() -> None:
    request = HostRequest.from_props(inputs())
    plan = request.plan("x86_64")
    assert (plan.docker.sha256, plan.sysbox.sha256) == (SHA_D, SHA_S)
    assert plan.sysbox.url.endswith("amd64.deb")


def test_arch_without_a_pin_is_a_clear_error() -> None:
    request = HostRequest.from_props(inputs())
    with pytest.raises(InputError, match=r"no pinned sha256: set hosts\[i\].docker.sha256"):
        request.plan("aarch64")


def healthy_state(plan: r.InstallPlan) -> HostState:
    return HostState(
        distro="Debian",
        kernel="6.12",
        arch="x86_64",
        docker="ok",
        sysbox="ok",
        unit_sha256=r.sha256_text(r.render_unit(plan.sysbox.version)),
        supervisor_sha256=r.sha256_text(r.render_supervisor()),
        sysctl_sha256=r.sha256_text(r.render_sysctl()),
        service_active=False,
        sysbox_user=True,
        subuid_lines=1,
        subgid_lines=1,
    )


def test_drift_lists_each_difference() -> None:
    plan = HostRequest.from_props(inputs()).plan("x86_64")
    assert healthy_state(plan).drift(plan) == []
    broken = dataclasses.replace(
        healthy_state(plan),
        sysbox="binaries changed or missing",
        unit_sha256="0" * 64,
        subuid_lines=2,
        sysbox_user=False,
    )
    assert broken.drift(plan) == [
        "sysbox 0.6.7: binaries changed or missing",
        "/etc/systemd/system/dockyard-sysbox.service: content differs from what Dockyard writes",
        "user sysbox: missing",
        "/etc/subuid: 2 sysbox lines (exactly 1 needed)",
    ]


def test_wrong_local_artifact_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    good = tmp_path / "docker.tgz"
    good.write_bytes(b"docker")
    bad = tmp_path / "sysbox.deb"
    bad.write_bytes(b"not the sysbox you pinned")
    docker = r.Artifact("docker", "1", str(good), artifacts.sha256_file(good))
    sysbox = r.Artifact("sysbox", "1", str(bad), "e" * 64)

    class NoUploads:
        def upload(self, *args: object, **kwargs: object) -> None:
            raise AssertionError("nothing may be uploaded when an artifact is wrong")

    with pytest.raises(artifacts.ArtifactError) as failed:
        artifacts.upload_missing(NoUploads(), [docker, sysbox], set())  # type: ignore[arg-type]
    message = str(failed.value)
    assert "sysbox artifact: sha256 mismatch" in message
    assert f"expected {'e' * 64}" in message
    assert f"got {artifacts.sha256_file(bad)}" in message
    assert "nothing was installed" in message


def test_cached_artifacts_are_not_uploaded(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"x")
    art = r.Artifact("docker", "1", str(f), artifacts.sha256_file(f))
    sent: list[str] = []

    class Recorder:
        def run(self, script: str, **_: object) -> None:
            sent.append("staging" if script == r.staging_script((art.sha256,)) else script)

        def upload(self, path: Path, remote: str, mode: int) -> None:
            sent.append(remote)

    assert artifacts.upload_missing(Recorder(), [art], {art.sha256}) == []  # type: ignore[arg-type]
    assert sent == []
    artifacts.upload_missing(Recorder(), [art], set())  # type: ignore[arg-type]
    # The staging directory is made safe first (tests/unit/test_sysbox_behaviour.py).
    assert sent == ["staging", r.upload_path(art.sha256)]
