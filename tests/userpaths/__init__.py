"""Helpers for the tests that take a user's path as printed: a fresh clone, a GitHub Actions
workflow's steps, a doc's command block."""
