"""A dynamic provider that writes a marker file, so tests can see create/delete happen.

It lives in an importable module (not __main__) like the real providers, so the
dynamic-provider process must import it by reference from the program directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, Resource, ResourceProvider


class MarkerFileProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        path = Path(props["path"])
        data = props["content"].encode()
        path.write_bytes(data)
        outs = {**props, "bytesWritten": len(data)}
        return CreateResult(id_=str(path), outs=outs)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        changed = [key for key in ("path", "content") if olds.get(key) != news.get(key)]
        return DiffResult(changes=bool(changed), replaces=changed, delete_before_replace=True)

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        Path(props["path"]).unlink(missing_ok=True)


class MarkerFile(Resource):
    # Output attributes are named after the camelCase property keys.
    bytesWritten: pulumi.Output[int]

    def __init__(
        self, name: str, *, path: str, content: str, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props = {"path": path, "content": content, "bytesWritten": None}
        super().__init__(MarkerFileProvider(), name, props, opts)
