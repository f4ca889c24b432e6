"""A program of your own with one Dockyard host: an existing machine with two instances."""

import pulumi

from dockyard_resources import DockyardHost

config = pulumi.Config()
host = DockyardHost.from_config(
    {
        "name": "build-1",
        "provision": {
            "kind": "existing",
            "address": config.require("address"),
            "port": config.get_int("port") or 22,
            "user": config.get("user") or "root",
            "hostKey": config.require("hostKey"),
        },
        "instances": [
            {"prefix": "ci1_", "root": "/srv/ci1"},
            {"prefix": "ci2_", "root": "/srv/ci2", "protect": True},
        ],
    },
    ssh_private_key=config.require_secret("sshPrivateKey"),
)
pulumi.export("dockerHosts", {p: i.dockerHost for p, i in host.instances.items()})
