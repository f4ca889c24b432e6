"""Step lines of a resource during `pulumi up`, each prefixed with the resource it is about.

A dynamic provider cannot log to its own resource (a known Pulumi limitation): its lines
reach the output as info lines of the stack, so the prefix is what ties them to a resource.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import pulumi

from dockyard_resources.transport import trace

Report = Callable[[str], None]
Method = TypeVar("Method", bound=Callable[..., Any])


def reporter(kind: str, name: object) -> Report:
    """`report("starting")` prints `info: <kind> <name>: starting`."""

    def report(message: str) -> None:
        pulumi.log.info(f"{kind} {name}: {message}")

    return report


def traced(kind: str, name_of: Callable[[Any], object]) -> Callable[[Method], Method]:
    """Tag a provider method's SSH work with its resource (`<kind> <name>`) in the
    transport's trace; `name_of` gets the method's last argument, the properties."""

    def wrap(method: Method) -> Method:
        @functools.wraps(method)
        def inner(self: object, *args: Any) -> Any:
            with trace.for_resource(f"{kind} {name_of(args[-1])}"):
                return method(self, *args)

        return inner  # type: ignore[return-value]

    return wrap
