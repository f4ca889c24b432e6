"""Dockyard's Pulumi program: all logic lives in `dockyard_resources.program`."""

from dockyard_resources.program import main

main()
