"""Wait for cloud-init to finish on a fresh cloud server before Dockyard touches it.

Until cloud-init is done, sshd may refuse, the login key may not be installed yet and
apt/dpkg locks may be held. `cloud-init status --wait` exits 0 when done, 2 when done with
recoverable errors and 1 on a fatal error: only 1 fails the wait.
"""

from __future__ import annotations

from typing import Final

import pulumi
from pulumi_command import remote

from dockyard_resources.cloud import CloudServer
from dockyard_resources.cloud.cloudinit import CLOUD_USER
from dockyard_resources.cloud.hardening import harden_server
from dockyard_resources.cloud.keys import HostKey, LoginKey
from dockyard_resources.config.models import JumpHost

WAIT_COMMAND: Final = "cloud-init status --wait >/dev/null || [ $? -ne 1 ]"

# pulumi-command retries the SSH dial (refused, timeouts, auth not yet possible) this many
# times, each attempt bounded: about ten minutes for a booting server.
DIAL_ERROR_LIMIT: Final = 40
PER_DIAL_TIMEOUT_S: Final = 15


def jump_proxy(jump: JumpHost, login: LoginKey) -> remote.ProxyConnectionArgs:
    """pulumi-command's `proxy` for the jump host, pinned like Dockyard's own connection. It
    tries one key only: the configured `dockyard:sshPrivateKey`, else the ssh-agent's keys
    (SSH_AUTH_SOCK); a key generated for the stack is on no jump host."""
    props = jump.connection_props()
    configured = login.configured
    return remote.ProxyConnectionArgs(
        host=props["host"],
        port=props["port"],
        user=props["user"],
        host_key=props["hostKey"],
        private_key=login.private_key if configured else None,
        private_key_password=login.passphrase if configured else None,
        dial_error_limit=DIAL_ERROR_LIMIT,
        per_dial_timeout=PER_DIAL_TIMEOUT_S,
    )


def wait_for_cloud_init(
    name: str,
    *,
    host: pulumi.Input[str],
    user: str,
    login: LoginKey,
    host_key: pulumi.Input[str],
    server_id: pulumi.Input[str],
    parent: pulumi.Resource,
    jump: JumpHost | None = None,
) -> remote.Command:
    """A command that connects with the pinned host key (through the pinned jump host, if
    any) and returns once cloud-init is done."""
    return remote.Command(
        name,
        connection=remote.ConnectionArgs(
            host=host,
            port=22,
            user=user,
            private_key=login.private_key,
            private_key_password=login.passphrase,
            host_key=host_key,
            dial_error_limit=DIAL_ERROR_LIMIT,
            per_dial_timeout=PER_DIAL_TIMEOUT_S,
            proxy=None if jump is None else jump_proxy(jump, login),
        ),
        create=WAIT_COMMAND,
        # A replaced server must be waited for again.
        triggers=[server_id],
        opts=pulumi.ResourceOptions(parent=parent),
    )


def ready_server(
    host_name: str,
    *,
    address: pulumi.Output[str],
    server_id: pulumi.Input[str],
    login: LoginKey,
    host_key: HostKey,
    parent: pulumi.Resource,
    jump: JumpHost | None = None,
) -> CloudServer:
    """The server as Dockyard sees it: reachable (through `jump`, if given) once cloud-init
    is done, its host key rotated and its metadata service closed to non-root users."""
    wait = wait_for_cloud_init(
        f"{host_name}-cloud-init",
        host=address,
        user=CLOUD_USER,
        login=login,
        host_key=host_key.public_key,
        server_id=server_id,
        parent=parent,
        jump=jump,
    )
    hardened = harden_server(
        host_name,
        address=address,
        user=CLOUD_USER,
        server_id=server_id,
        login=login,
        host_key=host_key,
        after=wait,
        parent=parent,
        jump=jump,
    )
    return CloudServer(
        address=address,
        user=CLOUD_USER,
        host_key=host_key,
        pinned_host_key=hardened.host_key,
        ready=hardened.ready,
    )
