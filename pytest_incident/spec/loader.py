# The incident file (DESIGN §3): one YAML file -> one frozen IncidentSpec.
#
# Strategy: three passes, each reporting the first problem by line order, so a file with many
# mistakes always gives the same single message.
#   1. yaml_loader composes the file and keeps, for every key path, its line span; YAML syntax
#      errors, duplicate keys and a non-mapping top level stop here.
#   2. `${NAME}` expansion, keys that are not supported yet, and JSON Schema (Draft 2020-12)
#      structure errors, each mapped through its `absolute_path` to a line and reworded.
#   3. Semantic checks in Python (window order, status conditions, source file, routes, ...)
#      on data whose shape pass 2 has guaranteed.
# Every mistake is one IncidentFileError(path, line, message) whose text is
# `path:line: message` followed by the offending source lines; never a traceback. The only I/O
# is reading the file and checking that `source` and `target.cwd` exist.
from __future__ import annotations

import ipaddress
import math
import re
import shlex
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

from jsonschema import Draft202012Validator  # type: ignore[import-untyped,unused-ignore]

from pytest_incident.model.endpoints import LoopbackEndpoint, addresses_of
from pytest_incident.model.errors import IncidentFileError
from pytest_incident.model.normalizers import (
    BUILTIN_NORMALIZERS,
    DEFAULT_NORMALIZE,
    NORMALIZED,
    FieldNormalizer,
    Normalizer,
    PatternNormalizer,
)
from pytest_incident.model.spans import parse_timestamp
from pytest_incident.model.spec import (
    DEFAULT_MATCH_ON,
    DEFAULT_QUEUES,
    MATCH_PARTS,
    EmailMode,
    Expect,
    IncidentSpec,
    JobsMode,
    MutationsMode,
    OutboundMode,
    SandboxSpec,
    ScheduledMode,
    Select,
    SourceRef,
    StatusCondition,
    Target,
    UnmatchedMode,
    Window,
    is_match_part,
)
from pytest_incident.spec.yaml_loader import (
    KeyPath,
    YamlDocument,
    YamlLoadError,
    format_path,
    load_yaml,
)

T = TypeVar("T")

TOP_LEVEL_KEYS = (
    "incident",
    "title",
    "window",
    "source",
    "select",
    "target",
    "sandbox",
    "expect",
    "usefixtures",
)
REQUIRED_KEYS = ("window", "source", "target")
# Keys of DESIGN §3 this version does not implement: rejected by name, never ignored.
NOT_SUPPORTED_YET: tuple[KeyPath, ...] = (
    ("injections",),
    ("repeat",),
    ("target", "asgi"),
)
VERSION_LABEL = "pytest-incident 0.1"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ENV_RE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_ROUTE_RE = re.compile(r"([A-Za-z]+)\s+(/\S*)")
_TRACE_PREFIX_RE = re.compile(r"[0-9a-fA-F]{4,32}")
_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_WSGI_RE = re.compile(rf"{_DOTTED}:{_DOTTED}")
_WINDOW_SEP_RE = re.compile(r"\s*\.\.\s*")
_DURATION_PART_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m|h)?")
_DURATION_UNITS: Mapping[str, float] = MappingProxyType(
    {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
)
_DURATION_FORMS = "a number with a unit: 200us, 2ms, 1.5s, 2m, 1h (a bare number is seconds)"


def file_error(
    path: Path, line: int, message: str, *, end_line: int | None = None
) -> IncidentFileError:
    """An IncidentFileError for a file read again for its excerpt (quietly none if it
    cannot be): for mistakes found after loading, e.g. by an event source."""
    return IncidentFileError(path, line, message, end_line=end_line, text=_read_quietly(path))


def _read_quietly(path: Path) -> str:
    try:
        with path.open(encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError):
        return ""


def parse_duration(text: str | int | float) -> float:
    """`15s`, `200us`, `2ms`, `1.5s`, `2m`, `1m30s` -> seconds; a bare number is seconds."""
    if isinstance(text, bool) or not isinstance(text, int | float | str):
        raise ValueError(f"not a duration: {text!r}; use {_DURATION_FORMS}")
    if isinstance(text, int | float):
        if not math.isfinite(text) or text < 0:
            raise ValueError(f"not a duration: {text!r}; use {_DURATION_FORMS}")
        return float(text)
    source = text.strip()
    total = 0.0
    position = 0
    parts = 0
    while position < len(source):
        match = _DURATION_PART_RE.match(source, position)
        if match is None or (parts and match.group(2) is None):
            raise ValueError(f"not a duration: {text!r}; use {_DURATION_FORMS}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
        position = match.end()
        while position < len(source) and source[position].isspace():
            position += 1
        parts += 1
        if match.group(2) is None and position < len(source):
            raise ValueError(f"not a duration: {text!r}; use {_DURATION_FORMS}")
    if not parts:
        raise ValueError(f"not a duration: {text!r}; use {_DURATION_FORMS}")
    return total


def load_incident(path: Path, environ: Mapping[str, str]) -> IncidentSpec:
    """Load and validate one incident file; every mistake raises IncidentFileError."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise IncidentFileError(path, 1, f"cannot read the file: {exc.strerror}", text="") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise IncidentFileError(path, line, "the file is not UTF-8 text", text="") from None
    try:
        document = load_yaml(text)
    except YamlLoadError as exc:
        raise IncidentFileError(
            path, exc.line, exc.message, end_line=exc.end_line, text=text
        ) from None
    if document is None:
        required = ", ".join(REQUIRED_KEYS)
        message = f"the file is empty; expected a mapping with at least: {required}"
        raise IncidentFileError(path, 1, message, text=text)
    return _Loader(path, text, document, environ).load()


# --- loading --------------------------------------------------------------------------------


class _Problem(NamedTuple):
    line: int
    seq: int
    end_line: int
    message: str


class _Problems:
    """Collected mistakes; `raise_first` reports the earliest by line (then by discovery)."""

    def __init__(self, path: Path, text: str) -> None:
        self._path = path
        self._text = text
        self._items: list[_Problem] = []

    def add(self, span: tuple[int, int], message: str) -> None:
        self._items.append(_Problem(span[0], len(self._items), span[1], message))

    def raise_first(self) -> None:
        if self._items:
            first = min(self._items)
            raise IncidentFileError(
                self._path, first.line, first.message, end_line=first.end_line, text=self._text
            )


def _schema() -> dict[str, Any]:
    """The structure of an incident file. Keys not supported yet are accepted here (`True`)
    and rejected by name before the schema runs."""
    text_or_list: dict[str, Any] = {"type": ["string", "array"], "items": {"type": "string"}}
    status: dict[str, Any] = {"type": ["string", "integer"]}
    duration: dict[str, Any] = {"type": ["string", "number"]}

    def mapping(properties: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "additionalProperties": False, "properties": properties}

    top = mapping(
        {
            "incident": {"type": "string"},
            "title": {"type": "string"},
            "window": {"type": "string"},
            "source": {"type": "string"},
            "select": mapping(
                {
                    "service": {"type": "string"},
                    "routes": text_or_list,
                    "status": status,
                    "requests": {
                        "type": ["string", "array"],
                        "items": {"type": ["string", "number"]},
                    },
                }
            ),
            "target": mapping(
                {
                    "wsgi": {"type": "string"},
                    "asgi": True,
                    "command": {
                        "type": ["string", "array"],
                        "minItems": 1,
                        "items": {"type": ["string", "number"]},
                    },
                    "env": {
                        "type": "object",
                        "additionalProperties": {"type": ["string", "number", "boolean"]},
                    },
                    "cwd": {"type": "string"},
                    "ready_timeout": duration,
                    "request_timeout": duration,
                }
            ),
            "sandbox": mapping(
                {
                    "outbound": {"enum": [mode.value for mode in OutboundMode]},
                    "email": {"enum": [mode.value for mode in EmailMode]},
                    "jobs": {"enum": [mode.value for mode in JobsMode]},
                    "queues": text_or_list,
                    "scheduled": {"enum": [mode.value for mode in ScheduledMode]},
                    "allow": text_or_list,
                    "unmatched": {"enum": [mode.value for mode in UnmatchedMode]},
                    "match_on": text_or_list,
                    "normalize": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "field": {"type": "string"},
                                "pattern": {"type": "string"},
                                "replace": {"type": "string"},
                            },
                        },
                    },
                }
            ),
            "expect": mapping(
                {
                    "status": status,
                    "resolved": {"type": "boolean"},
                    "mutations": {"enum": [mode.value for mode in MutationsMode]},
                    "normalize": {
                        "type": "array",
                        "items": {
                            "anyOf": [
                                {"enum": sorted(BUILTIN_NORMALIZERS)},
                                {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["pattern"],
                                    "properties": {
                                        "pattern": {"type": "string"},
                                        "replace": {"type": "string"},
                                    },
                                },
                            ]
                        },
                    },
                }
            ),
            "usefixtures": text_or_list,
            "injections": True,
            "repeat": True,
        }
    )
    top["required"] = list(REQUIRED_KEYS)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **top}


_TYPE_NAMES: Mapping[str, str] = MappingProxyType(
    {
        "object": "a mapping",
        "array": "a list",
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "a boolean (true/false)",
        "null": "nothing (null)",
    }
)


class _Loader:
    def __init__(
        self, path: Path, text: str, document: YamlDocument, environ: Mapping[str, str]
    ) -> None:
        self.path = path
        self.base = path.parent
        self.text = text
        self.doc = document
        self.environ = environ

    # -- helpers --

    def span(self, path: KeyPath) -> tuple[int, int]:
        return self.doc.span_of(path)

    def start(self, path: KeyPath) -> tuple[int, int]:
        line = self.doc.line_of(path)
        return (line, line)

    def key(self, path: KeyPath) -> tuple[int, int]:
        line = self.doc.key_lines.get(path) or self.doc.line_of(path)
        return (line, line)

    def shown(self, path: KeyPath, value: Any) -> str:
        """A value as the user wrote it, for messages."""
        if isinstance(value, str):
            return repr(value)
        if path in self.doc.raw:
            return repr(self.doc.raw[path])
        return _describe(value)

    def as_text(self, path: KeyPath, value: Any) -> str:
        """A scalar as text: strings as expanded, numbers and booleans as written."""
        if isinstance(value, str):
            return value
        return self.doc.raw.get(path, str(value))

    # -- pass 1 and 2 --

    def load(self) -> IncidentSpec:
        data = self.doc.data
        if not isinstance(data, dict):
            keys = ", ".join(TOP_LEVEL_KEYS)
            message = f"the top level must be a mapping (keys: {keys}), got {_describe(data)}"
            raise IncidentFileError(self.path, self.doc.line_of(()), message, text=self.text)
        problems = _Problems(self.path, self.text)
        data = self.expand(data, (), problems)
        self.check_not_supported(data, problems)
        self.check_schema(data, problems)
        problems.raise_first()
        problems = _Problems(self.path, self.text)
        spec = self.build(data, problems)
        problems.raise_first()
        assert spec is not None
        return spec

    def expand(self, value: Any, path: KeyPath, problems: _Problems) -> Any:
        if isinstance(value, dict):
            return {k: self.expand(v, (*path, k), problems) for k, v in value.items()}
        if isinstance(value, list):
            return [self.expand(v, (*path, i), problems) for i, v in enumerate(value)]
        if not isinstance(value, str):
            return value

        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(2), match.group(3)
            if match.group(1):  # `$${NAME}` is a literal `${NAME}`
                return match.group(0)[1:]
            if name not in self.environ and default is not None:
                return default  # `${NAME:-default}`
            if name not in self.environ:
                where = format_path(path)
                problems.add(self.span(path), f"{where}: environment variable {name} is not set")
                return match.group(0)
            return self.environ[name]

        return _ENV_RE.sub(substitute, value)

    def check_not_supported(self, data: dict[str, Any], problems: _Problems) -> None:
        for key_path in NOT_SUPPORTED_YET:
            parent: Any = data
            for part in key_path[:-1]:
                parent = parent.get(part) if isinstance(parent, dict) else None
            if isinstance(parent, dict) and key_path[-1] in parent:
                message = f"{format_path(key_path)}: not supported yet by {VERSION_LABEL}"
                problems.add(self.key(key_path), message)

    def check_schema(self, data: dict[str, Any], problems: _Problems) -> None:
        validator = Draft202012Validator(_schema())
        found: list[tuple[tuple[int, int], str]] = []
        for error in validator.iter_errors(data):
            found.extend(self.reword(error))
        for span, message in sorted(set(found)):
            problems.add(span, message)

    def reword(self, error: Any) -> Iterator[tuple[tuple[int, int], str]]:
        path: KeyPath = tuple(error.absolute_path)
        where = f"{format_path(path)}: " if path else ""
        kind = error.validator
        if kind == "additionalProperties":
            allowed = [
                key
                for key in error.schema.get("properties", {})
                if (*path, key) not in NOT_SUPPORTED_YET
            ]
            for key in error.instance:
                if key not in error.schema.get("properties", {}):
                    message = f"{where}unknown key {key!r}; allowed: {', '.join(allowed)}"
                    yield self.key((*path, key)), message
        elif kind == "required":
            for key in error.validator_value:
                if key not in error.instance:
                    yield self.start(path), f"{where}missing required key {key!r}"
        elif kind == "enum":
            choices = ", ".join(str(v) for v in error.validator_value)
            shown = self.shown(path, error.instance)
            yield self.span(path), f"{where}{shown} is not allowed; allowed: {choices}"
        elif kind == "type":
            types = error.validator_value
            names = [types] if isinstance(types, str) else list(types)
            wanted = [_TYPE_NAMES.get(name, name) for name in names]
            expected = " or ".join(
                [", ".join(wanted[:-1]), wanted[-1]] if len(wanted) > 1 else wanted
            )
            got = _describe(error.instance)
            yield self.span(path), f"{where}expected {expected}, got {got}"
        elif kind == "minItems":
            yield self.span(path), f"{where}expected at least {error.validator_value} item(s)"
        else:  # pragma: no cover - the schema uses no other keywords
            yield self.span(path), f"{where}{error.message}"

    # -- pass 3 --

    def build(self, data: dict[str, Any], problems: _Problems) -> IncidentSpec | None:
        checker = _Checker(self, problems)
        name = checker.name(data)
        window = checker.window(data["window"])
        source = checker.source(data["source"])
        select = checker.select(data.get("select") or {})
        target = checker.target(data["target"])
        sandbox = checker.sandbox(data.get("sandbox") or {})
        expect = checker.expect(data.get("expect") or {})
        usefixtures = checker.usefixtures(data.get("usefixtures"))
        if (
            window is None
            or source is None
            or select is None
            or target is None
            or sandbox is None
            or expect is None
            or usefixtures is None
        ):
            return None
        lines = {
            format_path(key_path): span[0] for key_path, span in self.doc.spans.items() if key_path
        }
        return IncidentSpec(
            path=self.path,
            name=name,
            title=data.get("title", ""),
            window=window,
            source=source,
            select=select,
            target=target,
            sandbox=sandbox,
            expect=expect,
            usefixtures=usefixtures,
            line=self.doc.line_of(()),
            lines=MappingProxyType(lines),
        )


class _Checker:
    """Semantic checks on data of the right shape; each returns None after a problem."""

    def __init__(self, loader: _Loader, problems: _Problems) -> None:
        self.loader = loader
        self.problems = problems

    def fail(self, path: KeyPath, message: str) -> None:
        self.problems.add(self.loader.span(path), f"{format_path(path)}: {message}")

    def attempt(self, path: KeyPath, parse: Callable[[], T]) -> T | None:
        """`parse()`, turning a ValueError into a problem at `path`."""
        try:
            return parse()
        except ValueError as exc:
            self.fail(path, str(exc))
            return None

    def items(self, data: dict[str, Any], key: str, path: KeyPath) -> list[tuple[KeyPath, Any]]:
        """A key holding one string or a list, as (path, item) pairs."""
        value = data.get(key)
        if value is None:
            return []
        if isinstance(value, list):
            return [((*path, key, i), item) for i, item in enumerate(value)]
        return [((*path, key), value)]

    def name(self, data: dict[str, Any]) -> str:
        if "incident" not in data:
            stem = self.loader.path.name
            for suffix in (".yaml", ".yml"):
                stem = stem.removesuffix(suffix)
            return stem
        name: str = data["incident"]
        if not _NAME_RE.fullmatch(name):
            self.fail(
                ("incident",),
                f"{name!r} is not a valid name; use letters, digits, '.', '_' and '-', "
                "starting with a letter or digit",
            )
        return name

    def window(self, text: str) -> Window | None:
        path: KeyPath = ("window",)
        parts = _WINDOW_SEP_RE.split(text.strip())
        if len(parts) != 2 or not all(parts):
            self.fail(
                path,
                f"expected 'START .. END' in UTC, e.g. "
                f"'2024-05-14T14:00:00Z .. 2024-05-14T14:30:00Z', got {text!r}",
            )
            return None
        stamps: list[int] = []
        for part in parts:
            try:
                stamps.append(parse_timestamp(part))
            except ValueError:
                self.fail(
                    path, f"{part!r} is not a UTC timestamp; expected e.g. 2024-05-14T14:00:00Z"
                )
                return None
        start, end = stamps
        if end <= start:
            self.fail(path, f"the end {parts[1]} is not after the start {parts[0]}")
            return None
        return Window(start, end)

    def source(self, text: str) -> SourceRef | None:
        """A reference only: which source reads it, and whether it can, is the event-source
        registry's to say (pytest_incident.events.sources), at this line."""
        line = self.loader.span(("source",))[0]
        stripped = text.strip()
        if not stripped:
            self.fail(("source",), "expected a frozen events file or a scheme://location")
            return None
        scheme = _SCHEME_RE.match(stripped)
        if scheme:
            return SourceRef(scheme.group(1).lower(), stripped, stripped, line)
        file = (self.loader.base / stripped).absolute()
        return SourceRef("file", str(file), stripped, line)

    def select(self, data: dict[str, Any]) -> Select | None:
        ok = True
        service = data.get("service")
        if service is not None and not service.strip():
            self.fail(("select", "service"), "expected a service name, got an empty string")
            ok = False
        routes: list[str] = []
        for path, text in self.items(data, "routes", ("select",)):
            match = _ROUTE_RE.fullmatch(text.strip())
            if match is None:
                self.fail(
                    path, f"{text!r} is not a route; expected 'METHOD /path', e.g. 'POST /signup'"
                )
                ok = False
            else:
                routes.append(f"{match.group(1).upper()} {match.group(2)}")
        status = None
        if "status" in data:
            status = self.attempt(
                ("select", "status"), lambda: StatusCondition.parse(data["status"])
            )
            ok = ok and status is not None
        requests: list[str] = []
        for path, value in self.items(data, "requests", ("select",)):
            text = self.loader.as_text(path, value).strip()
            if not _TRACE_PREFIX_RE.fullmatch(text):
                self.fail(path, f"{text!r} is not a trace id prefix; expected 4 to 32 hex digits")
                ok = False
            else:
                requests.append(text.lower())
        if not ok:
            return None
        return Select(
            service=service, routes=tuple(routes), status=status, requests=tuple(requests)
        )

    def target(self, data: dict[str, Any]) -> Target | None:
        ok = True
        present = [key for key in ("wsgi", "command") if key in data]
        if len(present) != 1:
            got = "both" if present else "neither"
            spans = [self.loader.key(("target", key)) for key in present]
            span = max(spans) if spans else self.loader.start(("target",))
            self.problems.add(span, f"target needs exactly one of: wsgi, command; got {got}")
            ok = False
        wsgi = data.get("wsgi")
        if wsgi is not None and not _WSGI_RE.fullmatch(wsgi.strip()):
            self.fail(("target", "wsgi"), f"{wsgi!r} is not 'package.module:attribute'")
            ok = False
        command = self.command(data)
        ok = ok and (command is not None or "command" not in data)
        env: dict[str, str] = {}
        for key, value in (data.get("env") or {}).items():
            path: KeyPath = ("target", "env", key)
            if not key or "=" in key or "\0" in key:
                self.problems.add(
                    self.loader.key(path), f"target.env: {key!r} is not a variable name"
                )
                ok = False
            else:
                env[key] = self.loader.as_text(path, value)
        cwd = None
        if "cwd" in data:
            cwd = (self.loader.base / data["cwd"]).absolute()
            if not cwd.is_dir():
                self.fail(("target", "cwd"), f"directory not found: {cwd}")
                ok = False
        timeouts: dict[str, float] = {}
        for key in ("ready_timeout", "request_timeout"):
            if key not in data:
                continue
            try:
                seconds = parse_duration(data[key])
            except ValueError as exc:
                self.fail(("target", key), str(exc))
                ok = False
                continue
            if seconds <= 0:
                self.fail(("target", key), "must be more than 0")
                ok = False
            timeouts[f"{key}_s"] = seconds
        if not ok:
            return None
        return Target(
            wsgi=wsgi.strip() if wsgi is not None else None,
            command=command,
            env=MappingProxyType(env),
            cwd=cwd,
            **timeouts,
        )

    def command(self, data: dict[str, Any]) -> tuple[str, ...] | None:
        path: KeyPath = ("target", "command")
        value = data.get("command")
        if value is None:
            return None
        if isinstance(value, str):
            try:
                argv = shlex.split(value)
            except ValueError as exc:
                self.fail(path, f"cannot split the command: {exc}")
                return None
        else:
            argv = [self.loader.as_text((*path, i), item) for i, item in enumerate(value)]
        if not argv:
            self.fail(path, "expected a command, got an empty string")
            return None
        if not any("{port}" in arg for arg in argv):
            self.fail(
                path,
                "must contain {port}, replaced by the port the target listens on, "
                "e.g. 'gunicorn -b 127.0.0.1:{port} app:app'",
            )
            return None
        return tuple(argv)

    def sandbox(self, data: dict[str, Any]) -> SandboxSpec | None:
        allow = self.endpoints(data, "allow")
        jobs = JobsMode(data.get("jobs", JobsMode.RECORD.value))
        explicit_queues = "queues" in data
        queues = (
            self.endpoints(data, "queues")
            if explicit_queues
            else tuple(LoopbackEndpoint.parse(q) for q in DEFAULT_QUEUES)
        )
        match_on = self.match_on(data)
        normalize = self.normalizers(data.get("normalize") or [])
        if allow is None or queues is None or match_on is None or normalize is None:
            return None
        if jobs is JobsMode.RECORD and not self.queues_apart(data, allow, queues, explicit_queues):
            return None
        return SandboxSpec(
            outbound=OutboundMode(data.get("outbound", OutboundMode.STUB.value)),
            allow=allow,
            unmatched=UnmatchedMode(data.get("unmatched", UnmatchedMode.ERROR.value)),
            email=EmailMode(data.get("email", EmailMode.STUB.value)),
            jobs=jobs,
            queues=queues if jobs is JobsMode.RECORD else (),
            scheduled=ScheduledMode(data.get("scheduled", ScheduledMode.HOLD.value)),
            match_on=match_on,
            normalize=normalize,
        )

    def queues_apart(
        self,
        data: dict[str, Any],
        allow: tuple[LoopbackEndpoint, ...],
        queues: tuple[LoopbackEndpoint, ...],
        explicit: bool,
    ) -> bool:
        """An endpoint is either live or a job queue: compared as resolved addresses."""
        queued = addresses_of(queues)
        paths = [path for path, _ in self.items(data, "allow", ("sandbox",))]
        for path, endpoint in zip(paths, allow, strict=True):
            if not endpoint.addresses & queued:
                continue
            if explicit:
                self.fail(
                    path,
                    f"{endpoint.text!r} is also in sandbox.queues; an endpoint is "
                    "either live or a job queue, not both",
                )
            else:
                self.fail(
                    path,
                    f"{endpoint.text!r} is the default job queue (sandbox.jobs: "
                    "record stubs localhost:6379); set sandbox.queues to your queue "
                    "endpoints, or sandbox.jobs: block, to let it through live",
                )
            return False
        return True

    def endpoints(self, data: dict[str, Any], key: str) -> tuple[LoopbackEndpoint, ...] | None:
        """`host:port` entries that stand for loopback endpoints, resolved once here."""
        found: list[LoopbackEndpoint] = []
        ok = True
        for path, text in self.items(data, key, ("sandbox",)):
            problem = _check_host_port(text.strip())
            if problem is None:
                try:
                    found.append(LoopbackEndpoint.parse(text.strip()))
                except ValueError as exc:
                    problem = str(exc)
            if problem:
                self.fail(path, problem)
                ok = False
        return tuple(found) if ok else None

    def match_on(self, data: dict[str, Any]) -> tuple[str, ...] | None:
        if "match_on" not in data:
            return DEFAULT_MATCH_ON
        parts: list[str] = []
        entries = self.items(data, "match_on", ("sandbox",))
        if not entries:
            self.fail(
                ("sandbox", "match_on"),
                "an empty match_on would serve any call with "
                f"any recorded one; allowed parts: {', '.join(MATCH_PARTS)}",
            )
            return None
        for path, text in entries:
            part = text.strip().lower()
            if not is_match_part(part):
                self.fail(
                    path, f"{text!r} is not a part of a call; allowed: {', '.join(MATCH_PARTS)}"
                )
                return None
            if part in parts:
                self.fail(path, f"{text!r} is listed twice")
                return None
            parts.append(part)
        return tuple(parts)

    def normalizers(self, rules: list[dict[str, str]]) -> tuple[Normalizer, ...] | None:
        found: list[Normalizer] = []
        for i, rule in enumerate(rules):
            path: KeyPath = ("sandbox", "normalize", i)
            replacement = rule.get("replace", NORMALIZED)
            if ("field" in rule) == ("pattern" in rule):
                self.fail(
                    path,
                    "a normalizer needs exactly one of: field (a body field path "
                    "such as metadata.request_id), pattern (a regular expression)",
                )
                return None
            if "field" in rule:
                found.append(FieldNormalizer(rule["field"], replacement))
                continue
            try:
                found.append(PatternNormalizer(re.compile(rule["pattern"]), replacement))
            except re.error as exc:
                self.fail((*path, "pattern"), f"not a regular expression: {exc}")
                return None
        return tuple(found)

    def expect(self, data: dict[str, Any]) -> Expect | None:
        status = None
        if "status" in data:
            status = self.attempt(
                ("expect", "status"), lambda: StatusCondition.parse(data["status"])
            )
            if status is None:
                return None
        rules: list[Normalizer] = []
        for i, rule in enumerate(data.get("normalize", list(DEFAULT_NORMALIZE))):
            if isinstance(rule, str):
                rules.append(BUILTIN_NORMALIZERS[rule])
                continue
            try:
                pattern = re.compile(rule["pattern"])
            except re.error as exc:
                self.fail(("expect", "normalize", i, "pattern"), f"not a regular expression: {exc}")
                return None
            rules.append(PatternNormalizer(pattern, rule.get("replace", NORMALIZED)))
        return Expect(
            status=status,
            resolved=bool(data.get("resolved", False)),
            mutations=MutationsMode(data.get("mutations", MutationsMode.IGNORE.value)),
            normalize=tuple(rules),
        )

    def usefixtures(self, value: str | list[str] | None) -> tuple[str, ...] | None:
        names = self.items({"usefixtures": value}, "usefixtures", ())
        ok = True
        for path, name in names:
            if not name.isidentifier():
                self.fail(path, f"{name!r} is not a fixture name")
                ok = False
        return tuple(name for _, name in names) if ok else None


def _check_host_port(text: str) -> str | None:
    """None if `text` is `host:port` or `[v6]:port`, else what is wrong."""
    expected = "expected 'host:port' or '[v6 address]:port', e.g. 'localhost:5432'"
    if text.startswith("["):
        address, sep, port = text[1:].partition("]:")
        if not sep:
            return f"{text!r} is not a destination; {expected}"
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return f"{address!r} is not an IPv6 address; {expected}"
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host or ":" in host or any(c.isspace() for c in host):
            return f"{text!r} is not a destination; {expected}"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"{text!r}: the port must be a number from 1 to 65535; {expected}"
    return None


def _describe(value: Any) -> str:
    """What a YAML value is, for 'expected X, got Y' messages."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    return f"a {type(value).__name__}"
