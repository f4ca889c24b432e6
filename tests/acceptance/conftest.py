"""The acceptance suite runs against a DEPLOYED stack: `pytest tests/acceptance --stack NAME`.

Options say which stack (and where its project lives), which Docker-in-Docker image to use,
and whether the destructive checks (destroy, reboot) may run. Every check prints its own
time and the suite prints the total; a failing check gets the host-side evidence (unit
status, journal tail, the instance's iptables rules) attached to its report.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dockyard_resources.operate.deployed import DeployedStack, Host, open_stack
from tests.acceptance.stack import shell_of

_TIMES: list[tuple[str, float, str]] = []
_STARTED = time.monotonic()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dockyard acceptance")
    group.addoption("--stack", help="the deployed stack to check (required)")
    group.addoption(
        "--project-dir",
        default=None,
        help="directory of the stack's Pulumi.yaml (default: the stack's `make up` project"
        " directory when there is one, else this checkout); the backend is the one `pulumi`"
        " would use (docs/operations.md)",
    )
    group.addoption(
        "--dind-image",
        default="auto",
        help="Docker-in-Docker image: `local` (built here and uploaded, offline), an image"
        " reference to pull on the host (e.g. docker:26.1-dind), or `auto` (local for qemu"
        " hosts, docker:26.1-dind otherwise)",
    )
    group.addoption(
        "--outbound-url",
        default="http://deb.debian.org/debian/",
        help="URL a container fetches to prove outbound traffic (qemu hosts use a server on"
        " this machine instead)",
    )
    group.addoption("--dns-name", default="deb.debian.org", help="name a container resolves")
    group.addoption(
        "--skip-destructive",
        action="store_true",
        help="skip the checks that destroy instances or reboot the host",
    )
    group.addoption(
        "--destructive-only",
        action="store_true",
        help="run only the checks that destroy instances or reboot the host (for a stack the"
        " others ran against before, with --skip-destructive)",
    )


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--stack"):
        raise pytest.UsageError(
            "tests/acceptance checks a deployed stack: pytest tests/acceptance --stack NAME"
            " (or run it through `python -m dockyard_resources ci --stack-file FILE`)"
        )
    if config.getoption("--skip-destructive") and config.getoption("--destructive-only"):
        raise pytest.UsageError("--skip-destructive and --destructive-only exclude each other")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not config.getoption("--destructive-only"):
        return
    # The destructive checks are the ones that take the `destructive` fixture.
    kept = [item for item in items if "destructive" in getattr(item, "fixturenames", ())]
    config.hook.pytest_deselected(items=[item for item in items if item not in kept])
    items[:] = kept


@pytest.fixture(scope="session")
def deployed(pytestconfig: pytest.Config) -> DeployedStack:
    return open_stack(
        str(pytestconfig.getoption("--stack")), pytestconfig.getoption("--project-dir")
    )


@pytest.fixture(scope="session")
def hosts(deployed: DeployedStack) -> list[Host]:
    return deployed.hosts()


@pytest.fixture(scope="session")
def host(hosts: list[Host]) -> Host:
    """The host with the most instances: the original suite's A, B and C live there."""
    return max(hosts, key=lambda h: len(h.instances))


@pytest.fixture
def destructive(pytestconfig: pytest.Config) -> None:
    if pytestconfig.getoption("--skip-destructive"):
        pytest.skip("--skip-destructive: this check destroys instances or reboots the host")


# --- evidence and timing -----------------------------------------------------------------


def _evidence(host: Host) -> str:
    """Unit status, journal tail and rules of every instance, as one text block."""
    parts = ["systemctl status --no-pager -l dockyard-sysbox.service 2>&1 | tail -n 15"]
    for inst in host.instances:
        unit = shlex.quote(inst.service_name)
        # The tag is printed quoted or bare depending on the iptables build.
        tagged = shlex.quote(inst.tag + '([" ]|$)')
        parts += [
            f"echo '--- {inst.prefix}'",
            f"systemctl status --no-pager -l {unit} 2>&1 | tail -n 12",
            f"journalctl --no-pager -u {unit} -n 15 2>&1",
            f"tail -n 15 {shlex.quote(inst.root + '/log/dockerd.log')} 2>&1",
            f"{{ iptables -w -S; iptables -w -t nat -S; }} 2>&1 | grep -E -- {tagged} || true",
        ]
    code, out = shell_of(host).run("\n".join(parts))
    return out if code == 0 else f"(evidence script exited {code})\n{out}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        host = item.funcargs.get("host") if hasattr(item, "funcargs") else None
        if isinstance(host, Host):
            try:
                report.sections.append(("host-side evidence", _evidence(host)))
            except Exception as exc:
                report.sections.append(("host-side evidence", f"could not collect: {exc!r}"))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        name = report.nodeid.split("::")[-1]
        _TIMES.append((name, report.duration, report.outcome))
        print(f"\n[acceptance] {name}: {report.outcome} in {report.duration:.1f} s", flush=True)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.section("acceptance timing")
    for name, seconds, outcome in _TIMES:
        terminalreporter.write_line(f"{seconds:8.1f} s  {outcome:8s} {name}")
    terminalreporter.write_line(f"{time.monotonic() - _STARTED:8.1f} s  total")
