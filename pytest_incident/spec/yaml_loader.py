# A YAML loader that keeps line numbers: plain Python data plus, for every key path, where
# its value sits in the source.
#
# Strategy: `yaml.compose` (SafeLoader) builds the node tree, which still carries marks; we walk
# it ourselves instead of constructing it, so that each value's key path maps to its 1-based
# (start_line, end_line), each mapping key to its own line, and each scalar to its source text
# (so `0800` or `1.10` can be used as written rather than as the number YAML 1.1 makes of it).
# Scalars are built by PyYAML's SafeConstructor, except timestamps, which stay text. Merge keys
# (`<<`) are merged here as the YAML merge-key type says (the first mapping of a list wins, own
# keys win over merged ones), counted, and without touching the node tree. Duplicate keys,
# complex keys, custom tags, recursive aliases and lone surrogates (`"\uD800"`) are rejected,
# and so is a document that nests past MAX_DEPTH (counted while composing, before Python's
# recursion limit) or that aliases expand past MAX_VALUES values. Whatever PyYAML raises on
# odd input (a tag whose value does not convert, an escape past U+10FFFF) is a YamlLoadError
# carrying a line too; nothing here knows about incidents.
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
    loader: _Loader | None = None
    try:
        loader = _Loader(text)  # its reader checks every character first
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        raise YamlLoadError(_mark_line(exc), _describe_yaml_error(exc)) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        raise YamlLoadError(line, f"invalid YAML: {exc.reason}") from None
    except yaml.YAMLError as exc:  # pragma: no cover - every PyYAML error has a mark or position
        raise YamlLoadError(1, f"invalid YAML: {exc}") from None
    except (ValueError, OverflowError):  # the scanner's chr() of an escape past U+10FFFF
        line = loader.get_mark().line + 1 if loader is not None else 1
        raise YamlLoadError(line, "invalid YAML: an escape past \\U0010FFFF") from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        return None
    lines = tuple(text.splitlines())
    walker = _Walker(lines)
    data = walker.walk(node, (), frozenset())
    return YamlDocument(
        data=data,
        spans=MappingProxyType(walker.spans),
        key_lines=MappingProxyType(walker.key_lines),
        raw=MappingProxyType(walker.raw),
        lines=lines,
    )


class _Loader(yaml.SafeLoader):
    """SafeLoader composing at most MAX_DEPTH levels: deeper is an error at its line, raised
    long before Python's recursion limit (the composer recurses once per level)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self._depth > MAX_DEPTH:
            event: Any = self.peek_event()  # type: ignore[no-untyped-call]
            raise YamlLoadError(event.start_mark.line + 1, _TOO_DEEP)
        self._depth += 1
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        return node


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
        self._count(start)
        if len(path) > MAX_DEPTH:
            raise YamlLoadError(start, _TOO_DEEP)
        self.spans[path] = (start, self._end_line(node))
        if isinstance(node, ScalarNode):
            self.raw[path] = node.value
            return self._scalar(node, start)
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

    def _count(self, line: int) -> None:
        self._values += 1
        if self._values > MAX_VALUES:  # aliases can multiply a small file (a "billion laughs")
            raise YamlLoadError(line, f"more than {MAX_VALUES} values once aliases are expanded")

    def _scalar(self, node: ScalarNode, line: int) -> Any:
        if _has_surrogate(node.value):
            raise YamlLoadError(line, _SURROGATE)
        if node.tag == _TIMESTAMP_TAG:
            return node.value
        try:
            return self._constructor.construct_object(node)
        except yaml.MarkedYAMLError as exc:
            raise YamlLoadError(line, _describe_tag_error(node, exc)) from None
        except (ValueError, KeyError, TypeError, OverflowError):
            # SafeConstructor's int(), float(), bool table on a value its tag does not fit
            raise YamlLoadError(line, _describe_bad_scalar(node)) from None

    def _walk_mapping(self, node: MappingNode, path: KeyPath, stack: frozenset[int]) -> Any:
        # Keys merged with `<<` come first and are overridden by the mapping's own keys;
        # only the own keys can be duplicates.
        own_keys = {
            k.value for k, _ in node.value if isinstance(k, ScalarNode) and k.tag != _MERGE_TAG
        }
        result: dict[str, Any] = {}
        for key, (key_node, value_node) in self._merged(node, stack, 0).items():
            if key not in own_keys:
                self.key_lines[(*path, key)] = key_node.start_mark.line + 1
                result[key] = self.walk(value_node, (*path, key), stack)
        seen: dict[str, int] = {}  # the mapping's own keys -> line
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue
            key_line = key_node.start_mark.line + 1
            key = self._key(key_node)
            if key in seen:
                where = f"{format_path(path)}: " if path else ""
                raise YamlLoadError(
                    key_line, f"{where}duplicate key {key!r} (first defined on line {seen[key]})"
                )
            seen[key] = key_line
            self.key_lines[(*path, key)] = key_line
            result[key] = self.walk(value_node, (*path, key), stack)
        return result

    def _merged(
        self, node: MappingNode, stack: frozenset[int], depth: int
    ) -> dict[str, tuple[Node, Node]]:
        """The pairs `<<` merges into `node`, one per key: of a list of mappings the first
        that has the key wins, and a merged mapping's own keys win over what it merges in
        turn. One entry per key, so chained merges cannot multiply; every mapping visited
        counts as a value (MAX_VALUES), and chains are as deep as MAX_DEPTH."""
        found: dict[str, tuple[Node, Node]] = {}
        inner = stack | {id(node)}
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                continue
            line = value_node.start_mark.line + 1
            if depth >= MAX_DEPTH:
                raise YamlLoadError(line, f"merges (<<) chained deeper than {MAX_DEPTH} levels")
            sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
            for source in reversed(sources):
                self._count(line)
                if not isinstance(source, MappingNode) or source.tag != _MAP_TAG:
                    raise YamlLoadError(
                        source.start_mark.line + 1,
                        "invalid merge (<<): expected a mapping or a list of mappings",
                    )
                if id(source) in inner:
                    raise YamlLoadError(line, "recursive alias: a value cannot contain itself")
                found.update(self._merged(source, inner, depth + 1))
                for own_key, own_value in source.value:
                    if own_key.tag != _MERGE_TAG:
                        self._count(line)
                        found[self._key(own_key)] = (own_key, own_value)
        return found

    def _key(self, key_node: Node) -> str:
        line = key_node.start_mark.line + 1
        if not isinstance(key_node, ScalarNode):
            raise YamlLoadError(line, "mapping keys must be plain text")
        if _has_surrogate(key_node.value):
            raise YamlLoadError(line, _SURROGATE)
        return str(key_node.value)

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


_TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"
_SURROGATE = (
    "a \\uD800-\\uDFFF escape on its own is half of a UTF-16 pair, not a character; write "
    "the character itself or one \\U escape"
)
_SCALAR_KINDS: Mapping[str, str] = MappingProxyType(
    {
        "tag:yaml.org,2002:int": "an integer (decimal digits, at most 4300 of them; 0x.., 0o..)",
        "tag:yaml.org,2002:float": "a number",
        "tag:yaml.org,2002:bool": "a boolean (true/false, yes/no, on/off)",
    }
)
_SHOWN_CHARS = 40


def _describe_bad_scalar(node: ScalarNode) -> str:
    value = node.value if len(node.value) <= _SHOWN_CHARS else node.value[:_SHOWN_CHARS] + "..."
    kind = _SCALAR_KINDS.get(node.tag, f"a value of tag {node.tag}")
    return f"invalid value {value!r}: not {kind}"


def _has_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


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
