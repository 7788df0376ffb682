"""YAML to plain Python data plus the line/column of every key and sequence item.

PyYAML's ``compose`` gives nodes with marks; we build the data ourselves so that we keep the
marks and so that YAML 1.1 surprises do not reach the schema: ``18:00`` stays a string (not the
sexagesimal 1080), ``+4930...`` and ``030...`` stay strings (not ints or octal), ``NO`` and
``on`` stay strings (pydantic still reads ``yes``/``on`` as booleans where a bool is expected),
timestamps stay strings for pydantic to parse.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

Path = tuple[str | int, ...]

# libyaml's composer is ~10x faster and keeps the same marks; fall back when it is missing.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
MAX_NODES = 200_000  # anchors/aliases can expand exponentially ("billion laughs")
_PLAIN_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_TRUE_FALSE = {"true": True, "false": False}
_INT_TAG = "tag:yaml.org,2002:int"
_FLOAT_TAG = "tag:yaml.org,2002:float"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_QUOTED = ("'", '"', "|", ">")


@dataclass
class Marks:
    """1-based (line, column) positions by key path.

    ``keys`` holds the position of a mapping key (or of a sequence item); ``nodes`` the start
    of the value node, used for "required field missing" inside that mapping.
    """

    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    nodes: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def for_value(self, path: Path) -> tuple[int, int]:
        """Position to report a bad value at: its key, else the nearest known ancestor."""
        for end in range(len(path), -1, -1):
            here = path[:end]
            if here in self.keys:
                return self.keys[here]
            if here in self.nodes:
                return self.nodes[here]
        return (1, 1)

    def for_missing(self, parent: Path) -> tuple[int, int]:
        """Position to report a missing key at: the start of the mapping that lacks it."""
        if parent in self.nodes:
            return self.nodes[parent]
        return self.for_value(parent)


@dataclass
class Problem:
    """A YAML-level problem (syntax, duplicate key) with its position."""

    line: int
    column: int
    path: Path
    message: str


def _pos(mark: yaml.Mark) -> tuple[int, int]:
    return (mark.line + 1, mark.column + 1)


class YamlSyntaxError(Exception):
    """The text is not valid YAML; ``line``/``column`` are 1-based."""

    def __init__(self, line: int, column: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.column = column
        self.message = message


def load_marked(text: str) -> tuple[Any, Marks, list[Problem]]:
    """Parse ``text``; return (data, marks, problems) or raise :class:`YamlSyntaxError`."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = _pos(mark) if mark else (1, 1)
        message = ": ".join(p for p in (exc.context, exc.problem) if p)
        raise YamlSyntaxError(line, column, message or "invalid YAML") from None
    except yaml.YAMLError as exc:
        raise YamlSyntaxError(1, 1, str(exc)) from None
    builder = _Builder()
    if root is None:
        return None, builder.marks, builder.problems
    builder.marks.nodes[()] = _pos(root.start_mark)
    return builder.build(root, ()), builder.marks, builder.problems


class _Builder:
    def __init__(self) -> None:
        self.marks = Marks()
        self.problems: list[Problem] = []
        self.count = 0

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise YamlSyntaxError(*_pos(node.start_mark),
                                  f"more than {MAX_NODES} values (alias expansion?)")
        self.marks.nodes.setdefault(path, _pos(node.start_mark))
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return self._sequence(node, path)
        return _scalar(node)

    def _sequence(self, node: yaml.SequenceNode, path: Path) -> list[Any]:
        items = []
        for index, child in enumerate(node.value):
            self.marks.keys[path + (index,)] = _pos(child.start_mark)
            items.append(self.build(child, path + (index,)))
        return items

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: list[yaml.MappingNode] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(_merge_sources(value_node))
                continue
            key = self._key(key_node, path)
            if key is None:
                continue
            if key in result:
                first_line = self.marks.keys[path + (key,)][0]
                self.problems.append(Problem(*_pos(key_node.start_mark), path + (key,),
                                             f"duplicate key (first defined at line {first_line})"))
                continue
            self.marks.keys[path + (key,)] = _pos(key_node.start_mark)
            result[key] = self.build(value_node, path + (key,))
        for source in merged:  # "<<: *defaults": explicit keys win
            for key_node, value_node in source.value:
                key = _key_text(key_node)
                if key is not None and key not in result:
                    self.marks.keys[path + (key,)] = _pos(key_node.start_mark)
                    result[key] = self.build(value_node, path + (key,))
        return result

    def _key(self, key_node: yaml.Node, path: Path) -> str | None:
        key = _key_text(key_node)
        if key is None:
            self.problems.append(Problem(*_pos(key_node.start_mark), path,
                                         "keys must be plain text, not a list or mapping"))
        return key


def _merge_sources(node: yaml.Node) -> list[yaml.MappingNode]:
    if isinstance(node, yaml.MappingNode):
        return [node]
    if isinstance(node, yaml.SequenceNode):
        return [item for item in node.value if isinstance(item, yaml.MappingNode)]
    return []


def _key_text(node: yaml.Node) -> str | None:
    # Keys are ids ("alice", "1001"): keep the text as written, whatever YAML would resolve.
    return node.value if isinstance(node, yaml.ScalarNode) else None


def _scalar(node: yaml.ScalarNode) -> Any:
    text = node.value
    if node.style in _QUOTED:  # libyaml says "" for plain scalars, PyYAML None
        return text
    if node.tag == _NULL_TAG:
        return None
    if node.tag == _BOOL_TAG:
        return _TRUE_FALSE.get(text.lower(), text)
    if node.tag == _INT_TAG:
        return int(text) if _PLAIN_INT.fullmatch(text) else text
    if node.tag == _FLOAT_TAG:
        return _float(text)
    return text


def _float(text: str) -> float | str:
    try:
        return float(text) if ":" not in text else text
    except ValueError:  # .inf / .nan spellings: leave them to the schema to refuse
        return text
