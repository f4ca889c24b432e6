"""Property: arbitrary strings through `check` and rendering never reach a host unquoted.

For every text input of both host resources, hypothesis feeds near-valid values spiked with
shell metacharacters (`$()`, backquotes, quotes, newlines, `..`, spaces). Either the
provider's check refuses the value, or every script rendered from it passes `bash -n` and
shellcheck, and the value reaches the script only as one quoted word.
"""

from __future__ import annotations

import shlex
import subprocess
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard_resources.hostops import instance as hostops
from dockyard_resources.hostops.sysbox_host import HostRequest
from dockyard_resources.providers import instance as instance_provider
from dockyard_resources.providers.sysbox_host import check_props
from dockyard_resources.render import instance as render
from dockyard_resources.render import sysbox_host as sysbox_render

EVIL = "$()`;'\"\n\\ .*?&|<>{}#~!"
INSTANCE: dict[str, Any] = {
    "connection": {"host": "192.0.2.10", "port": 22.0, "user": "root"},
    "hostName": "build-1",
    "dockerDir": "/usr/local/lib/dockyard/docker-29.2.1",
    "sysboxDir": "/usr/local/lib/dockyard/sysbox-0.6.7",
    "prefix": "dy1_",
    "root": "/dy1",
    "bridgeCidr": "172.22.147.1/24",
    "fixedCidr": "172.22.147.0/24",
    "poolBase": "172.28.0.0/20",
    "poolSize": 24.0,
    "members": ["alice"],
    "owner": "dockyard/prod/build-1-dy1_",
}
SHA = "a" * 64


def spiked(base: str) -> st.SearchStrategy[str]:
    """`base` with shell metacharacters put before, inside or after it, or any text at all."""
    noise = st.text(alphabet=EVIL + "abc/_-.", min_size=1, max_size=6)
    return st.one_of(
        st.builds(lambda n: base + n, noise),
        st.builds(lambda n: n + base, noise),
        st.builds(lambda n, i: base[:i] + n + base[i:], noise, st.integers(0, len(base))),
        st.text(max_size=20),
    )


def shell_ok(script: str) -> None:
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    proc = subprocess.run(
        ["shellcheck", "-s", "bash", "-S", "error", "-"],
        input=script,
        text=True,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout


FIELDS = ("prefix", "root", "dockerDir", "sysboxDir", "owner", "member")


@pytest.mark.parametrize("field", FIELDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_instance_text_inputs_are_refused_or_quoted(field: str, data: st.DataObject) -> None:
    base = "alice" if field == "member" else str(INSTANCE[field])
    value = data.draw(spiked(base))
    news = dict(INSTANCE)
    if field == "member":
        news["members"] = [value]
    else:
        news[field] = value
    inputs, failures = instance_provider.validate(news)
    key = "members" if field == "member" else field
    if any(f.property == key for f in failures):
        return
    assert failures == [], [(f.property, f.reason) for f in failures]
    # Accepted: made of characters the shell takes literally, so no quoting can go wrong...
    assert shlex.quote(value) == value, value
    spec = render.InstanceSpec.from_props(inputs)
    scripts = [
        hostops._install_script(spec),
        hostops._remove_script(spec, []),
        hostops._stop_script(spec),
        *(f.content for f in render.instance_files(spec) if "/bin/" in f.path),
    ]
    for script in scripts:  # ...and every script still parses and passes shellcheck.
        shell_ok(script)


def sysbox_inputs(**changes: Any) -> dict[str, Any]:
    def artifact(version: str, url: str) -> dict[str, Any]:
        return {"version": version, "artifacts": {"x86_64": {"url": url, "sha256": SHA}}}

    props: dict[str, Any] = {
        "connection": {"host": "192.0.2.10", "port": 22.0, "user": "root"},
        "hostName": "build-1",
        "owner": "dockyard/prod/build-1-sysbox",
        "docker": artifact("29.2.1", "https://mirror.example.com/docker-29.2.1.tgz"),
        "sysbox": artifact("0.6.7", "https://mirror.example.com/sysbox.deb"),
        "artifactsMode": "download",
    }
    for key, value in changes.items():
        if key == "url":
            props["docker"]["artifacts"]["x86_64"]["url"] = value
        elif key == "version":
            props["docker"]["version"] = value
        else:
            props[key] = value
    return props


@pytest.mark.parametrize(
    ("field", "base"),
    [
        ("url", "https://mirror.example.com/docker-29.2.1.tgz"),
        ("version", "29.2.1"),
        ("owner", "dockyard/prod/build-1-sysbox"),
        ("hostName", "build-1"),
    ],
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_sysbox_host_text_inputs_are_refused_or_quoted(
    field: str, base: str, data: st.DataObject
) -> None:
    value = data.draw(spiked(base))
    props = sysbox_inputs(**{field: value})
    problems = check_props({}, props)
    if problems:
        return
    plan = HostRequest.from_props(props).plan("x86_64")
    script = sysbox_render.install_script(plan)
    shell_ok(script)
    shell_ok(sysbox_render.remove_script(plan.owner))
    if field == "url":
        # The URL reaches curl as exactly one word, whatever characters it holds.
        line = next(x for x in script.splitlines() if x.startswith("fetch_artifact docker "))
        assert shlex.split(line)[3] == value, line
    elif field == "version":
        # The versioned directory reaches the installer as one word, the version intact.
        line = next(x for x in script.splitlines() if "install_dir docker " in x)
        assert shlex.split(line)[shlex.split(line).index("install_dir") + 2] == (
            sysbox_render.docker_dir(value)
        ), line
    elif field == "owner":
        assert shlex.quote(value) == value, value


def test_sample_scripts_pass_shellcheck() -> None:
    """The property tests above mostly see refusals: the accepted path, rendered once with
    the sample values, must pass as well."""
    inputs, failures = instance_provider.validate(dict(INSTANCE))
    assert failures == []
    spec = render.InstanceSpec.from_props(inputs)
    for script in (
        hostops._install_script(spec),
        hostops._install_script(spec, adopt=True),
        hostops._remove_script(spec, ["br-0123456789ab"]),
        hostops._stop_script(spec),
        *(f.content for f in render.instance_files(spec) if "/bin/" in f.path),
    ):
        shell_ok(script)
    assert check_props({}, sysbox_inputs()) == []
    plan = HostRequest.from_props(sysbox_inputs()).plan("x86_64")
    shell_ok(sysbox_render.install_script(plan))
    shell_ok(sysbox_render.remove_script(plan.owner))
