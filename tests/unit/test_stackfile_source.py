"""Stack files as `validate` reads them: every message at its file, line and column.

Duplicate keys, bad bytes and syntax errors stop the reading (`StackFileError`); every
validation problem is placed at its key (a missing key at the mapping that lacks it).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from dockyard_resources import deploy, workdir
from dockyard_resources.config import ConfigError, StackFileError, check_stack_file
from dockyard_resources.config.keypath import format_path, parse
from dockyard_resources.config.yamlsource import parse_yaml
from tests.unit.test_cli_validate import run_cli


def write(tmp_path: Path, text: str | bytes) -> Path:
    stack = tmp_path / "Pulumi.s.yaml"
    if isinstance(text, bytes):
        stack.write_bytes(text)
    else:
        stack.write_text(text)
    return stack


def problems(stack: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        check_stack_file(stack)
    return caught.value.errors


def unreadable(stack: Path) -> str:
    with pytest.raises(StackFileError) as caught:
        check_stack_file(stack)
    return str(caught.value)


HIDDEN_INSTANCES = """\
config:
  dockyard:hosts:
    - name: build-1
      provision: {kind: existing, address: 10.1.2.3}
      instances:
        - {prefix: dy1_, root: /dy1}
      allowSysboxRestart: false
      instances: []
"""


def test_a_duplicate_key_is_refused_naming_both_lines(tmp_path: Path) -> None:
    # Read as plain YAML this is "valid, 1 host, 0 instances": the second key hides the first.
    stack = write(tmp_path, HIDDEN_INSTANCES)
    assert unreadable(stack) == (
        f"{stack}:8:7: hosts[0].instances: duplicate key (also at line 5, column 7); YAML"
        " would keep only the last one and drop the other silently: merge the two or remove one"
    )


def test_every_duplicate_is_listed_at_once(tmp_path: Path) -> None:
    stack = write(
        tmp_path,
        "config:\n"
        "  dockyard:hosts: []\n"
        "  dockyard:hosts:\n"
        "    - {name: a, name: b, provision: {kind: qemu}}\n"
        "config: {}\n",
    )
    lines = unreadable(stack).splitlines()
    assert [line.split(": duplicate key")[0] for line in lines] == [
        f"{stack}:3:3: hosts",
        f"{stack}:4:17: hosts[0].name",
        f"{stack}:5:1: config",
    ]


def test_merge_keys_override_without_being_duplicates(tmp_path: Path) -> None:
    stack = write(
        tmp_path,
        "x-base: &base {kind: existing, address: 10.1.2.3, port: 22}\n"
        "config:\n"
        "  dockyard:hosts:\n"
        "    - name: build-1\n"
        "      provision:\n"
        "        <<: *base\n"
        "        port: 70000\n",
    )
    # The override is the point of a merge; its own line is blamed, not the anchor's.
    assert problems(stack) == [
        f"{stack}:7:9: hosts[0].provision.port: must be at most 65535 (got 70000)"
    ]


def test_syntax_errors_name_the_file_line_and_column(tmp_path: Path) -> None:
    stack = write(tmp_path, "config:\n  dockyard:hosts:\n    - name: x\n     bad: 1\n")
    message = unreadable(stack)
    assert message.startswith(f"{stack}:4:6: not valid YAML: expected <block end>")
    assert "<unicode string>" not in message
    assert "     bad: 1\n" in message  # the line itself, with a caret below


def test_non_utf8_bytes_are_placed_not_a_traceback(tmp_path: Path) -> None:
    stack = write(tmp_path, b"config:\n  dockyard:hosts:\n    - name: b\xffd\n")
    assert unreadable(stack) == (
        f"{stack}:3:14: not UTF-8 text (byte 0xff); save the file as UTF-8"
    )
    result = run_cli("validate", str(stack))
    assert result.returncode == 2
    assert (
        result.stderr
        == f"error: {stack}:3:14: not UTF-8 text (byte 0xff); save the file as UTF-8\n"
    )


def test_workdir_reads_stack_files_the_same_way(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKYARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("DOCKYARD_STATE", raising=False)
    stack = write(tmp_path, b"config:\n  dockyard:hosts: [\xe9]\n")
    with pytest.raises(StackFileError, match=r"Pulumi\.s\.yaml:2:20: not UTF-8 text"):
        workdir.prepare(stack)
    stack = write(tmp_path, HIDDEN_INSTANCES)
    with pytest.raises(StackFileError, match=r":8:7: hosts\[0\]\.instances: duplicate key"):
        workdir.prepare(stack)
    result = run_cli("workdir", str(stack))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


PLACED = """\
config:
  dockyard:sshPrivateKey: plain text
  dockyard:hosts:
    - name: build-1
      provision:
        kind: existing
        adress: 10.1.2.3
      instances:
        - prefix: dy1_
          root: /dy1
        - prefix: dy2_
          root: /dy1
          poolSize: 40
    - provision: {kind: hcloud, allowedSshCidrs: [10.0.0.0/8, 10.0.0.1/8]}
"""


def test_every_problem_is_placed_at_its_key(tmp_path: Path) -> None:
    stack = write(tmp_path, PLACED)
    located = [line.split(": ", 2) for line in problems(stack)]
    assert [(where, path) for where, path, _ in located] == [
        (f"{stack}:2:3", "dockyard:sshPrivateKey"),
        # A missing key is placed at the mapping that lacks it.
        (f"{stack}:5:7", "hosts[0].provision.address"),
        (f"{stack}:7:9", "hosts[0].provision.adress"),
        (f"{stack}:12:11", "hosts[0].instances[1].root"),
        (f"{stack}:13:11", "hosts[0].instances[1].poolSize"),
        (f"{stack}:14:7", "hosts[1].name"),
        # A list item is placed at the item.
        (f"{stack}:14:63", "hosts[1].provision.allowedSshCidrs[1]"),
    ]


def test_a_file_without_config_is_told_about_config(tmp_path: Path) -> None:
    stack = write(tmp_path, "dockyard:hosts: []\ncofnig: {}\n")
    assert problems(stack) == [
        f"{stack}:1:1: config: missing; a stack file keeps its settings under `config:`, e.g."
        " `config:` then `  dockyard:hosts:` indented below it",
        f"{stack}:1:1: dockyard:hosts: belongs under `config:`; indent it below `config:`",
        f"{stack}:2:1: cofnig: unknown key; did you mean 'config'?",
    ]
    empty = write(tmp_path, "# nothing yet\n")
    assert [line.split(": ")[1] for line in problems(empty)] == ["config"]


def test_an_unknown_dockyard_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    stack = write(tmp_path, "config:\n  dockyard:host: []\n")
    assert problems(stack) == [
        f"{stack}:2:3: dockyard:host: unknown key; did you mean 'dockyard:hosts'? the dockyard"
        " namespace has hosts, sshPrivateKey, sshPrivateKeyPassphrase",
        f"{stack}:1:1: hosts: missing; add `dockyard:hosts:` with a list of hosts"
        " (docs/configuration.md)",
    ]


def test_aliases_are_indexed_once_and_recursion_ends(tmp_path: Path) -> None:
    # A YAML "billion laughs" and a self-referencing list: read at once, no hang, no blow-up.
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
    )
    document = parse_yaml(bomb, "bomb.yaml")
    assert len(document.positions) < 200
    looped = parse_yaml("config: &c [*c]\n", "loop.yaml")
    assert looped.position(("config", 0, 0, 0)).line == 1


@pytest.mark.parametrize(
    "text",
    ["hosts", "hosts[0].instances[12].poolBase", "dockyard:sshPrivateKey", "config"],
)
def test_key_paths_read_back_as_written(text: str) -> None:
    path = parse(text)
    assert path is not None
    assert format_path(path) == text


def test_deploy_checks_the_file_as_validate_does(tmp_path: Path) -> None:
    err = io.StringIO()
    assert not deploy._validate(write(tmp_path, PLACED), err)
    assert f"{tmp_path / 'Pulumi.s.yaml'}:7:9: hosts[0].provision.adress: unknown key" in (
        err.getvalue()
    )
    err = io.StringIO()
    assert not deploy._validate(write(tmp_path, HIDDEN_INSTANCES), err)
    assert err.getvalue().startswith(f"error: {tmp_path / 'Pulumi.s.yaml'}:8:7: ")


def test_misspelt_kind_and_namespace_are_placed_at_the_typo(tmp_path: Path) -> None:
    stack = write(
        tmp_path,
        "config:\n"
        "  dockyrad:sshPrivateKey: {secure: v1:x}\n"
        "  hosts: []\n"
        "  aws:region: eu-central-1\n"
        "  dockyard:hosts:\n"
        "    - name: build-1\n"
        "      provision: {knid: qemu}\n",
    )
    assert problems(stack) == [
        f"{stack}:2:3: dockyrad:sshPrivateKey: unknown namespace 'dockyrad'; did you mean"
        " 'dockyard:sshPrivateKey'?",
        f"{stack}:3:3: config.hosts: no namespace; write it as dockyard:hosts",
        f"{stack}:7:19: hosts[0].provision.knid: unknown key; did you mean 'kind'? (set kind to"
        " one of existing, qemu, hcloud, aws)",
    ]
