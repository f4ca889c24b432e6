"""Pure rendering of host-side scripts, unit files and configs (no I/O)."""
