"""The Pulumi program: read `dockyard:*` config, validate it, build every host, export outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import pulumi

from dockyard_resources.components import DockyardHost, LazyLoginKey, invalid_config_message
from dockyard_resources.config import ConfigError, validate_hosts
from dockyard_resources.config.reachability import stack_warnings
from dockyard_resources.config.spec import HostSpec

CONFIG_NAMESPACE: Final = "dockyard"


def config_error_message(errors: list[str]) -> str:
    listing = invalid_config_message(
        [f"dockyard:{error}" for error in errors], f"stack {pulumi.get_stack()!r}"
    )
    fix = "Fix the stack file, then check it offline with"
    return f"{listing}\n{fix}\n  python -m dockyard_resources validate stacks/Pulumi.<stack>.yaml"


def load_hosts(config: pulumi.Config, base_dir: Path) -> list[HostSpec]:
    """Validated host specs; raises `pulumi.RunError` listing every problem, before any
    resource is registered. Warnings (e.g. documentation-only addresses) are logged, as
    `validate` prints them."""
    try:
        specs = validate_hosts(config.get_object("hosts"), base_dir=base_dir)
    except ConfigError as exc:
        raise pulumi.RunError(config_error_message(exc.errors)) from None
    for warning in stack_warnings(specs):
        pulumi.log.warn(f"{CONFIG_NAMESPACE}:{warning}")
    return specs


def build_hosts(
    specs: list[HostSpec],
    ssh_private_key: pulumi.Output[str] | None,
    passphrase: pulumi.Output[str] | None = None,
) -> dict[str, DockyardHost]:
    """One `DockyardHost` per spec; hosts share nothing but the login key, so they run in
    parallel."""
    login_key = LazyLoginKey(ssh_private_key, passphrase)
    return {
        spec.name: DockyardHost(
            spec,
            ssh_private_key=ssh_private_key,
            login_key=login_key,
            ssh_private_key_passphrase=passphrase,
        )
        for spec in specs
    }


def stack_outputs(hosts: dict[str, DockyardHost]) -> dict[str, Any]:
    return {name: host.outputs for name, host in hosts.items()}


def main(project_dir: Path | None = None) -> dict[str, DockyardHost]:
    """Pulumi runs the program in the project directory: relative paths in the stack file
    (e.g. `sha256File`) are relative to it, as for `validate`."""
    config = pulumi.Config(CONFIG_NAMESPACE)
    specs = load_hosts(config, project_dir or Path.cwd())
    ssh_private_key = config.get_secret("sshPrivateKey")
    passphrase = config.get_secret("sshPrivateKeyPassphrase")
    hosts = build_hosts(specs, ssh_private_key, passphrase)
    pulumi.export("hosts", stack_outputs(hosts))
    return hosts
