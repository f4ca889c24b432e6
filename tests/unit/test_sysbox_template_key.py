"""The SysboxHost template's key (tests/fixtures/sysbox_template.py): what changes the install
changes the key, so a product change builds a new template; what does not, does not."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dockyard_resources.render import sysbox_host as render
from tests.fixtures import sysbox_template
from tests.fixtures.sysbox_template import layer_inputs, sysbox_host_props


@dataclass(frozen=True)
class Art:
    path: Path
    sha256: str


def props(root: str = "/a", sha: str = "1", owner: str = "o", **extra: Any) -> dict[str, Any]:
    docker = Art(Path(f"{root}/docker-29.2.1.tgz"), sha * 64)
    sysbox = Art(Path(f"{root}/sysbox-ce_0.6.7-0.linux_amd64.deb"), "2" * 64)
    return sysbox_host_props(docker, sysbox, owner=owner, **extra)


def test_same_files_elsewhere_same_key() -> None:
    # A fresh clone in another directory (CI) must find the template a developer built.
    assert layer_inputs(props("/a")) == layer_inputs(props("/elsewhere/shared/artifacts"))


@pytest.mark.parametrize(
    "changed",
    [
        {"sha": "3"},
        {"owner": "other"},
        {"allow_restart": True},
        {"host_name": "otherhost"},
    ],
)
def test_what_the_install_depends_on_changes_the_key(changed: dict[str, Any]) -> None:
    assert layer_inputs(props(**changed)) != layer_inputs(props())


def test_a_changed_install_script_changes_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    before = layer_inputs(props())
    original = render.install_script
    monkeypatch.setattr(render, "install_script", lambda plan: original(plan) + "\n# changed\n")
    assert layer_inputs(props()) != before


def test_the_install_code_listed_in_the_key_exists() -> None:
    # A renamed module would silently drop out of the key otherwise.
    package = Path(sysbox_template.__file__).resolve().parents[2] / "dockyard_resources"
    for relative in sysbox_template._INSTALL_CODE:
        assert (package / relative).exists(), relative
    assert len(sysbox_template.code_digest()) == 64
