"""Engine smoke program: one dynamic resource, stack config in, typed outputs out."""

from pathlib import Path

import pulumi
from marker_provider import MarkerFile

config = pulumi.Config()
marker_dir = Path(config.require("markerDir"))
token = config.require_secret("token")

marker = MarkerFile(
    "marker",
    path=str(marker_dir / "marker.txt"),
    content=config.get("content") or "hello from dockyard",
)

pulumi.export("markerPath", marker.id)
pulumi.export("bytesWritten", marker.bytesWritten)
pulumi.export("stats", {"count": 3, "ratio": 0.5, "enabled": True})
pulumi.export("tokenLength", token.apply(len))
