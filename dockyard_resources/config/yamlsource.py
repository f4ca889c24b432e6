"""Read a stack file's YAML keeping where every key is written.

PyYAML's composer nodes carry start marks. `read_yaml` builds the plain data (what
`yaml.safe_load` gives) and, from the same nodes, a map from each key's path
(`("config", "dockyard:hosts", 0, "instances")`; a list item by its index) to the line and
column it starts at, so a problem found later in the data can name its place in the file.

It also refuses what `safe_load` lets through silently: a key written twice in one mapping
(YAML keeps the last one and drops the first without a word). Unreadable files, non-UTF-8
bytes, syntax errors and duplicate keys are `StackFileError`s naming file, line and column.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from dockyard_resources.config.errors import StackFileError
from dockyard_resources.config.keypath import KeyPath, format_path

_MERGE_TAG: Final = "tag:yaml.org,2002:merge"


@dataclass(frozen=True)
class Position:
    file: str
    line: int  # 1-based, as editors count
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class SourceDocument:
    """The data of a YAML file and where each of its keys is written."""

    file: str
    data: Any
    positions: Mapping[KeyPath, Position]

    def position(self, path: KeyPath | None) -> Position:
        """Where `path` is written; for a key that is not there (a missing key) its closest
        written parent; else the start of the file."""
        parts = path or ()
        for end in range(len(parts), 0, -1):
            found = self.positions.get(parts[:end])
            if found is not None:
                return found
        return Position(self.file, 1, 1)


def _position(file: str, mark: yaml.Mark) -> Position:
    return Position(file, mark.line + 1, mark.column + 1)


@dataclass(frozen=True)
class _Duplicate:
    mapping: yaml.MappingNode
    key: str
    first: yaml.Node
    again: yaml.Node


_BOOL_TAG: Final = "tag:yaml.org,2002:bool"
# YAML 1.2's booleans. PyYAML reads YAML 1.1, where yes/no/on/off are booleans too; Pulumi
# reads stack files as YAML 1.2 and hands the program the text "yes": validate must see the
# same value the program will.
_BOOL_RE: Final = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


class _Loader(yaml.SafeLoader):
    """The safe loader with YAML 1.2 booleans, recording each key written twice in one
    mapping."""

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        # Marks take the reader's name: syntax errors then name the file, not "<unicode string>".
        self.name = file
        self.duplicates: list[_Duplicate] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        # Before the base class flattens `<<` merges into the node: a key that overrides a
        # merged one is the point of a merge, not a duplicate.
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first is None:
                seen[key] = key_node
            else:
                self.duplicates.append(_Duplicate(node, str(key), first, key_node))
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL_TAG, _BOOL_RE, list("tTfF"))


def _index(root: yaml.Node | None, file: str) -> tuple[dict[KeyPath, Position], dict[int, KeyPath]]:
    """Positions of every key and list item, and the path of every mapping node. A node
    reached again through an alias is not walked again (no blow-up on alias bombs, no loop on
    recursive aliases); what lies below it is then found at the alias's own key."""
    positions: dict[KeyPath, Position] = {}
    mapping_paths: dict[int, KeyPath] = {}
    walked: set[int] = set()
    todo: list[tuple[yaml.Node, KeyPath]] = [] if root is None else [(root, ())]
    while todo:
        node, path = todo.pop()
        if id(node) in walked:
            continue
        walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            mapping_paths[id(node)] = path
            # After construction `node.value` holds merged pairs first, then the node's own:
            # the later position wins, as the later value does.
            children = []
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    continue
                key_path = (*path, key_node.value)
                positions[key_path] = _position(file, key_node.start_mark)
                children.append((value_node, key_path))
        elif isinstance(node, yaml.SequenceNode):
            children = [(item, (*path, i)) for i, item in enumerate(node.value)]
            for item, item_path in children:
                positions[item_path] = _position(file, item.start_mark)
        else:
            continue
        # Reversed onto the stack: walked in document order, so a node shared through an
        # alias is indexed where it is first written.
        todo.extend(reversed(children))
    return positions, mapping_paths


def _duplicate_message(file: str, dup: _Duplicate, mapping_paths: dict[int, KeyPath]) -> str:
    parent = mapping_paths.get(id(dup.mapping))
    name = format_path((*parent, dup.key)) if parent is not None else dup.key
    first = _position(file, dup.first.start_mark)
    return (
        f"{_position(file, dup.again.start_mark)}: {name}: duplicate key (also at line"
        f" {first.line}, column {first.column}); YAML would keep only the last one and drop"
        " the other silently: merge the two or remove one"
    )


def _syntax_message(file: str, exc: yaml.YAMLError) -> str:
    if not isinstance(exc, yaml.MarkedYAMLError) or exc.problem_mark is None:
        return f"{file}: not valid YAML: {exc}"
    where = _position(file, exc.problem_mark)
    text = f"{where}: not valid YAML: {exc.problem}"
    if exc.context and exc.context_mark is not None:
        text += f" ({exc.context} at line {exc.context_mark.line + 1})"
    snippet = exc.problem_mark.get_snippet()
    # The offending line with a caret under the column (nothing to show at the end of a file).
    shown = snippet is not None and snippet.splitlines()[0].strip() != ""
    return f"{text}\n{snippet}" if shown else text


def _decode(raw: bytes, file: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise StackFileError(
            f"{file}:{line}:{column}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the"
            " file as UTF-8"
        ) from None


def parse_yaml(text: str, file: str) -> SourceDocument:
    """The data and key positions of YAML `text` read from `file`; raises `StackFileError`."""
    loader = _Loader(text, file)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        raise StackFileError(_syntax_message(file, exc)) from None
    finally:
        loader.dispose()
    positions, mapping_paths = _index(root, file)
    if loader.duplicates:
        in_file_order = sorted(loader.duplicates, key=lambda d: d.again.start_mark.index)
        raise StackFileError(
            "\n".join(_duplicate_message(file, d, mapping_paths) for d in in_file_order)
        )
    return SourceDocument(file=file, data=data, positions=positions)


def read_yaml(path: str | Path) -> SourceDocument:
    """`parse_yaml` of a file; unreadable and non-UTF-8 files are `StackFileError`s too."""
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise StackFileError(f"{file}: cannot read the stack file: {exc.strerror or exc}") from None
    return parse_yaml(_decode(raw, file), file)
