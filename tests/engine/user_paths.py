"""The paths a user takes, run the way the docs print them.

- `doc_commands(doc, name)`: the commands of the fenced block after `<!-- run: NAME -->` in
  a doc, one per line (`#` lines skipped): the test's source is the doc itself, so a doc that
  drifts from the code fails the suite.
- `for_the_test(command, replace)`: the only changes a test makes to a doc's command: Pulumi
  asks before it changes anything and a test has no terminal to answer, so `pulumi up`,
  `pulumi destroy` and `pulumi stack rm` get `--yes`; an address the doc names for the
  reader's own server becomes the test's (each such text must be in the command).
- `UserCheckout`: a user's own checkout: a fresh `git clone` of this repository (with the
  working tree's uncommitted changes, so what is tested is what you see), its own HOME (no
  `~/.pulumi` login, no `~/.cache/dockyard`, its own `~/.ssh`), the Pulumi CLI and the
  Docker CLI on PATH, and none of the developer's Dockyard, Pulumi, AWS or Docker variables.
  Its `.venv` is the suite's own (built from the same requirements.txt; `make venv` would
  install it). Each command runs in bash in the checkout; what it exports carries over to
  the next, as in one shell session.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.fixtures.pulumi_cli import REPO_ROOT

DOCS = REPO_ROOT / "docs"
_MARKER = re.compile(r"<!--\s*run:\s*(\S+)\s*-->\s*\n```[a-z]*\n(.*?)\n```", re.DOTALL)
_TEXT = re.compile(r"<!--\s*{name}\s*-->\s*\n```[a-z]*\n(.*?)\n```", re.DOTALL)
# Variables of the developer's environment a new user does not have.
_FOREIGN_PREFIXES = ("DOCKYARD_", "PULUMI_", "AWS_", "DOCKER_", "XDG_", "GIT_", "VIRTUAL_ENV")
_CONFIRMED = re.compile(r"^pulumi (up|destroy|stack rm)\b")
GIT_IDENTITY = "[user]\n\tname = {name}\n\temail = {name}@example.com\n"


def doc_commands(doc: Path, name: str) -> list[str]:
    """The commands of the block marked `<!-- run: name -->` (fails when there is none)."""
    blocks = {m.group(1): m.group(2) for m in _MARKER.finditer(doc.read_text())}
    if name not in blocks:
        raise AssertionError(f"{doc.name} has no block marked `<!-- run: {name} -->`")
    return [
        line.strip()
        for line in blocks[name].splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def doc_text(doc: Path, name: str) -> str:
    """The text of the fenced block after `<!-- name -->` (expected output a doc shows)."""
    match = re.search(_TEXT.pattern.format(name=re.escape(name)), doc.read_text(), re.DOTALL)
    if match is None:
        raise AssertionError(f"{doc.name} has no block marked `<!-- {name} -->`")
    return match.group(1)


def for_the_test(command: str, replace: dict[str, str] | None = None) -> str:
    """A doc's command as a test runs it: Pulumi's question answered with --yes, and the
    reader's addresses replaced by the test's."""
    for old, new in (replace or {}).items():
        if old not in command:
            raise AssertionError(f"the doc's command no longer names {old!r}: {command}")
        command = command.replace(old, new)
    return f"{command} --yes" if _CONFIRMED.match(command) else command


def clone_working_tree(dest: Path) -> Path:
    """`git clone` of this repository, plus the working tree's uncommitted and untracked
    (not ignored) files; `.venv` is linked to the suite's own."""
    subprocess.run(["git", "clone", "-q", str(REPO_ROOT), str(dest)], check=True)
    diff = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "diff", "HEAD", "--binary"],
        check=True,
        capture_output=True,
    ).stdout
    if diff:
        apply = ["git", "-C", str(dest), "apply", "--whitespace=nowarn"]
        subprocess.run(apply, input=diff, check=True)
    untracked = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "ls-files", "-z", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for name in filter(None, untracked.split("\0")):
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, dest / name)
    (dest / ".venv").symlink_to((REPO_ROOT / ".venv").resolve())
    return dest


def team_origin(dest: Path, seed: Path) -> Path:
    """A team's shared repository (bare), holding the working tree as one commit."""
    clone_working_tree(seed)
    identity = ["-c", "user.name=team", "-c", "user.email=team@example.com"]
    subprocess.run(["git", "-C", str(seed), "add", "-A"], check=True)
    commit = ["git", *identity, "-C", str(seed), "commit", "-q", "--allow-empty", "-m", "tree"]
    subprocess.run(commit, check=True)
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(dest)], check=True)
    return dest


@contextmanager
def runtime_dir() -> Iterator[Path]:
    """A short XDG_RUNTIME_DIR (as /run/user/<uid> is): a unix socket's path must fit in
    108 bytes, which a pytest temp dir would not leave room for."""
    path = Path(tempfile.mkdtemp(prefix="dy-run-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def user_environment(home: Path, pulumi_bin: Path, runtime: Path | None = None) -> dict[str, str]:
    """What a new user's shell has: their HOME, `pulumi` on PATH, nothing of Dockyard's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_PREFIXES)}
    runtime = runtime or home / "run"
    runtime.mkdir(parents=True, exist_ok=True, mode=0o700)
    env.update(
        {
            "HOME": str(home),
            # `pulumi` finds its home through the OS account, not $HOME: a second user on
            # this machine is a PULUMI_HOME of its own.
            "PULUMI_HOME": str(home / ".pulumi"),
            "PATH": f"{pulumi_bin}{os.pathsep}{env.get('PATH', '')}",
            # A login session's own runtime directory (the tunnel's socket goes there).
            "XDG_RUNTIME_DIR": str(runtime),
            # No network for Pulumi's version check on these machines.
            "PULUMI_SKIP_UPDATE_CHECK": "1",
        }
    )
    return env


@dataclass
class Ran:
    command: str
    returncode: int
    output: str

    def describe(self) -> str:
        return f"`{self.command}` exited {self.returncode}:\n{self.output[-6000:]}"


@dataclass
class UserCheckout:
    """One user: a checkout and a shell session in it."""

    root: Path
    home: Path
    env: dict[str, str]
    ran: list[Ran] = field(default_factory=list)

    @classmethod
    def make(
        cls, base: Path, pulumi_bin: Path, *, name: str = "user", runtime: Path | None = None
    ) -> UserCheckout:
        home = base / "home"
        (home / ".ssh").mkdir(parents=True, mode=0o700)
        (home / ".gitconfig").write_text(GIT_IDENTITY.format(name=name))
        env = user_environment(home, pulumi_bin, runtime)
        return cls(clone_working_tree(base / "checkout"), home, env)

    @classmethod
    def of_clone(cls, base: Path, origin: Path, pulumi_bin: Path, *, name: str) -> UserCheckout:
        """A user whose checkout is a clone of `origin` (a team's shared repository)."""
        home = base / "home"
        (home / ".ssh").mkdir(parents=True, mode=0o700)
        (home / ".gitconfig").write_text(GIT_IDENTITY.format(name=name))
        root = base / "checkout"
        subprocess.run(["git", "clone", "-q", str(origin), str(root)], check=True)
        (root / ".venv").symlink_to((REPO_ROOT / ".venv").resolve())
        return cls(root, home, user_environment(home, pulumi_bin))

    def _env_file(self) -> Path:
        return self.home / ".session-env"

    def run(
        self, command: str, *, check: bool = True, timeout: float = 1800, stdout_only: bool = False
    ) -> Ran:
        """Run one command in the session; its exports carry over to the next. Its output is
        stdout and stderr together, or stdout alone (stderr then only shown on failure)."""
        env_file = self._env_file()
        script = f"{command}\nrc=$?\nenv -0 > {env_file}\nexit $rc\n"
        proc = subprocess.run(
            ["bash", "-c", script],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if stdout_only else subprocess.STDOUT,
            text=True,
            timeout=timeout,
            check=False,
        )
        if env_file.is_file():
            pairs = env_file.read_text().split("\0")
            self.env = dict(p.split("=", 1) for p in pairs if "=" in p)
            env_file.unlink()
        ran = Ran(command, proc.returncode, proc.stdout)
        self.ran.append(ran)
        if check and proc.returncode != 0:
            shown = proc.stderr if stdout_only else proc.stdout  # never a secret printed
            raise AssertionError(Ran(command, proc.returncode, shown).describe())
        return ran

    def run_doc(self, doc: Path, name: str) -> list[Ran]:
        return [self.run(for_the_test(command)) for command in doc_commands(doc, name)]

    @contextmanager
    def background(self, command: str, *, read_stdout: bool = False) -> Iterator[Background]:
        """`command` running meanwhile (as in a second terminal), its output in a log file
        (stdout readable instead with `read_stdout`); stopped by its pid after."""
        log = self.home / f"background-{len(self.ran)}-{time.monotonic_ns()}.log"
        with log.open("w") as err:
            proc = subprocess.Popen(
                ["bash", "-c", f"exec {command}"],
                cwd=self.root,
                env=self.env,
                stdout=subprocess.PIPE if read_stdout else err,
                stderr=err,
                text=True,
            )
        running = Background(command, proc, log)
        try:
            yield running
        finally:
            running.stop()


@dataclass
class Background:
    command: str
    proc: subprocess.Popen[str]
    log: Path

    def first_line(self, within: float = 300) -> str:
        """The first line it prints (fails with its stderr when it ends or says nothing)."""
        lines: list[str] = []
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        reader = threading.Thread(target=lambda: lines.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(within)
        if not lines or not lines[0]:
            raise AssertionError(
                f"`{self.command}` printed nothing (exit {self.proc.poll()}):\n{self.stderr()}"
            )
        return lines[0].rstrip("\n")

    def output(self) -> str:
        """What it wrote to its log (stdout too, unless read with `first_line`)."""
        return self.stderr()

    def stderr(self) -> str:
        return self.log.read_text()[-4000:] if self.log.exists() else ""

    def wait(self, timeout: float = 1800) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
