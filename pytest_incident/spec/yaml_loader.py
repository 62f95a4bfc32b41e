# A YAML loader that keeps line numbers: plain Python data plus, for every key path, where
# its value sits in the source.
#
# Strategy: `yaml.compose` (SafeLoader) builds the node tree, which still carries marks; we walk
# it ourselves instead of constructing it, so that each value's key path maps to its 1-based
# (start_line, end_line), each mapping key to its own line, and each scalar to its source text
# (so `0800` or `1.10` can be used as written rather than as the number YAML 1.1 makes of it).
# Scalars are built by PyYAML's SafeConstructor, except timestamps, which stay text. Merge keys
# (`<<`) behave as in SafeLoader. Duplicate keys, complex keys, custom tags and recursive
# aliases are rejected, and so is a document that aliases expand past MAX_VALUES values or
# that nests past MAX_DEPTH. Every problem is a YamlLoadError carrying a line; nothing here knows
# about incidents.
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

KeyPath = tuple[str | int, ...]

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


MAX_VALUES = 100_000  # values in a document, aliases expanded
MAX_DEPTH = 64  # nesting of mappings and lists


class YamlLoadError(Exception):
    """A problem in the YAML text itself, at 1-based `line` (to `end_line`)."""

    def __init__(self, line: int, message: str, end_line: int | None = None) -> None:
        super().__init__(line, message)
        self.line = line
        self.end_line = max(end_line or line, line)
        self.message = message

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True)
class YamlDocument:
    data: Any  # dict / list / scalar; mapping keys are always the key's source text
    spans: Mapping[KeyPath, tuple[int, int]]  # key path -> 1-based (start, end) of its value
    key_lines: Mapping[KeyPath, int]  # key path -> 1-based line of the key itself
    raw: Mapping[KeyPath, str]  # key path -> source text of a scalar value
    lines: tuple[str, ...]  # the source text, one entry per line

    def line_of(self, path: KeyPath) -> int:
        """The value's first line, or that of the nearest ancestor the document has."""
        return self.span_of(path)[0]

    def span_of(self, path: KeyPath) -> tuple[int, int]:
        for depth in range(len(path), -1, -1):
            span = self.spans.get(path[:depth])
            if span is not None:
                return span
        return (1, 1)


def load_yaml(text: str) -> YamlDocument | None:
    """Compose `text` and walk it; None when the stream holds no document at all."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        raise YamlLoadError(_mark_line(exc), _describe_yaml_error(exc)) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise YamlLoadError(line, f"invalid YAML: {exc.reason}") from None
    except yaml.YAMLError as exc:  # pragma: no cover - every PyYAML error has a mark or position
        raise YamlLoadError(1, f"invalid YAML: {exc}") from None
    except RecursionError:
        raise YamlLoadError(1, f"nested deeper than {MAX_DEPTH} levels") from None
    if node is None:
        return None
    lines = tuple(text.splitlines())
    walker = _Walker(lines)
    try:
        data = walker.walk(node, (), frozenset())
    except RecursionError:
        raise YamlLoadError(1, f"nested deeper than {MAX_DEPTH} levels") from None
    return YamlDocument(
        data=data,
        spans=MappingProxyType(walker.spans),
        key_lines=MappingProxyType(walker.key_lines),
        raw=MappingProxyType(walker.raw),
        lines=lines,
    )


def _mark_line(exc: yaml.MarkedYAMLError) -> int:
    mark = exc.problem_mark or exc.context_mark
    return mark.line + 1 if mark is not None else 1


def _describe_yaml_error(exc: yaml.MarkedYAMLError) -> str:
    problem = exc.problem or "cannot parse"
    context = f" ({exc.context})" if exc.context else ""
    return f"invalid YAML: {problem}{context}"


class _Walker:
    def __init__(self, lines: tuple[str, ...]) -> None:
        self._lines = lines
        self._constructor = SafeConstructor()
        self.spans: dict[KeyPath, tuple[int, int]] = {}
        self.key_lines: dict[KeyPath, int] = {}
        self.raw: dict[KeyPath, str] = {}
        self._values = 0

    def walk(self, node: Node, path: KeyPath, stack: frozenset[int]) -> Any:
        start = node.start_mark.line + 1
        if id(node) in stack:
            raise YamlLoadError(start, "recursive alias: a value cannot contain itself")
        self._values += 1
        if self._values > MAX_VALUES:  # aliases can multiply a small file (a "billion laughs")
            raise YamlLoadError(start, f"more than {MAX_VALUES} values once aliases are expanded")
        if len(path) > MAX_DEPTH:
            raise YamlLoadError(start, f"nested deeper than {MAX_DEPTH} levels")
        self.spans[path] = (start, self._end_line(node))
        if isinstance(node, ScalarNode):
            self.raw[path] = node.value
            if node.tag == _TIMESTAMP_TAG:
                return node.value
            try:
                return self._constructor.construct_object(node)
            except yaml.MarkedYAMLError as exc:
                raise YamlLoadError(start, _describe_tag_error(node, exc)) from None
        inner = stack | {id(node)}
        if isinstance(node, SequenceNode):
            self._check_tag(node, _SEQ_TAG)
            return [self.walk(item, (*path, i), inner) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            self._check_tag(node, _MAP_TAG)
            return self._walk_mapping(node, path, inner)
        raise YamlLoadError(
            start, f"unsupported YAML node {type(node).__name__}"
        )  # pragma: no cover

    def _walk_mapping(self, node: MappingNode, path: KeyPath, stack: frozenset[int]) -> Any:
        own = sum(1 for key, _ in node.value if key.tag != _MERGE_TAG)
        try:
            self._constructor.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            raise YamlLoadError(_mark_line(exc), f"invalid merge (<<): {exc.problem}") from None
        merged = len(node.value) - own
        result: dict[str, Any] = {}
        seen: dict[str, int] = {}  # the mapping's own keys -> line
        for index, (key_node, value_node) in enumerate(node.value):
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, ScalarNode):
                raise YamlLoadError(key_line, "mapping keys must be plain text")
            key = key_node.value
            # Keys merged with `<<` come first and may be overridden by the mapping's own
            # keys, exactly as in SafeLoader; only the own keys can be duplicates.
            if index >= merged:
                if key in seen:
                    where = f"{format_path(path)}: " if path else ""
                    raise YamlLoadError(
                        key_line,
                        f"{where}duplicate key {key!r} (first defined on line {seen[key]})",
                    )
                seen[key] = key_line
            self.key_lines[(*path, key)] = key_line
            result[key] = self.walk(value_node, (*path, key), stack)
        return result

    def _check_tag(self, node: Node, expected: str) -> None:
        if node.tag != expected:
            raise YamlLoadError(
                node.start_mark.line + 1, f"unsupported tag {node.tag!r}; use plain YAML"
            )

    def _end_line(self, node: Node) -> int:
        start = node.start_mark.line
        end = node.end_mark.line
        # Block collections end at the start of the next token: the line after their last
        # one, possibly past trailing blank lines and comments.
        if end > start and node.end_mark.column == 0:
            end -= 1
        while end > start and end < len(self._lines) and _is_blank(self._lines[end]):
            end -= 1
        return end + 1


def _describe_tag_error(node: ScalarNode, exc: yaml.MarkedYAMLError) -> str:
    if node.tag.startswith("tag:yaml.org,2002:"):
        return f"invalid value {node.value!r}: {exc.problem}"
    return f"unsupported tag {node.tag!r}; use plain YAML"


def _is_blank(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def format_path(path: KeyPath) -> str:
    """`("select", "routes", 0)` -> `select.routes[0]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text
