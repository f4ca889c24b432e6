"""Read a Pulumi stack file (`stacks/Pulumi.<stack>.yaml`) without Pulumi.

Secure values (`{secure: v1:...}`) stay opaque: validation never needs their plain text.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import yaml

from dockyard_resources.config.errors import ConfigError, StackFileError
from dockyard_resources.config.spec import HostSpec
from dockyard_resources.config.validate import validate_hosts

NAMESPACE: Final = "dockyard"
# Keys of the `dockyard:` namespace the program reads; anything else is most likely a typo.
KNOWN_KEYS: Final = ("hosts", "sshPrivateKey")
SECRET_KEYS: Final = ("sshPrivateKey",)


def load_stack_document(path: str | Path) -> dict[str, Any]:
    """The whole stack file: `config:` and what Pulumi keeps beside it (its secrets
    provider's `encryptionsalt`, `secretsprovider`, `encryptedkey`); empty for an empty file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise StackFileError(f"{file}: cannot read the stack file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise StackFileError(f"{file}: not a text file (invalid UTF-8)") from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise StackFileError(f"{file}: not valid YAML: {exc}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise StackFileError(f"{file}: must be a YAML mapping with a `config:` key")
    config = document.get("config", {})
    if config is not None and not isinstance(config, dict):
        raise StackFileError(f"{file}: `config:` must be a mapping of `namespace:key: value`")
    return document


def load_stack_file(path: str | Path) -> dict[str, Any]:
    """The `config:` mapping of a stack file (empty when the file has none)."""
    config: dict[str, Any] = load_stack_document(path).get("config") or {}
    return config


def is_secure(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


def project_dir_of(stack_file: str | Path) -> Path:
    """The nearest directory at or above the stack file holding Pulumi.yaml (else the cwd)."""
    start = Path(stack_file).resolve().parent
    for directory in (start, *start.parents):
        if (directory / "Pulumi.yaml").is_file():
            return directory
    return Path.cwd()


def validate_stack_config(
    config: dict[str, Any], *, base_dir: Path | None = None
) -> list[HostSpec]:
    """Validate the `dockyard:` keys of a stack's `config:` mapping; raises `ConfigError`."""
    errors: list[str] = []
    for key, value in config.items():
        namespace, _, name = str(key).partition(":")
        if namespace != NAMESPACE:
            continue
        if name not in KNOWN_KEYS:
            errors.append(f"{key}: unknown key; the dockyard namespace has {', '.join(KNOWN_KEYS)}")
        elif name in SECRET_KEYS and not is_secure(value):
            errors.append(
                f"{key}: stored in clear text; remove it and store it encrypted with"
                f" `pulumi config set --secret {key} --stack <stack> < ~/.ssh/id_ed25519`"
            )
    hosts: list[HostSpec] = []
    try:
        hosts = validate_hosts(config.get(f"{NAMESPACE}:hosts"), base_dir=base_dir)
    except ConfigError as exc:
        errors.extend(exc.errors)
    if errors:
        raise ConfigError(errors)
    return hosts
