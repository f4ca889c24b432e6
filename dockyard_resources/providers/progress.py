"""Step lines of a resource during `pulumi up`, each prefixed with the resource it is about.

A dynamic provider cannot log to its own resource (a known Pulumi limitation): its lines
reach the output as info lines of the stack, so the prefix is what ties them to a resource.
"""

from __future__ import annotations

from collections.abc import Callable

import pulumi

Report = Callable[[str], None]


def reporter(kind: str, name: object) -> Report:
    """`report("starting")` prints `info: <kind> <name>: starting`."""

    def report(message: str) -> None:
        pulumi.log.info(f"{kind} {name}: {message}")

    return report
