"""A stack file's secrets travel with their secrets provider (ci, make up), or are refused
with the way out; the engine tests (tests/engine/test_ssh_key_secret.py) prove the decryption."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from dockyard_resources import ci, stack_secrets

SECRET = {"secure": "v1:abc"}


def write(tmp_path: Path, document: Mapping[str, object]) -> Path:
    path = tmp_path / "Pulumi.prod.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_a_passphrase_stack_files_salt_goes_with_its_secrets(tmp_path: Path) -> None:
    file = write(
        tmp_path,
        {
            "encryptionsalt": "v1:salt",
            "config": {"dockyard:hosts": [], "dockyard:sshPrivateKey": SECRET},
        },
    )
    assert ci.load_stack(file) == {
        "encryptionsalt": "v1:salt",
        "config": {"dockyard:hosts": [], "dockyard:sshPrivateKey": SECRET},
    }


def test_a_kms_provider_goes_with_its_secrets(tmp_path: Path) -> None:
    document = {
        "secretsprovider": "awskms://alias/dockyard?region=eu-central-1",
        "encryptedkey": "AQICAH...",
        "config": {"dockyard:hosts": [], "dockyard:sshPrivateKey": SECRET},
    }
    assert ci.load_stack(write(tmp_path, document)) == document


def test_secrets_only_their_own_stack_can_decrypt_are_refused_with_the_way_out(
    tmp_path: Path,
) -> None:
    file = write(tmp_path, {"config": {"dockyard:hosts": [], "dockyard:sshPrivateKey": SECRET}})
    with pytest.raises(ci.CiError, match="dockyard:sshPrivateKey") as caught:
        ci.load_stack(file)
    assert "change-secrets-provider passphrase" in str(caught.value)


def test_a_file_without_secrets_needs_no_provider(tmp_path: Path) -> None:
    file = write(tmp_path, {"encryptionsalt": "v1:salt", "config": {"dockyard:hosts": []}})
    assert stack_secrets.secure_keys({"config": {"dockyard:hosts": []}}) == []
    # A salt without secrets stays behind: it would only make the new stack demand the
    # passphrase it was made with.
    assert ci.load_stack(file) == {"config": {"dockyard:hosts": []}}
    assert ci.load_stack(write(tmp_path, {"config": {"dockyard:hosts": []}})) == {
        "config": {"dockyard:hosts": []}
    }
