"""Offline STAND-IN artifacts for tests (see build.py)."""
