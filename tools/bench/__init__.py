"""The provisioning benchmark (`python -m tools.bench`, `make bench`).

It measures and reports; it never fails on a time. See docs/performance.md.
"""
