"""Expected failures reach `pulumi up` as Dockyard's message alone, not under a traceback.

Pulumi's Python dynamic-provider server (`python -m pulumi.dynamic`, run as `__main__`)
answers every exception of a provider method with `traceback.format_exc()`, so a refused
preflight or a sha256 mismatch would read as a crash. In that process only, its `traceback`
is replaced by a stand-in whose `format_exc` gives the message of a `DockyardError` alone;
every other exception is a bug and keeps its full traceback.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

from dockyard_resources.errors import DockyardError


class _QuietTraceback:
    """The `traceback` module, except that expected failures print as their message."""

    def __getattr__(self, name: str) -> Any:
        return getattr(traceback, name)

    @staticmethod
    def format_exc(limit: int | None = None, chain: bool = True) -> str:
        error = sys.exc_info()[1]
        if isinstance(error, DockyardError):
            return str(error)
        return traceback.format_exc(limit=limit, chain=chain)


def install() -> bool:
    """Take effect in the dynamic-provider server; a no-op anywhere else."""
    server = sys.modules.get("__main__")
    if server is None or not hasattr(server, "_abort_with_traceback"):
        return False
    if getattr(server, "traceback", None) is traceback:
        server.traceback = _QuietTraceback()  # type: ignore[attr-defined]
    return True
