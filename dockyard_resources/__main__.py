"""`python -m dockyard_resources ...`: see dockyard_resources/cli.py."""

from dockyard_resources.cli import main

raise SystemExit(main())
