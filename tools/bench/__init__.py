"""The provisioning benchmark (`python -m dockyard_resources bench`, `make bench`).

It measures and reports; it never fails on a time. See docs/performance.md.
"""
