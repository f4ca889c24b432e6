"""A stack file's encrypted values and the secrets provider they need.

The one way to give Dockyard a secret (the SSH key) is Pulumi's own:
`pulumi config set --secret dockyard:sshPrivateKey --stack <stack> < KEY`, run in the checkout.
Pulumi stores the value encrypted (`secure:`) in `stacks/Pulumi.<stack>.yaml`, and beside it
what its secrets provider needs to decrypt it: `encryptionsalt` for a passphrase,
`secretsprovider` + `encryptedkey` for a cloud KMS. Pulumi Cloud's default provider writes
neither: the key stays with that stack in the service.

`make up` (workdir.py) and `ci` carry those keys along with the values, so the same file
decrypts wherever it runs, given the same passphrase or KMS access.
"""

from __future__ import annotations

from typing import Any, Final

from dockyard_resources.errors import DockyardError

# Top-level keys of a stack file that belong to its secrets provider.
PROVIDER_KEYS: Final = ("encryptionsalt", "secretsprovider", "encryptedkey")


class StackSecretsError(DockyardError):
    """The stack file's secrets cannot be decrypted where they are about to be used."""


def secure_keys(document: dict[str, Any]) -> list[str]:
    """The config keys whose values are encrypted (`{secure: ...}`)."""
    config = document.get("config") or {}
    return sorted(k for k, v in config.items() if isinstance(v, dict) and set(v) == {"secure"})


def provider_settings(document: dict[str, Any]) -> dict[str, Any]:
    """The stack file's secrets-provider keys (empty for Pulumi Cloud's default provider)."""
    return {key: document[key] for key in PROVIDER_KEYS if key in document}


def portable_settings(document: dict[str, Any], file: str) -> dict[str, Any]:
    """What a NEW stack needs to decrypt this file's secrets: its provider keys (none without
    secrets: a salt alone would only make the new stack demand that passphrase). Refuses a
    file whose secrets only its own stack can decrypt (Pulumi Cloud's per-stack key)."""
    secure = secure_keys(document)
    if not secure:
        return {}
    settings = provider_settings(document)
    if not settings:
        raise StackSecretsError(
            f"{file}: {', '.join(secure)} are encrypted with the key Pulumi Cloud keeps for"
            " that file's own stack, which no other stack can use. Give the stack a secrets"
            " provider that travels with the file, e.g. `pulumi stack change-secrets-provider"
            " passphrase --stack <stack>` (then PULUMI_CONFIG_PASSPHRASE in the job), or a"
            " cloud KMS (awskms://, gcpkms://, azurekeyvault://)"
        )
    return settings
