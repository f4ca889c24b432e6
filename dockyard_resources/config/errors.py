"""Errors raised while loading and validating a stack's configuration."""

from __future__ import annotations

from dockyard_resources.errors import DockyardError


class ConfigError(DockyardError):
    """The configuration is invalid; `errors` lists every problem as `key.path: message`."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class StackFileError(DockyardError):
    """The stack file cannot be read or is not a YAML mapping (nothing to validate)."""
