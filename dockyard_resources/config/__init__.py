"""The stack configuration contract: models, validation, network allocation, known artifacts."""

from dockyard_resources.config.errors import ConfigError, StackFileError
from dockyard_resources.config.models import (
    PROVISION_KINDS,
    ArtifactConfig,
    AwsProvision,
    ExistingProvision,
    HcloudProvision,
    HostConfig,
    InstanceConfig,
    Provision,
    QemuProvision,
)
from dockyard_resources.config.spec import (
    ArchArtifact,
    HostSpec,
    ResolvedArtifact,
    ResolvedInstance,
    resolve_artifacts,
)
from dockyard_resources.config.stackfile import (
    CheckedStack,
    check_stack_file,
    load_stack_document,
    load_stack_file,
    project_dir_of,
    validate_stack_config,
)
from dockyard_resources.config.validate import validate_hosts
from dockyard_resources.config.versions import (
    ARCHES,
    DEFAULT_VERSIONS,
    KNOWN_VERSIONS,
    Arch,
    ArtifactKind,
)

__all__ = [
    "ARCHES",
    "DEFAULT_VERSIONS",
    "KNOWN_VERSIONS",
    "PROVISION_KINDS",
    "Arch",
    "ArchArtifact",
    "ArtifactConfig",
    "ArtifactKind",
    "AwsProvision",
    "CheckedStack",
    "ConfigError",
    "ExistingProvision",
    "HcloudProvision",
    "HostConfig",
    "HostSpec",
    "InstanceConfig",
    "Provision",
    "QemuProvision",
    "ResolvedArtifact",
    "ResolvedInstance",
    "StackFileError",
    "check_stack_file",
    "load_stack_document",
    "load_stack_file",
    "project_dir_of",
    "resolve_artifacts",
    "validate_hosts",
    "validate_stack_config",
]
