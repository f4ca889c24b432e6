"""The Debian packages the machine running Pulumi needs for a stack, by provision kind.

Only a `qemu` host runs anything on that machine (the VM and the build of its image); the
other kinds are reached over SSH and need no package and no root there. Read by
`scripts/system-deps.sh` (`make setup`, `make up`), one package a line:

    python -m dockyard_resources.system_packages stacks/Pulumi.<stack>.yaml
    python -m dockyard_resources.system_packages --all      # every kind (the test suite)

The kinds are read from the file as written, without validating it: `make up` validates
right after, and a stack whose artifacts are prepared later (the testbed) is not valid yet.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from dockyard_resources.config import PROVISION_KINDS, StackFileError, load_stack_file
from dockyard_resources.config.stackfile import NAMESPACE

PACKAGES_BY_KIND: Final[dict[str, tuple[str, ...]]] = {
    "qemu": (
        "qemu-system-x86",  # the VM itself
        "qemu-utils",  # qemu-img: disk overlays and snapshots
        "ipxe-qemu",  # the virtio-net option ROM QEMU loads at start
        "debootstrap",  # builds the Debian VM image (as root, once)
        "debian-archive-keyring",  # what debootstrap checks Debian's packages with (Ubuntu)
        "e2fsprogs",  # mkfs.ext4 -d: image and seed disk without loop mounts
    ),
}


def provision_kinds(config: dict[str, Any]) -> set[str]:
    """The provision kinds a stack's `config:` names (unknown ones are validation's job)."""
    hosts = config.get(f"{NAMESPACE}:hosts")
    kinds: set[str] = set()
    for host in hosts if isinstance(hosts, list) else ():
        provision = host.get("provision") if isinstance(host, dict) else None
        kind = provision.get("kind") if isinstance(provision, dict) else None
        if kind in PROVISION_KINDS:
            kinds.add(kind)
    return kinds


def packages_for(kinds: Iterable[str]) -> list[str]:
    """The packages `kinds` need, in a stable order, each once."""
    wanted = set(kinds)
    return [
        package
        for kind in PROVISION_KINDS
        if kind in wanted
        for package in PACKAGES_BY_KIND.get(kind, ())
    ]


def main(argv: Sequence[str]) -> int:
    if list(argv) == ["--all"]:
        kinds: set[str] = set(PROVISION_KINDS)
    elif len(argv) == 1 and not argv[0].startswith("-"):
        try:
            kinds = provision_kinds(load_stack_file(Path(argv[0])))
        except StackFileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    else:
        print("usage: python -m dockyard_resources.system_packages FILE | --all", file=sys.stderr)
        return 2
    for package in packages_for(kinds):
        print(package)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
