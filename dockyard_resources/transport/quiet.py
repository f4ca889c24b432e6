"""Keep paramiko's own logging out of the user's output."""

from __future__ import annotations

import logging


def silence_paramiko() -> None:
    """paramiko logs every failed connection attempt (with a traceback) at ERROR level.
    While a host boots those are expected; callers report the final outcome themselves."""
    logger = logging.getLogger("paramiko")
    if not any(isinstance(h, logging.NullHandler) for h in logger.handlers):
        logger.addHandler(logging.NullHandler())
    logger.propagate = False
