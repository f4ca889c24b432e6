"""The out-of-checkout project directory: shipped stack files stay as they are."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dockyard_resources import paths, workdir
from dockyard_resources.config.errors import StackFileError


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DOCKYARD_STATE", raising=False)
    return tmp_path / "cache"


def shipped(tmp_path: Path, document: dict[str, object]) -> Path:
    path = tmp_path / "Pulumi.demo.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_project_runs_this_checkout_and_leaves_the_stack_file_alone(tmp_path: Path) -> None:
    source = shipped(tmp_path, {"config": {"dockyard:hosts": [{"name": "h1"}]}})
    before = source.read_text()
    work = workdir.prepare(source)
    assert work == paths.stacks_dir() / "demo"
    assert work == tmp_path / "cache" / "stacks" / "demo"
    project = yaml.safe_load((work / "Pulumi.yaml").read_text())
    assert project["main"] == str(workdir.REPO_ROOT)
    assert Path(project["runtime"]["options"]["virtualenv"]).is_absolute()
    assert source.read_text() == before


def test_pulumis_own_keys_survive_and_the_checkouts_config_wins(tmp_path: Path) -> None:
    source = shipped(tmp_path, {"config": {"dockyard:hosts": [{"name": "h1"}]}})
    target = workdir.prepare(source) / "stacks" / "Pulumi.demo.yaml"
    # What `pulumi stack init` and `pulumi config set --secret` put there.
    target.write_text(
        yaml.safe_dump(
            {
                "encryptionsalt": "v1:salt",
                "config": {"dockyard:hosts": [], "dockyard:sshPrivateKey": {"secure": "x"}},
            }
        )
    )
    source.write_text(yaml.safe_dump({"config": {"dockyard:hosts": [{"name": "h2"}]}}))
    workdir.prepare(source)
    merged = yaml.safe_load(target.read_text())
    assert merged["encryptionsalt"] == "v1:salt"
    assert merged["config"]["dockyard:hosts"] == [{"name": "h2"}]
    assert merged["config"]["dockyard:sshPrivateKey"] == {"secure": "x"}


def test_a_stack_file_with_its_own_salt_brings_it_along(tmp_path: Path) -> None:
    source = shipped(
        tmp_path,
        {"encryptionsalt": "v1:mine", "config": {"dockyard:sshPrivateKey": {"secure": "y"}}},
    )
    target = workdir.prepare(source) / "stacks" / "Pulumi.demo.yaml"
    assert yaml.safe_load(target.read_text())["encryptionsalt"] == "v1:mine"


def test_bad_names_and_missing_files_are_clear(tmp_path: Path) -> None:
    with pytest.raises(StackFileError, match=r"named Pulumi.<stack>.yaml"):
        workdir.prepare(tmp_path / "demo.yaml")
    with pytest.raises(StackFileError, match="no such stack file"):
        workdir.prepare(tmp_path / "Pulumi.missing.yaml")
