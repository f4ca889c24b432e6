"""The root of every error Dockyard raises for the user to read.

A `DockyardError` is an expected failure (bad input, a host that refuses, an artifact that
does not verify, a conflict): its message says what happened and what to do, so it is shown
alone, without a Python traceback (see `providers/quiet_errors.py`). Anything else that
escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class DockyardError(Exception):
    """An expected failure whose message is meant for the user."""


class HostOutputError(DockyardError):
    """A host-side script answered with something Dockyard cannot read."""


class InputError(DockyardError):
    """Inputs that passed `check` but cannot be applied as asked (e.g. a refused upgrade)."""
