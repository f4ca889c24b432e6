"""SSH keys of cloud hosts: the stack's login key pair and each server's host key.

Both are `tls.PrivateKey` resources, so they are generated once, kept in the stack state
(private halves as secrets) and stay the same on every later run.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from cryptography.hazmat.primitives import serialization

# One login key pair per stack, shared by all its cloud hosts.
STACK_LOGIN_KEY_NAME = "dockyard-ssh-key"


@dataclass(frozen=True)
class LoginKey:
    """The key Dockyard logs in with: private half secret, public half an OpenSSH line."""

    private_key: pulumi.Output[str]
    public_key: pulumi.Output[str]
    # `dockyard:sshPrivateKeyPassphrase` of a configured, encrypted key (secret).
    passphrase: pulumi.Output[str] | None = None
    # True for `dockyard:sshPrivateKey`, which the operator may also use on a jump host.
    configured: bool = False


@dataclass(frozen=True)
class HostKey:
    """A server's ed25519 host key, generated before the server exists."""

    private_key: pulumi.Output[str]
    public_key: pulumi.Output[str]
    fingerprint: pulumi.Output[str]


def public_key_line(private_key: str, passphrase: str | None = None) -> str:
    """The OpenSSH public key line of an OpenSSH or PEM private key."""
    data = private_key.strip().encode() + b"\n"
    password = passphrase.encode() if passphrase else None
    if b"BEGIN OPENSSH PRIVATE KEY" in data:
        key = serialization.load_ssh_private_key(data, password=password)
    else:
        key = serialization.load_pem_private_key(data, password=password)  # type: ignore[assignment]
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return public.decode()


def stack_login_key(
    configured: pulumi.Output[str] | None, passphrase: pulumi.Output[str] | None = None
) -> LoginKey:
    """The configured `dockyard:sshPrivateKey` (opened with `passphrase` when encrypted), else
    a key pair generated for the stack."""
    if configured is not None:
        private: pulumi.Output[str] = pulumi.Output.secret(configured)
        secret: pulumi.Output[str] | None = (
            None if passphrase is None else pulumi.Output.secret(passphrase)
        )
        line = pulumi.Output.all(private, secret).apply(lambda p: public_key_line(p[0], p[1]))
        # A public key reveals nothing: keep it readable in previews and cloud-init diffs.
        public = pulumi.Output.unsecret(line)
        return LoginKey(private_key=private, public_key=public, passphrase=secret, configured=True)
    import pulumi_tls as tls  # noqa: PLC0415 - a cloud extra, needed only here

    generated = tls.PrivateKey(STACK_LOGIN_KEY_NAME, algorithm="ED25519")
    return LoginKey(
        private_key=pulumi.Output.secret(generated.private_key_openssh),
        public_key=generated.public_key_openssh.apply(str.strip),
    )


def server_host_key(host_name: str, parent: pulumi.Resource) -> HostKey:
    import pulumi_tls as tls  # noqa: PLC0415 - a cloud extra, needed only here

    key = tls.PrivateKey(
        f"{host_name}-host-key",
        algorithm="ED25519",
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return HostKey(
        private_key=pulumi.Output.secret(key.private_key_openssh),
        public_key=key.public_key_openssh.apply(str.strip),
        fingerprint=key.public_key_fingerprint_sha256,
    )
