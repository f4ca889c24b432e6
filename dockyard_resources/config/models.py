"""Pydantic models of `dockyard:hosts` as written in a stack file (camelCase keys).

They check each value on its own; checks across values (overlapping networks, duplicate
prefixes, known versions) and network allocation happen in `validate.py`.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel

from dockyard_resources.config import values
from dockyard_resources.config.versions import Arch

PROVISION_KINDS: Final = ("existing", "qemu", "hcloud", "aws")
DEFAULT_SSH_PORT: Final = 22
# A local QEMU VM: defaults and bounds of its size, one place for the stack file, the
# `LocalVm` resource and the runner.
QEMU_DEFAULTS: Final = {"memoryMb": 4096, "cpus": 2, "diskGb": 20}
QEMU_LIMITS: Final = {"memoryMb": (1024, 1048576), "cpus": (1, 256), "diskGb": (8, 4096)}
ArtifactsMode = Literal["download", "upload"]

HostName = Annotated[str, BeforeValidator(values.host_name)]
Address = Annotated[str, BeforeValidator(values.address)]
UserName = Annotated[str, BeforeValidator(values.user_name)]
HostKey = Annotated[str, BeforeValidator(values.host_key)]
KeyFile = Annotated[str, BeforeValidator(values.private_key_file)]
SshCidr = Annotated[str, BeforeValidator(values.ssh_cidr)]
Version = Annotated[str, BeforeValidator(values.version)]
Sha256 = Annotated[str, BeforeValidator(values.sha256_hex)]
Prefix = Annotated[str, BeforeValidator(values.prefix)]
RootDir = Annotated[str, BeforeValidator(values.root_dir)]
BridgeInterface = Annotated[ipaddress.IPv4Interface, BeforeValidator(values.bridge_interface)]
FixedNetwork = Annotated[
    ipaddress.IPv4Network, BeforeValidator(lambda v: values.private_network(v, "172.22.147.0/24"))
]
PoolNetwork = Annotated[
    ipaddress.IPv4Network, BeforeValidator(lambda v: values.private_network(v, "172.28.0.0/16"))
]
PoolSize = Annotated[int, BeforeValidator(values.pool_size)]


class _Model(BaseModel):
    # Strict: no coercion, so `port: "22"`, `enabled: 1` or `allowSysboxRestart: "yes"` are
    # refused (with a quoting hint, validate.py) instead of silently read as 22 or true.
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, validate_by_name=True, frozen=True, strict=True
    )


# A YAML list arrives as a list, which strict mode refuses for a tuple; each item is still
# checked strictly by its own validator.
def _list_of(default: tuple[str, ...]) -> Any:
    return Field(default=default, strict=False)


def _non_empty_cidrs(cidrs: tuple[str, ...]) -> tuple[str, ...]:
    if not cidrs:
        raise ValueError("is empty, which would lock SSH out; list the ranges allowed to connect")
    return cidrs


class JumpHost(_Model):
    """A jump host (bastion) the host is reached through, like `ssh -J` or pulumi-command's
    `proxy`. Offered the host's own credentials; its key is pinned, never trusted on first
    use, so `hostKey` is required."""

    address: Address
    # None: 22, or ~/.ssh/config's Port when the host has sshConfig.
    port: int | None = Field(default=None, ge=1, le=65535)
    user: UserName = "root"
    host_key: HostKey

    def connection_props(self, ssh_config: bool = False) -> dict[str, Any]:
        """`connection.jumpHost`: with sshConfig, a port or user not written here comes from
        ~/.ssh/config."""
        props: dict[str, Any] = {"host": self.address, "hostKey": self.host_key}
        if self.port is not None or not ssh_config:
            props["port"] = self.port if self.port is not None else 22
        if "user" in self.model_fields_set or not ssh_config:
            props["user"] = self.user
        return props


def _pinned_behind_jump(jump: JumpHost | None, info: ValidationInfo) -> JumpHost | None:
    """Through a jump host the host's own key is pinned too (with sshConfig it may come from
    ~/.ssh/known_hosts instead)."""
    if jump is not None and info.data.get("host_key") is None and not info.data.get("ssh_config"):
        raise ValueError(
            "needs the host's hostKey too: a host behind a jump host is never trusted on first"
            " use; set provision.hostKey to its public key line (e.g. from `ssh-keyscan -t"
            " ed25519 ADDRESS` run on the jump host)"
        )
    return jump


class ExistingProvision(_Model):
    """A machine that already exists and answers SSH."""

    kind: Literal["existing"]
    address: Address
    # None: 22, or ~/.ssh/config's Port with sshConfig.
    port: int | None = Field(default=None, ge=1, le=65535)
    user: UserName = "root"
    host_key: HostKey | None = None
    # A machine that exists answers at once: a typo in address or port fails within this
    # many seconds instead of the long wait a machine that is still booting gets.
    connect_timeout: int = Field(default=30, ge=1, le=3600)
    # Resolve `address` through ~/.ssh/config on the machine running Pulumi (HostName, Port,
    # User, IdentityFile, ProxyJump, known_hosts); what is written here still wins.
    ssh_config: bool = False
    # A private key file on the machine running Pulumi: only the path reaches the state.
    private_key_file: KeyFile | None = None
    jump_host: JumpHost | None = None

    _jump_pins = field_validator("jump_host", mode="after")(_pinned_behind_jump)

    @property
    def ssh_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_SSH_PORT

    def connection_props(self) -> dict[str, Any]:
        """The non-secret part of the `connection` input of host resources."""
        props: dict[str, Any] = {
            "host": self.address,
            "connectDeadline": self.connect_timeout,
        }
        # With sshConfig, a user not written here comes from ~/.ssh/config (as for `ssh`).
        if "user" in self.model_fields_set or not self.ssh_config:
            props["user"] = self.user
        if self.port is not None or not self.ssh_config:
            props["port"] = self.ssh_port
        if self.ssh_config:
            props["sshConfig"] = True
        if self.host_key is not None:
            props["hostKey"] = self.host_key
        if self.private_key_file is not None:
            props["privateKeyFile"] = self.private_key_file
        if self.jump_host is not None:
            props["jumpHost"] = self.jump_host.connection_props(self.ssh_config)
        return props


class QemuProvision(_Model):
    """A local QEMU VM booted from a Debian image built on the machine running Pulumi."""

    kind: Literal["qemu"]
    memory_mb: int = Field(
        default=QEMU_DEFAULTS["memoryMb"],
        ge=QEMU_LIMITS["memoryMb"][0],
        le=QEMU_LIMITS["memoryMb"][1],
    )
    cpus: int = Field(
        default=QEMU_DEFAULTS["cpus"], ge=QEMU_LIMITS["cpus"][0], le=QEMU_LIMITS["cpus"][1]
    )
    disk_gb: int = Field(
        default=QEMU_DEFAULTS["diskGb"], ge=QEMU_LIMITS["diskGb"][0], le=QEMU_LIMITS["diskGb"][1]
    )
    suite: Literal["trixie", "bookworm"] = "trixie"


class HcloudProvision(_Model):
    """A Hetzner Cloud server."""

    kind: Literal["hcloud"]
    server_type: str = Field(default="cx22", min_length=1)
    location: str = Field(default="fsn1", min_length=1)
    image: str = Field(default="ubuntu-24.04", min_length=1)
    # The architecture when config/arch.py's rule cannot know the server type (None: the rule).
    arch: Arch | None = None
    allowed_ssh_cidrs: tuple[SshCidr, ...] = _list_of(("0.0.0.0/0",))
    # Reach the server through this jump host (its public address; allowedSshCidrs can then
    # be the jump host's own address).
    jump_host: JumpHost | None = None

    @field_validator("allowed_ssh_cidrs", mode="after")
    @classmethod
    def _some_cidrs(cls, cidrs: tuple[str, ...]) -> tuple[str, ...]:
        return _non_empty_cidrs(cidrs)


class AwsProvision(_Model):
    """An AWS EC2 instance."""

    kind: Literal["aws"]
    region: Annotated[str, BeforeValidator(values.aws_region)]
    instance_type: str = Field(default="t3.medium", min_length=1)
    subnet_id: Annotated[str, BeforeValidator(values.aws_subnet_id)] | None = None
    allowed_ssh_cidrs: tuple[SshCidr, ...] = _list_of(("0.0.0.0/0",))
    disk_gb: int = Field(default=20, ge=8, le=16384)
    # The architecture when config/arch.py's rule cannot know the instance type (None: the
    # rule). Only checks the artifacts before the server exists; the AMI follows the type.
    arch: Arch | None = None
    # Reach the instance at its private address through this jump host (e.g. a bastion in
    # the same VPC): the instance needs no public SSH.
    jump_host: JumpHost | None = None

    @field_validator("allowed_ssh_cidrs", mode="after")
    @classmethod
    def _some_cidrs(cls, cidrs: tuple[str, ...]) -> tuple[str, ...]:
        return _non_empty_cidrs(cidrs)


Provision = Annotated[
    ExistingProvision | QemuProvision | HcloudProvision | AwsProvision,
    Field(discriminator="kind"),
]


class ArtifactConfig(_Model):
    """Which Docker or sysbox build to install, with optional mirror and checksum overrides."""

    version: Version | None = None
    url: str | None = Field(default=None, min_length=1)
    sha256: Sha256 | None = None
    sha256_file: str | None = Field(default=None, min_length=1)


class InstanceConfig(_Model):
    """One isolated dockerd (with its own containerd, bridge and address pool) on a host."""

    prefix: Prefix
    root: RootDir
    bridge_cidr: BridgeInterface | None = None
    fixed_cidr: FixedNetwork | None = None
    pool_base: PoolNetwork | None = None
    pool_size: PoolSize | None = None
    members: tuple[UserName, ...] = _list_of(())
    # False lets other instances' containers (and other host interfaces) open connections to
    # this instance's containers; see docs/security.md. Strict: only true or false.
    network_isolation: StrictBool = True
    # false: the instance is parked (unit stopped and disabled); data, user, group and
    # networks stay, and `true` brings it back with its containers.
    enabled: StrictBool = True
    # A change of root (or of the machine) replaces the instance and deletes its data root:
    # refused at preview unless this is true (docs/instances.md, "No data loss without a yes").
    allow_data_loss: StrictBool = False
    # Pulumi's `protect`: the engine refuses to delete or replace the instance at all.
    protect: StrictBool = False

    @field_validator("members", mode="after")
    @classmethod
    def _unique_members(cls, members: tuple[str, ...]) -> tuple[str, ...]:
        duplicates = sorted({m for m in members if members.count(m) > 1})
        if duplicates:
            raise ValueError(f"lists {', '.join(duplicates)} more than once; list each user once")
        return members


class HostConfig(_Model):
    """One machine. `instances` are validated one by one (see `validate.py`) so that every
    instance's errors are reported even when a sibling is broken."""

    name: HostName
    provision: Provision
    docker: ArtifactConfig = ArtifactConfig()
    sysbox: ArtifactConfig = ArtifactConfig()
    artifacts: ArtifactsMode = "download"
    allow_sysbox_restart: bool = False
    instances: list[Any] = []
