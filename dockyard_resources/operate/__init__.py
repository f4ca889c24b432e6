"""Day-2 operations on a deployed stack: status, tunnel, logs."""
