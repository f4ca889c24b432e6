"""Errors raised while loading and validating a stack's configuration."""

from __future__ import annotations


class ConfigError(Exception):
    """The configuration is invalid; `errors` lists every problem as `key.path: message`."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


class StackFileError(Exception):
    """The stack file cannot be read or is not a YAML mapping (nothing to validate)."""
