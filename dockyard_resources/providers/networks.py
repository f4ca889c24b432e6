"""The provider of `NetworkAllocation` (`<host>-networks`), kept only for stacks that have one.

Earlier versions allocated each host's networks in this pure resource, from the stack's own
state; that could not see what other stacks hold on the host, so two stacks got the same
networks. Hosts now choose them under their lock (`hostops/network_claims.py`) and each
instance keeps its own (`config/network_request.py`), and the program no longer registers
this resource. The first `pulumi up` of such a stack deletes it: the engine runs the provider
stored in its state, which dill pickled by reference to this class, so the class must stay
importable under this name. Every method works on the properties alone (no I/O).
"""

from __future__ import annotations

from typing import Any

import pulumi.dynamic as dyn


class NetworkAllocationProvider(dyn.ResourceProvider):
    """Pure: echoes its properties; delete does nothing (there is nothing on any host)."""

    def create(self, props: dict[str, Any]) -> dyn.CreateResult:
        return dyn.CreateResult(f"{props.get('hostName')}-networks", dict(props))

    def update(self, _id: str, _olds: dict[str, Any], news: dict[str, Any]) -> dyn.UpdateResult:
        return dyn.UpdateResult(dict(news))

    def read(self, id_: str, props: dict[str, Any]) -> dyn.ReadResult:
        return dyn.ReadResult(id_, dict(props))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        return None
