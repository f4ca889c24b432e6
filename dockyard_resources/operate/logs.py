"""`python -m dockyard_resources logs HOST/PREFIX [-f] [--lines N]`: an instance's logs.

The unit's journal, then the tails of its `dockerd.log` and `containerd.log`. With `-f` the
three are followed until Ctrl-C, which closes the SSH channel and with it the remote tail.
"""

from __future__ import annotations

import shlex
from typing import TextIO

from dockyard_resources.operate.deployed import Host, Instance
from dockyard_resources.transport import session


def logs_script(inst: Instance, lines: int, follow: bool) -> str:
    unit = shlex.quote(inst.service_name)
    logs = [shlex.quote(f"{inst.root}/log/{name}.log") for name in ("dockerd", "containerd")]
    if follow:
        return (
            f"journalctl --no-pager -o short-iso -f -n {lines} -u {unit} &\n"
            f"tail -n {lines} -F {' '.join(logs)} &\n"
            "wait\n"
        )
    parts = [f"echo '==> journal of {inst.service_name}'"]
    parts.append(f"journalctl --no-pager -o short-iso -n {lines} -u {unit}")
    for log in logs:
        parts.append(f"echo; echo '==> '{log}; tail -n {lines} {log} 2>&1 || true")
    return "\n".join(parts) + "\n"


def print_logs(host: Host, inst: Instance, out: TextIO, *, lines: int, follow: bool) -> int:
    def echo(_stream: str, line: str) -> None:
        print(line, file=out, flush=True)

    try:
        session(host.target).run(
            logs_script(inst, lines, follow),
            step=f"logs of {inst.service_name}",
            timeout=None if follow else 120,
            on_line=echo,
            check=not follow,
        )
    except KeyboardInterrupt:
        session(host.target).drop_connection()  # ends the remote journalctl/tail
    return 0
