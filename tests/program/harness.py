"""Run the Dockyard program under `pulumi.runtime.set_mocks` and record what it registers.

The stock mock monitor drops parents, dependencies and secret options; `RecordingMonitor`
keeps them. `FakeEngine` answers like the providers would: echoes inputs and adds the
outputs each resource type is documented to produce.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings

from dockyard_resources import program
from dockyard_resources.components import DockyardHost
from dockyard_resources.vm.keys import generate_ed25519

PROJECT = "dockyard"
STACK = "test"
# Dynamic resources register as pulumi-python:dynamic[/<module>]:<name>.
DYNAMIC_PREFIX = "pulumi-python:dynamic"
HOST_TYPE = "dockyard:index:Host"

# What a host answers for an instance's networks that the stack file leaves out (the real
# provider has them chosen on the host: hostops/network_claims.py).
HOST_NETWORKS: dict[str, Any] = {
    "bridgeCidr": "172.16.7.1/24",
    "fixedCidr": "172.16.7.0/24",
    "poolBase": "172.25.0.0/19",
    "poolSize": 24,
}
SERVER_IP = {"hcloud": "198.51.100.7", "aws": "203.0.113.9"}
AWS_PRIVATE_IP = "10.0.1.9"
VM_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeVmHostKey"
SEEN_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeSeenHostKey"
VM_PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\nvm-login-key\n-----END OPENSSH PRIVATE KEY-----\n"
)


def new_ed25519_key() -> tuple[str, str]:
    """A real key pair: (OpenSSH private key, public key line without a comment)."""
    pair = generate_ed25519("test")
    return pair.private_openssh, " ".join(pair.public_line.split()[:2])


def next_host_key(name: str) -> str:
    """The public key a NewHostKey named `name` reports (the host generates it)."""
    return f"ssh-ed25519 AAAAnext{name.replace('-', '')}"


def tls_private_key(name: str) -> str:
    return f"-----BEGIN OPENSSH PRIVATE KEY-----\ntls-{name}\n-----END OPENSSH PRIVATE KEY-----\n"


def tls_public_key(name: str) -> str:
    # The tls provider ends the line with a newline; the program must strip it.
    return f"ssh-ed25519 AAAAtls{name.replace('-', '')}\n"


# Cloud resource type -> (id, outputs added to the echoed inputs).
CLOUD_RESULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "hcloud:index/firewall:Firewall": ("4711", {}),
    "hcloud:index/server:Server": ("815", {"ipv4Address": SERVER_IP["hcloud"]}),
    "aws:ec2/securityGroup:SecurityGroup": ("sg-0123", {}),
    "aws:ec2/instance:Instance": (
        "i-0123",
        {"publicIp": SERVER_IP["aws"], "privateIp": AWS_PRIVATE_IP},
    ),
}


@dataclass
class Registration:
    type: str
    name: str
    urn: str
    parent: str
    dependencies: list[str]
    additional_secret_outputs: list[str]
    # Secret values stay wrapped (`rpc.is_rpc_secret`), everything else is plain.
    inputs: dict[str, Any]
    provider: str
    protect: bool = False

    def plain(self, key: str) -> Any:
        return unwrap(self.inputs.get(key))


def unwrap(value: Any) -> Any:
    """The value with every secret marker removed (deeply)."""
    if rpc.is_rpc_secret(value):
        return unwrap(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def is_secret(value: Any) -> bool:
    return bool(rpc.is_rpc_secret(value))


# The input that tells each Dockyard dynamic resource apart (they all share one type).
_KIND_BY_INPUT = (
    ("vmName", "LocalVm"),
    ("sysbox", "SysboxHost"),
    ("prefix", "DockyardInstance"),
    ("newHostKey", "HostKeyRotation"),
    ("serverId", "NewHostKey"),
    ("throwaway", "MetadataBlock"),
)


def dynamic_kind(inputs: dict[str, Any]) -> str:
    """Which Dockyard dynamic resource a registration is (they all share one type)."""
    for key, kind in _KIND_BY_INPUT:
        if key in inputs:
            return kind
    raise AssertionError(f"unknown dynamic resource with inputs {sorted(inputs)}")


# Outputs the cloud hosts' NewHostKey, HostKeyRotation and MetadataBlock add to their inputs.
_CLOUD_HARDENING: dict[str, Any] = {
    "NewHostKey": lambda name, _inputs: {
        "publicKey": next_host_key(name),
        "fingerprint": f"SHA256:fp-{name}",
    },
    "HostKeyRotation": lambda _name, inputs: {
        "hostKey": inputs["newHostKey"],
        "hostKeyFingerprint": "SHA256:rotated",
        "drift": [],
    },
    "MetadataBlock": lambda _name, _inputs: {"drift": []},
}


class FakeEngine(pulumi_mocks.Mocks):
    """Outputs of every resource the program can register, as the real providers give them
    (an instance's networks as a host would choose them for a new one: `HOST_NETWORKS`)."""

    def __init__(self) -> None:
        self.calls: list[pulumi_mocks.MockCallArgs] = []
        self.instance_arches: list[str] = ["x86_64"]

    def new_resource(
        self, args: pulumi_mocks.MockResourceArgs
    ) -> tuple[str | None, dict[str, Any]]:
        inputs = dict(args.inputs)
        typ = args.typ
        if typ.startswith(DYNAMIC_PREFIX):
            return self._dynamic(args.name, inputs)
        if typ == "tls:index/privateKey:PrivateKey":
            return f"{args.name}-id", {
                **inputs,
                "privateKeyOpenssh": tls_private_key(args.name),
                "publicKeyOpenssh": tls_public_key(args.name),
                "publicKeyFingerprintSha256": f"SHA256:fp-{args.name}",
            }
        if typ in CLOUD_RESULTS:
            resource_id, extra = CLOUD_RESULTS[typ]
            return resource_id, {**inputs, **extra}
        return f"{args.name}-id", inputs

    def _dynamic(self, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        kind = dynamic_kind(inputs)
        if kind == "LocalVm":
            return name, {
                **inputs,
                "host": "127.0.0.1",
                "port": 2222,
                "user": "root",
                "privateKey": VM_PRIVATE_KEY,
                "hostKey": VM_HOST_KEY,
                "hostKeyFingerprint": "SHA256:vm",
                "pid": 4242,
                "overlayPath": f"/cache/vms/{inputs['vmName']}/overlay.qcow2",
            }
        if kind in _CLOUD_HARDENING:
            return name, {**inputs, **_CLOUD_HARDENING[kind](name, inputs)}
        if kind == "SysboxHost":
            pinned = unwrap(inputs["connection"]).get("hostKey")
            return name, {
                **inputs,
                "distro": "debian-13",
                "kernel": "6.12.0",
                "arch": "x86_64",
                "dockerVersion": unwrap(inputs["docker"])["version"],
                "sysboxVersion": unwrap(inputs["sysbox"])["version"],
                "dockerDir": "/usr/local/lib/dockyard/docker-29.2.1",
                "sysboxDir": "/usr/local/lib/dockyard/sysbox-0.6.7",
                "dockerSha256": "d" * 64,
                "sysboxSha256": "5" * 64,
                "hostKey": pinned or SEEN_HOST_KEY,
                "hostKeyFingerprint": "SHA256:seen",
            }
        prefix = inputs["prefix"]
        root = inputs["root"]
        networks = {**HOST_NETWORKS, **{k: v for k, v in inputs.items() if k in HOST_NETWORKS}}
        return name, {
            **inputs,
            **networks,
            "socketPath": f"{root}/docker.sock",
            "dockerHost": f"unix://{root}/docker.sock",
            "group": f"{prefix}docker",
            "serviceName": f"{prefix}docker.service",
            "bridgeName": f"{prefix}docker0",
            "networks": {"bridge": networks["bridgeCidr"], "pool": networks["poolBase"]},
            "sshForward": f"ssh -L /tmp/{prefix}docker.sock:{root}/docker.sock host",
        }

    def call(self, args: pulumi_mocks.MockCallArgs) -> tuple[dict[str, Any], list[Any]]:
        self.calls.append(args)
        if args.token == "aws:ec2/getInstanceType:getInstanceType":
            return {"supportedArchitectures": self.instance_arches}, []
        if args.token == "aws:ec2/getAmi:getAmi":
            return {"id": "ami-0noble", "name": "ubuntu-noble"}, []
        if args.token == "aws:ec2/getSubnet:getSubnet":
            return {"id": args.args["id"], "vpcId": "vpc-0abc"}, []
        raise AssertionError(f"unexpected invoke {args.token}")


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi_mocks.Mocks) -> None:
        super().__init__(mocks)
        self.registrations: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                Registration(
                    type=request.type,
                    name=request.name,
                    urn=self.make_urn(request.parent, request.type, request.name),
                    parent=request.parent,
                    dependencies=list(request.dependencies),
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                    inputs=rpc.deserialize_properties(request.object),
                    provider=request.provider,
                    protect=bool(request.protect),
                )
            )
        return super().RegisterResource(request)


@dataclass
class ProgramRun:
    engine: FakeEngine
    registrations: list[Registration]
    hosts: dict[str, DockyardHost]
    outputs: dict[str, Any]
    outputs_secret: bool
    errors: list[BaseException] = field(default_factory=list)

    def named(self, name: str) -> Registration:
        found = [r for r in self.registrations if r.name == name]
        assert len(found) == 1, f"{name}: {len(found)} registrations"
        return found[0]

    def of_type(self, typ: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == typ]

    def dynamic(self, kind: str) -> list[Registration]:
        return [
            r
            for r in self.registrations
            if r.type.startswith(DYNAMIC_PREFIX) and dynamic_kind(unwrap(r.inputs)) == kind
        ]

    def urn(self, name: str) -> str:
        return self.named(name).urn


def run_program(
    hosts: Any,
    *,
    ssh_private_key: str | None = None,
    ssh_private_key_passphrase: str | None = None,
    engine: FakeEngine | None = None,
    monitor: RecordingMonitor | None = None,
) -> ProgramRun:
    """Run `program.main()` against mocks with this `dockyard:hosts` value (isolated: the
    Pulumi runtime's globals are reset first)."""
    engine = engine or FakeEngine()
    monitor = monitor or RecordingMonitor(engine)
    settings.reset_options(project=PROJECT, stack=STACK)
    pulumi.runtime.set_mocks(engine, project=PROJECT, stack=STACK, preview=False, monitor=monitor)
    config = {"dockyard:hosts": json.dumps(hosts)}
    secret_keys = []
    if ssh_private_key is not None:
        config["dockyard:sshPrivateKey"] = ssh_private_key
        secret_keys.append("dockyard:sshPrivateKey")
    if ssh_private_key_passphrase is not None:
        config["dockyard:sshPrivateKeyPassphrase"] = ssh_private_key_passphrase
        secret_keys.append("dockyard:sshPrivateKeyPassphrase")
    pulumi.runtime.set_all_config(config, secret_keys)

    captured: dict[str, Any] = {}

    @pulumi.runtime.test
    def body() -> pulumi.Output[None]:
        captured["hosts"] = program.main()
        root = settings.get_root_resource()
        exported = pulumi.Output.from_input(root.outputs["hosts"])  # type: ignore[union-attr]

        async def resolve() -> None:
            captured["secret"] = await exported.is_secret()
            captured["outputs"] = await exported.future()

        return pulumi.Output.from_input(resolve())  # type: ignore[arg-type]

    body()
    return ProgramRun(
        engine=engine,
        registrations=monitor.registrations,
        hosts=captured["hosts"],
        outputs=captured["outputs"],
        outputs_secret=captured["secret"],
    )
