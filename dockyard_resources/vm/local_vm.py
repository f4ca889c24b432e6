"""`LocalVm`: a Pulumi dynamic resource for a QEMU VM on the machine running Pulumi.

The VM lives only as long as that machine keeps its QEMU process: a reboot of
the machine, or another machine running the same stack, leaves the resource
in state but the VM gone. `pulumi refresh` then drops it (read reports it
missing) and the next `pulumi up` boots it again from its kept overlay disk,
with the same keys. Its files live in `${DOCKYARD_CACHE}/vms/<vmName>/`.
"""

from __future__ import annotations

import re
from typing import Any

import pulumi
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    Resource,
    ResourceProvider,
)

from dockyard_resources.config.models import QEMU_DEFAULTS, QEMU_LIMITS
from dockyard_resources.providers import quiet_errors
from dockyard_resources.providers.inputs import is_unknown, whole_number
from dockyard_resources.providers.progress import reporter
from dockyard_resources.vm import image, keys, runner

quiet_errors.install()

VM_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
INPUT_KEYS = ("vmName", "memoryMb", "cpus", "diskGb", "suite")
DEFAULTS: dict[str, Any] = {**QEMU_DEFAULTS, "suite": image.DEFAULT_SUITE}
LIMITS = QEMU_LIMITS
SECRET_OUTPUTS = ["privateKey"]


def spec_from_props(props: dict[str, Any]) -> runner.VmSpec:
    """Build a VmSpec; Pulumi hands numbers over as floats, so coerce them."""
    return runner.VmSpec(
        name=str(props["vmName"]),
        memory_mb=int(props.get("memoryMb", DEFAULTS["memoryMb"])),
        cpus=int(props.get("cpus", DEFAULTS["cpus"])),
        disk_gb=int(props.get("diskGb", DEFAULTS["diskGb"])),
        suite=str(props.get("suite", DEFAULTS["suite"])),
    )


def outputs_for(vm: runner.Vm, inputs: dict[str, Any]) -> dict[str, Any]:
    record = vm.record()
    return {
        **{key: inputs[key] for key in INPUT_KEYS if key in inputs},
        "host": runner.SSH_HOST,
        "port": record.port,
        "user": runner.ROOT_USER,
        "privateKey": vm.private_key,
        "hostKey": record.host_key,
        "hostKeyFingerprint": keys.fingerprint(record.host_key),
        "pid": record.pid,
        "overlayPath": str(vm.overlay),
    }


class LocalVmProvider(ResourceProvider):
    """Keeps nothing on the instance: all state is in the VM's directory and Pulumi state."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        failures: list[CheckFailure] = []
        inputs = {**DEFAULTS, **{k: v for k, v in news.items() if v is not None}}
        name = inputs.get("vmName")
        if not isinstance(name, str) or not VM_NAME.match(name):
            failures.append(
                CheckFailure("vmName", "must match [a-z0-9][a-z0-9-]{0,62} (it names a directory)")
            )
        for key, (low, high) in LIMITS.items():
            value = inputs.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if value != int(value) or not low <= int(value) <= high:
                    failures.append(CheckFailure(key, f"must be a whole number {low}..{high}"))
                else:
                    inputs[key] = int(value)
            elif not _unknown(value):
                failures.append(CheckFailure(key, "must be a number"))
        suite = inputs.get("suite")
        if not _unknown(suite) and suite not in image.SUPPORTED_SUITES:
            failures.append(
                CheckFailure("suite", f"must be one of {', '.join(image.SUPPORTED_SUITES)}")
            )
        return CheckResult(inputs, failures)

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        # Every input shapes the VM itself: any change means a new VM. The old
        # one must go first because both would use the same state directory.
        changed = [
            key for key in INPUT_KEYS if whole_number(olds.get(key)) != whole_number(news.get(key))
        ]
        return DiffResult(
            changes=bool(changed),
            replaces=changed,
            stables=[],
            delete_before_replace=True,
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        spec = spec_from_props(props)
        vm = runner.launch(spec, log=reporter("LocalVm", spec.name))
        return CreateResult(spec.name, outputs_for(vm, props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        vm = runner.vm_for(id_)
        if not vm.is_alive():
            return ReadResult("", {})  # gone: refresh drops it, the next up boots it again
        return ReadResult(id_, outputs_for(vm, props))

    def delete(self, id_: str, _props: dict[str, Any]) -> None:
        runner.vm_for(id_).destroy()


def _unknown(value: Any) -> bool:
    # Absent (defaults apply) or not known during preview.
    return value is None or is_unknown(value)


# The type VMs had before they were named: kept as an alias (no replace of a running VM).
UNNAMED_DYNAMIC_TYPE = "pulumi-python:dynamic:Resource"


class LocalVm(Resource, module="dockyard", name="LocalVm"):
    """A Debian VM under QEMU on this machine, reachable over SSH on 127.0.0.1:<port>."""

    host: pulumi.Output[str]
    port: pulumi.Output[int]
    user: pulumi.Output[str]
    privateKey: pulumi.Output[str]
    hostKey: pulumi.Output[str]
    hostKeyFingerprint: pulumi.Output[str]
    pid: pulumi.Output[int]
    overlayPath: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        *,
        vm_name: pulumi.Input[str],
        memory_mb: pulumi.Input[int] = DEFAULTS["memoryMb"],
        cpus: pulumi.Input[int] = DEFAULTS["cpus"],
        disk_gb: pulumi.Input[int] = DEFAULTS["diskGb"],
        suite: pulumi.Input[str] = DEFAULTS["suite"],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "vmName": vm_name,
            "memoryMb": memory_mb,
            "cpus": cpus,
            "diskGb": disk_gb,
            "suite": suite,
            "host": None,
            "port": None,
            "user": None,
            "privateKey": None,
            "hostKey": None,
            "hostKeyFingerprint": None,
            "pid": None,
            "overlayPath": None,
        }
        defaults = pulumi.ResourceOptions(
            additional_secret_outputs=SECRET_OUTPUTS,
            aliases=[pulumi.Alias(type_=UNNAMED_DYNAMIC_TYPE)],
        )
        super().__init__(
            LocalVmProvider(),
            resource_name,
            props,
            pulumi.ResourceOptions.merge(defaults, opts),
        )

    def connection(self) -> pulumi.Output[dict[str, Any]]:
        """The `connection` input of host resources, with the VM's host key pinned."""
        return pulumi.Output.all(
            self.host, self.port, self.user, self.privateKey, self.hostKey
        ).apply(
            lambda values: {
                "host": values[0],
                "port": values[1],
                "user": values[2],
                "privateKey": values[3],
                "hostKey": values[4],
            }
        )
