"""Build a tiny busybox image as a `docker save` archive, for `docker load` (no registry).

The only input is a statically linked busybox binary (e.g. /bin/busybox of Debian's
busybox-static on the test VM). The archive uses the classic layout `docker load` accepts:
manifest.json, an image config and one layer tarball, built reproducibly in memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

DEFAULT_TAG = "dockyard-test/busybox:1"
# Applets the tests use; each becomes a symlink to /bin/busybox.
APPLETS = (
    "sh", "cat", "echo", "env", "hostname", "id", "ls", "nc", "nslookup", "ping",
    "sleep", "true", "false", "wget", "ip", "ps", "grep", "test", "uname",
)  # fmt: skip
_MTIME = 1_700_000_000


def _add(tar: tarfile.TarFile, name: str, *, data: bytes | None = None, **attrs: object) -> None:
    info = tarfile.TarInfo(name)
    info.mtime = _MTIME
    for key, value in attrs.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def layer_tar(busybox: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for directory in ("bin", "etc", "tmp", "root"):
            mode = 0o1777 if directory == "tmp" else 0o755
            _add(tar, directory, type=tarfile.DIRTYPE, mode=mode)
        _add(tar, "bin/busybox", data=busybox, mode=0o755)
        for applet in APPLETS:
            _add(tar, f"bin/{applet}", type=tarfile.SYMTYPE, linkname="busybox", mode=0o777)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        _add(tar, "etc/passwd", data=passwd, mode=0o644)
        _add(tar, "etc/group", data=b"root:x:0:\nnogroup:x:65534:\n", mode=0o644)
    return buf.getvalue()


def image_archive(busybox: bytes, tag: str = DEFAULT_TAG) -> bytes:
    """The `docker save`-style archive holding one image tagged `tag`."""
    if busybox[:4] != b"\x7fELF":
        raise ValueError("busybox must be an ELF binary (a static busybox, e.g. busybox-static)")
    layer = layer_tar(busybox)
    layer_sha = hashlib.sha256(layer).hexdigest()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "created": "2023-11-14T22:13:20Z",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_sha}"]},
        "history": [{"created": "2023-11-14T22:13:20Z", "created_by": "dockyard testimage"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": [f"{layer_sha}/layer.tar"]}]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        _add(tar, config_name, data=config_bytes, mode=0o644)
        _add(tar, layer_sha, type=tarfile.DIRTYPE, mode=0o755)
        _add(tar, f"{layer_sha}/VERSION", data=b"1.0", mode=0o644)
        _add(tar, f"{layer_sha}/layer.tar", data=layer, mode=0o644)
        _add(tar, "manifest.json", data=json.dumps(manifest).encode(), mode=0o644)
    return buf.getvalue()
