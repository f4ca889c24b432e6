"""Pure parts of the cloud kinds: cloud-init rendering and public keys of configured keys."""

from __future__ import annotations

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from dockyard_resources.cloud.cloudinit import render_user_data
from dockyard_resources.cloud.keys import public_key_line
from tests.program.harness import new_ed25519_key


def test_user_data_round_trips_the_keys_exactly() -> None:
    host_private, host_public = new_ed25519_key()
    _login_private, login_public = new_ed25519_key()

    text = render_user_data(
        host_private_key=host_private,
        host_public_key=host_public + "\n",
        authorized_key=login_public + "\n",
        user="ops",
    )

    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    assert document["ssh_keys"] == {
        "ed25519_private": host_private,
        "ed25519_public": host_public,
    }
    assert document["users"][0]["name"] == "ops"
    assert document["users"][0]["ssh_authorized_keys"] == [login_public]
    assert document["users"][0]["lock_passwd"] is True
    assert document["disable_root"] is True


def test_public_key_of_an_openssh_private_key() -> None:
    private, public = new_ed25519_key()
    assert public_key_line(private) == public


def test_public_key_of_a_pem_rsa_private_key() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    expected = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    assert public_key_line(pem) == expected.decode()


def test_garbage_is_not_a_private_key() -> None:
    with pytest.raises(ValueError):
        public_key_line("not a key")
