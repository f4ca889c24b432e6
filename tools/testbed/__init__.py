"""The test bed's choice of Docker and sysbox artifacts (test tooling, never product code)."""
