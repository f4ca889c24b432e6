"""Dockyard: isolated Docker daemons with sysbox on Linux hosts, provisioned with Pulumi.

As a library in another Pulumi program (docs/library.md):

    from dockyard_resources import DockyardHost
    DockyardHost.from_config({"name": "build-1", "provision": {...}, "instances": [...]})

`SysboxHost` and `DockyardInstance` are the two dynamic resources underneath. Names are
imported on first use, so the command line (`dockyard validate`) does not load Pulumi's
resource machinery.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "DockyardHost": "dockyard_resources.components",
    "SysboxHost": "dockyard_resources.providers.sysbox_host",
    "DockyardInstance": "dockyard_resources.providers.instance",
}
__all__ = ["DockyardHost", "DockyardInstance", "SysboxHost"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dockyard_resources' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
