"""Property: one mistake in a valid stack file is refused, naming the key and its place.

Hypothesis takes a valid base (a shipped `stacks/*.yaml`, or a small generated stack), makes
one mutation (a key renamed, a value of the wrong type, a key written twice, a key moved to
the wrong level) and writes the file with the small emitter below, which records the line
and column of every key as it writes it: an oracle independent of the code under test.
`validate` must refuse the file (exit 1 or 2) with a message at that line and column that
names the key's path.
"""

from __future__ import annotations

import atexit
import copy
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dockyard_resources.cli import validate_command
from dockyard_resources.config import models
from tests.unit.config_builders import ed25519_key_line

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted((REPO / "stacks").glob("Pulumi.*.yaml"))
# Written once for the whole module (hypothesis runs many examples per test function):
# the mutated file, a Pulumi.yaml, and sha256 files for the test bed's sha256File keys.
SHA_DIR = Path(tempfile.mkdtemp(prefix="dockyard-property-"))
atexit.register(shutil.rmtree, SHA_DIR, ignore_errors=True)
(SHA_DIR / "Pulumi.yaml").write_text("name: dockyard\n")


@dataclass(eq=False)
class Key:
    """A mapping key as written; the emitter fills in where."""

    name: str
    line: int = 0
    column: int = 0


@dataclass(eq=False)
class Mapping:
    """A YAML mapping that may hold a key twice (a list of pairs, not a dict)."""

    pairs: list[tuple[Key, Any]] = field(default_factory=list)


def tree(data: Any) -> Any:
    if isinstance(data, dict):
        return Mapping([(Key(str(k)), tree(v)) for k, v in data.items()])
    if isinstance(data, list):
        return [tree(item) for item in data]
    return data


# --- the emitter: block style, or flow style for mappings of scalars ---------------------


def _round_trips(text: str, value: Any, flow: bool) -> bool:
    document = f"{{k: {text}}}" if flow else f"k: {text}"
    try:
        return yaml.safe_load(document) == {"k": value}
    except yaml.YAMLError:
        return False


def scalar(value: Any, flow: bool) -> str:
    """Plain where YAML reads it back unchanged, else JSON (a YAML flow scalar)."""
    if isinstance(value, str) and value and _round_trips(value, value, flow):
        return value
    return json.dumps(value)


def _is_leaf(value: Any) -> bool:
    return not isinstance(value, Mapping | list)


class Emitter:
    def __init__(self, flow: bool) -> None:
        self.flow = flow
        self.lines: list[str] = []

    def key_text(self, key: Key) -> str:
        return scalar(key.name, flow=False)

    def flow_mapping(self, mapping: Mapping, line_prefix: str) -> str:
        """`{a: 1, b: x}` on the current line, which starts with `line_prefix`."""
        text = "{"
        for i, (key, value) in enumerate(mapping.pairs):
            if i:
                text += ", "
            key.line = len(self.lines) + 1
            key.column = len(line_prefix) + len(text) + 1
            text += f"{scalar(key.name, True)}: {scalar(value, True)}"
        return text + "}"

    def inline(self, value: Any, line_prefix: str) -> str | None:
        """`value` on the line of its key, or None when it takes lines of its own."""
        if isinstance(value, Mapping):
            if not value.pairs:
                return "{}"
            if self.flow and all(_is_leaf(v) for _, v in value.pairs):
                return self.flow_mapping(value, line_prefix)
            return None
        if isinstance(value, list):
            return "[]" if not value else None
        return scalar(value, flow=False)

    def mapping(self, mapping: Mapping, indent: int, lead: str | None = None) -> None:
        for i, (key, value) in enumerate(mapping.pairs):
            prefix = lead if i == 0 and lead is not None else " " * indent
            key.line, key.column = len(self.lines) + 1, len(prefix) + 1
            head = f"{prefix}{self.key_text(key)}:"
            rest = self.inline(value, head + " ")
            if rest is not None:
                self.lines.append(f"{head} {rest}")
                continue
            self.lines.append(head)
            self.block(value, indent + 2)

    def block(self, value: Any, indent: int) -> None:
        if isinstance(value, Mapping):
            self.mapping(value, indent)
            return
        for item in value:
            lead = " " * indent + "- "
            if isinstance(item, Mapping) and item.pairs:
                inline = self.inline(item, lead)
                if inline is not None:
                    self.lines.append(lead + inline)
                else:
                    self.mapping(item, indent + 2, lead=lead)
            elif isinstance(item, list) and item:
                self.lines.append(lead + json.dumps(_plain(item)))
            else:
                self.lines.append(lead + (self.inline(item, lead) or ""))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k.name: _plain(v) for k, v in value.pairs}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def emit(document: Mapping, flow: bool) -> str:
    emitter = Emitter(flow)
    emitter.mapping(document, 0)
    return "\n".join(emitter.lines) + "\n"


# --- bases ---------------------------------------------------------------------------------


def shipped_base(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    for host in data["config"]["dockyard:hosts"]:
        for which in ("docker", "sysbox"):
            artifact = host.get(which) or {}
            if "sha256File" in artifact:  # the test bed's: a file of our own instead
                sidecar = SHA_DIR / f"{host['name']}-{which}.sha256"
                sidecar.write_text("ab" * 32 + "\n")
                artifact["sha256File"] = str(sidecar)
    return data


SHIPPED_BASES = {path.name: shipped_base(path) for path in SHIPPED}


@st.composite
def generated_base(draw: st.DrawFn) -> dict[str, Any]:
    """A small valid stack: 1-2 hosts of any kind, 0-2 instances each, optional keys."""
    hosts = []
    for i in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["existing", "qemu", "hcloud", "aws"]))
        provision: dict[str, Any] = {"kind": kind}
        optional: dict[str, Any] = {}
        if kind == "existing":
            provision["address"] = f"10.0.0.{i + 1}"
            optional = {
                "port": draw(st.integers(1, 65535)),
                "user": "admin",
                "sshConfig": draw(st.booleans()),
                "connectTimeout": 30,
                "hostKey": ed25519_key_line(),
            }
        elif kind == "qemu":
            optional = {"cpus": draw(st.integers(1, 4)), "memoryMb": 2048, "suite": "bookworm"}
        elif kind == "hcloud":
            optional = {"serverType": draw(st.sampled_from(["cx22", "cax11"])), "location": "nbg1"}
            optional["allowedSshCidrs"] = ["10.0.0.0/8", "2001:67c::/32"]
        else:
            provision["region"] = "eu-central-1"
            optional = {"instanceType": "t4g.small", "diskGb": 30, "arch": "aarch64"}
        chosen = draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=3))
        provision.update({k: optional[k] for k in chosen})
        host: dict[str, Any] = {"name": f"host-{i}", "provision": provision}
        if draw(st.booleans()):
            host["docker"] = {"version": "29.2.1"}
        if draw(st.booleans()):
            host["allowSysboxRestart"] = draw(st.booleans())
        instances = []
        for j in range(draw(st.integers(0, 2))):
            instance: dict[str, Any] = {"prefix": f"dy{j}_", "root": f"/dy{j}"}
            if draw(st.booleans()):
                instance["members"] = ["alice"]
            if draw(st.booleans()):
                instance["enabled"] = draw(st.booleans())
            if draw(st.booleans()):
                instance["poolSize"] = 26
            instances.append(instance)
        host["instances"] = instances
        hosts.append(host)
    config: dict[str, Any] = {"dockyard:hosts": hosts}
    if draw(st.booleans()):
        config["dockyard:sshPrivateKey"] = {"secure": "v1:notdecrypted"}
    return {"config": config}


bases = st.one_of(st.sampled_from(sorted(SHIPPED_BASES)).map(SHIPPED_BASES.get), generated_base())


# --- mutations -----------------------------------------------------------------------------

KeyPath = tuple[str | int, ...]


def entries(node: Any, path: KeyPath = ()) -> Iterator[tuple[Mapping, int, KeyPath]]:
    """Every mapping entry: (its mapping, its index, its path); secure values are opaque."""
    if isinstance(node, Mapping):
        for i, (key, value) in enumerate(node.pairs):
            yield node, i, (*path, key.name)
            if not (isinstance(value, Mapping) and [k.name for k, _ in value.pairs] == ["secure"]):
                yield from entries(value, (*path, key.name))
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from entries(item, (*path, i))


def shown(path: KeyPath) -> str:
    """A key path as messages write it: `hosts[0].name` for config.dockyard:hosts[0].name."""
    parts = list(path)
    if parts[:2] == ["config", "dockyard:hosts"]:
        parts = ["hosts", *parts[2:]]
    elif len(parts) > 1 and parts[0] == "config":
        parts = parts[1:]
    text = str(parts[0])
    for part in parts[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


@dataclass
class Mutation:
    what: str
    key: Key  # the key whose line the message must name
    path: KeyPath  # its path after the mutation


# Every key name a stack file knows: a renamed key must not become another valid one.
KNOWN_KEYS = {
    field.alias or name
    for model in (
        models.ExistingProvision,
        models.QemuProvision,
        models.HcloudProvision,
        models.AwsProvision,
        models.ArtifactConfig,
        models.InstanceConfig,
        models.HostConfig,
    )
    for name, field in model.model_fields.items()
} | {"config", "dockyard:hosts", "dockyard:sshPrivateKey", "secure"}


def typo(draw: st.DrawFn, name: str, taken: set[str]) -> str:
    i = draw(st.integers(0, len(name) - 1))
    candidates = [
        name[:i] + name[i + 1 :],  # a letter dropped
        name[:i] + name[i] + name[i:],  # a letter doubled
        name[:i] + name[i + 1 : i + 2] + name[i : i + 1] + name[i + 2 :],  # two swapped
        name[:1].swapcase() + name[1:],  # the case of the first letter
    ]
    fresh = [c for c in candidates if c and c not in taken]
    return draw(st.sampled_from(fresh)) if fresh else name + "x"


def wrong_value(draw: st.DrawFn, value: Any) -> Any:
    if isinstance(value, bool):
        return draw(st.sampled_from(["true" if value else "false", "yes", 1, [value]]))
    if isinstance(value, int):
        return draw(st.sampled_from([str(value), value + 0.5, True, [value]]))
    if isinstance(value, str):
        return draw(st.sampled_from([5, True, [value], Mapping([(Key("a"), value)])]))
    if isinstance(value, list):
        return draw(st.sampled_from(["x", 5, Mapping([(Key("a"), "x")])]))
    return draw(st.sampled_from(["x", 5, ["x"]]))  # a mapping


HOST_PARTS = ("provision", "docker", "sysbox")


def _host_moves(document: Mapping) -> list[tuple[Mapping, int, Mapping, KeyPath]]:
    """(from mapping, index, to mapping, path of to) for each key of a host moved one level
    up (out of provision, docker, sysbox or an instance) or down (into one of them)."""
    moves = []
    hosts = _only(_only(document, "config"), "dockyard:hosts")
    for h, host in enumerate(hosts):
        host_path: KeyPath = ("config", "dockyard:hosts", h)
        inner: list[tuple[Mapping, KeyPath]] = []
        for key, value in host.pairs:
            if key.name in HOST_PARTS and isinstance(value, Mapping):
                inner.append((value, (*host_path, key.name)))
            if key.name == "instances" and isinstance(value, list):
                inner += [(v, (*host_path, "instances", j)) for j, v in enumerate(value)]
        for mapping, path in inner:
            moves += [(mapping, i, host, host_path) for i in range(len(mapping.pairs))]
            # Down, but never into the moved value itself (provision into provision).
            moves += [
                (host, i, mapping, path)
                for i, (key, _) in enumerate(host.pairs)
                if path[len(host_path)] != key.name
            ]
    return moves


def _only(mapping: Mapping, name: str) -> Any:
    return next(v for k, v in mapping.pairs if k.name == name)


MUTATIONS = ("rename", "wrong type", "duplicate", "move")


@st.composite
def mutated(draw: st.DrawFn, what: str) -> tuple[Mapping, Mutation]:
    document = tree(copy.deepcopy(draw(bases)))
    if what == "move":
        source, index, target, target_path = draw(st.sampled_from(_host_moves(document)))
        key, value = source.pairs.pop(index)
        target.pairs.append((key, value))
        return document, Mutation(what, key, (*target_path, key.name))
    candidates = list(entries(document))
    if what == "wrong type" and draw(st.integers(0, 3)):
        # Mostly a scalar (a quoted number, a number for a boolean...), the usual slip.
        candidates = [e for e in candidates if _is_leaf(e[0].pairs[e[1]][1])]
    mapping, index, path = draw(st.sampled_from(candidates))
    key, value = mapping.pairs[index]
    if what == "rename":
        siblings = {k.name for k, _ in mapping.pairs}
        key.name = typo(draw, key.name, siblings | KNOWN_KEYS)
        return document, Mutation(what, key, (*path[:-1], key.name))
    if what == "wrong type":
        mapping.pairs[index] = (key, wrong_value(draw, value))
        return document, Mutation(what, key, path)
    again = Key(key.name)
    at = draw(st.integers(index + 1, len(mapping.pairs)))
    mapping.pairs.insert(at, (again, copy.deepcopy(value)))
    return document, Mutation(what, again, path)


def validate(text: str) -> tuple[int, str]:
    stack = SHA_DIR / "Pulumi.mutated.yaml"
    stack.write_text(text)
    out, err = io.StringIO(), io.StringIO()
    return validate_command(str(stack), out, err), err.getvalue()


# --- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SHIPPED_BASES))
def test_the_bases_are_valid_as_emitted(name: str) -> None:
    for flow in (False, True):
        code, err = validate(emit(tree(SHIPPED_BASES[name]), flow))
        assert code == 0, err


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=generated_base(), flow=st.booleans())
def test_generated_bases_are_valid(base: dict[str, Any], flow: bool) -> None:
    code, err = validate(emit(tree(base), flow))
    assert code == 0, err


@pytest.mark.parametrize("what", MUTATIONS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), flow=st.booleans())
def test_one_mistake_is_refused_at_its_key(what: str, data: st.DataObject, flow: bool) -> None:
    document, mutation = data.draw(mutated(what))
    text = emit(document, flow)
    code, err = validate(text)
    place = f"{SHA_DIR / 'Pulumi.mutated.yaml'}:{mutation.key.line}:{mutation.key.column}: "
    named = f"{place}{shown(mutation.path)}: "
    assert code in (1, 2), f"{mutation.what} accepted:\n{text}"
    assert named in err, f"{mutation.what}: no message starts with {named!r}\n{err}\n{text}"
