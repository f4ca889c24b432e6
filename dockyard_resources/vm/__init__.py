"""Local QEMU VMs: Debian image builder, runner and the `LocalVm` dynamic resource."""
