# The incident file as values: what `incident.yaml` says once it is loaded and checked
# (pytest_incident.spec builds it). Stdlib only, no I/O: every later layer reads these.
#
# One model for each setting: the loader resolves and compiles once (endpoints to loopback
# addresses, normalizers, enums), and the runtime, the verdict and the reports consume the
# same objects. `source:` is a reference (scheme, location, line) that the event-source
# registry resolves; the frozen file is one source among others.
from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from pytest_incident.model.endpoints import LoopbackEndpoint
from pytest_incident.model.normalizers import (
    BUILTIN_NORMALIZERS,
    DEFAULT_NORMALIZE,
    HeaderNormalizer,
    Normalizer,
)

_STATUS_RE = re.compile(r"(<=|>=|==|!=|<|>)?\s*([0-9]{3})")  # ASCII digits only
_STATUS_CLASS_RE = re.compile(r"([1-5])[xX]{2}")
_STATUS_OPS: Mapping[str, Callable[[int, int], bool]] = MappingProxyType(
    {
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
        "==": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "class": lambda a, b: a // 100 == b,
    }
)
_STATUS_FORMS = (
    "500, ==500, !=500, <500, <=499, >200, >=500, 5xx (codes 100-599, classes 1xx-5xx), "
    "or any of them: 2xx,409,422"
)


class OutboundMode(enum.Enum):
    STUB = "stub"
    BLOCK = "block"


class UnmatchedMode(enum.Enum):
    ERROR = "error"
    BLOCK = "block"


class EmailMode(enum.Enum):
    STUB = "stub"  # SMTP connections go to the SMTP stub: accepted, recorded, not delivered
    BLOCK = "block"  # SMTP connections are refused


class JobsMode(enum.Enum):
    RECORD = "record"  # job-queue connections go to the job stub: recorded, not dispatched
    BLOCK = "block"  # job-queue connections are refused


class MutationsMode(enum.Enum):
    SNAPSHOT = "snapshot"  # each request's side-effect log is asserted against a syrupy snapshot
    IGNORE = "ignore"


class DatabaseState(enum.Enum):
    # every request starts from the same database: a `usefixtures` fixture restores it
    REQUEST = "request"
    # each request sees the writes of the requests recorded before it, in recorded order,
    # from the state `database.before` restores once, before the window's first item
    WINDOW = "window"


class ScheduledMode(enum.Enum):
    HOLD = "hold"  # in-process schedulers start paused; PYTEST_INCIDENT_REPLAY=1 is set
    RUN = "run"  # left alone


@dataclass(frozen=True)
class StatusCondition:
    """`<500`, `<=499`, `>=500`, `>200`, `==200`, `!=500`, `500` or a class such as `5xx`;
    or a comma-separated list of them, which any one satisfies (`2xx,409,422`)."""

    op: str  # "<", "<=", ">", ">=", "==", "!=", "class" (value = first digit), or "any"
    value: int
    text: str
    any_of: tuple[StatusCondition, ...] = ()  # for "any"

    def matches(self, status: int) -> bool:
        if self.op == "any":
            return any(part.matches(status) for part in self.any_of)
        return _STATUS_OPS[self.op](status, self.value)

    def __str__(self) -> str:
        return self.text

    @classmethod
    def parse(cls, text: str | int) -> StatusCondition:
        if isinstance(text, bool) or not isinstance(text, int | str):
            raise ValueError(f"not a status condition: {text!r}; allowed: {_STATUS_FORMS}")
        source = str(text).strip()
        if "," in source:
            parts = tuple(cls.parse(part) for part in source.split(","))
            return cls("any", 0, source, parts)
        match = _STATUS_CLASS_RE.fullmatch(source)
        if match:
            return cls("class", int(match.group(1)), source)
        match = _STATUS_RE.fullmatch(source)
        if match and 100 <= int(match.group(2)) <= 599:
            return cls(match.group(1) or "==", int(match.group(2)), source)
        raise ValueError(f"{source!r} is not a status condition; allowed: {_STATUS_FORMS}")


# what `expect.resolved: true` means, and what the summary counts as resolved otherwise
RESOLVED_DEFAULT = StatusCondition("<", 400, "<400")


@dataclass(frozen=True)
class Window:
    start_ns: int
    end_ns: int

    def contains(self, ns: int) -> bool:
        return self.start_ns <= ns < self.end_ns


@dataclass(frozen=True)
class Select:
    service: str | None = None
    routes: tuple[str, ...] = ()  # "POST /signup" or "/signup" (any method); * in the path
    status: StatusCondition | None = None
    requests: tuple[str, ...] = ()  # lowercase trace-id prefixes, >= 4 hex digits


# The servers the harness runs an app with, by interface; the first is the default.
SERVERS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"wsgi": ("gunicorn", "waitress", "wsgiref"), "asgi": ("uvicorn", "hypercorn")}
)


# What `pytest-incident freeze` writes in its scaffold where the target belongs: loading it
# says what to fill in.
TARGET_PLACEHOLDER = "FILL-IN"


@dataclass(frozen=True)
class Target:
    """How to start the current code: exactly one of `wsgi`, `asgi` (an app the harness
    serves with `server`) or `command` (a program that serves on "{port}" itself)."""

    wsgi: str | None  # "package.module:attribute"
    command: tuple[str, ...] | None  # contains "{port}"
    env: Mapping[str, str]
    cwd: Path | None
    ready_timeout_s: float = 30.0
    request_timeout_s: float = 30.0
    # variables of pytest's own environment the target gets as they are (absent ones are
    # skipped); everything else of pytest's environment stays out of the target's
    pass_env: tuple[str, ...] = ()
    asgi: str | None = None  # "package.module:attribute"
    server: str | None = None  # one of SERVERS[interface]; None: the interface's default
    # the interpreter of wsgi/asgi targets and of "{python}" (None: pytest's own)
    python: Path | None = None

    @property
    def interface(self) -> str | None:
        """ "wsgi" or "asgi" for an app the harness serves; None for a command."""
        return "wsgi" if self.wsgi is not None else "asgi" if self.asgi is not None else None

    @property
    def app(self) -> str | None:
        return self.wsgi if self.wsgi is not None else self.asgi

    @property
    def served_by(self) -> str | None:
        """The server the harness runs the app with (None for a command)."""
        interface = self.interface
        if interface is None:
            return None
        return self.server or SERVERS[interface][0]


# The parts of an outbound call `sandbox.match_on` may name; `header:<name>` stands for any
# header. pytest_incident.core.matching implements each of them.
MATCH_FIELDS = ("method", "scheme", "host", "port", "path", "query")
MATCH_PARTS = (*MATCH_FIELDS, "body", "header:<name>")
DEFAULT_MATCH_ON = MATCH_FIELDS
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+")  # an HTTP token, lower case


def is_match_part(name: str) -> bool:
    """True for a part `match_on` accepts (lower case): a field, `body`, `header:<token>`."""
    if name.startswith("header:"):
        return bool(_HEADER_NAME.fullmatch(name.removeprefix("header:")))
    return name in MATCH_FIELDS or name == "body"


DEFAULT_QUEUES = ("localhost:6379",)


@dataclass(frozen=True)
class SandboxSpec:
    outbound: OutboundMode = OutboundMode.STUB
    allow: tuple[LoopbackEndpoint, ...] = ()  # live destinations, through the database tap
    unmatched: UnmatchedMode = UnmatchedMode.ERROR
    email: EmailMode = EmailMode.STUB
    jobs: JobsMode = JobsMode.RECORD
    # Redis endpoints the job stub stands in for (none when jobs: block)
    queues: tuple[LoopbackEndpoint, ...] = tuple(LoopbackEndpoint.parse(q) for q in DEFAULT_QUEUES)
    scheduled: ScheduledMode = ScheduledMode.HOLD
    match_on: tuple[str, ...] = DEFAULT_MATCH_ON
    normalize: tuple[Normalizer, ...] = ()  # outbound request bodies, before matching
    allow_unix: tuple[str, ...] = ()  # socket files that pass live (`unix:/path` entries)
    normalize_headers: tuple[HeaderNormalizer, ...] = ()  # header values, before matching


# What `expect.response: match` compares (`header:<name>` stands for any header) and what it
# compares when the file names nothing: the status, the body and its content type.
RESPONSE_PARTS = ("status", "body", "header:<name>")
DEFAULT_RESPONSE_MATCH = ("status", "body", "header:content-type")


def is_response_part(name: str) -> bool:
    """True for a part `expect.response.match` accepts (lower case)."""
    if name.startswith("header:"):
        return bool(_HEADER_NAME.fullmatch(name.removeprefix("header:")))
    return name in ("status", "body")


def is_noise_entry(name: str) -> bool:
    """True for what may be ignored in an answer: `header:<name>` or `body:<dotted.path>`
    (`*` for any key or index)."""
    if name.startswith("body:"):
        return bool(name.removeprefix("body:")) and "" not in name[5:].split(".")
    return name.startswith("header:") and is_response_part(name)


@dataclass(frozen=True)
class ResponseMatch:
    """`expect.response`: the answer of a request that succeeded in production must equal the
    recorded one in `parts`, apart from what `ignore` (and the calibration file) name."""

    parts: tuple[str, ...] = DEFAULT_RESPONSE_MATCH
    ignore: tuple[str, ...] = ()  # `header:<name>` / `body:<dotted.path>`, for every route


NOISE_SUFFIX = ".noise.yaml"


def noise_path(incident: Path) -> Path:
    """Where the calibration file of the incident file `incident` lives."""
    return incident.with_name(incident.stem + NOISE_SUFFIX)


def is_noise_file(path: Path) -> bool:
    """A calibration file (never an incident file itself)."""
    return path.name.endswith((NOISE_SUFFIX, ".noise.yml"))


@dataclass(frozen=True)
class Noise:
    """What differed between two replays of the same code (`--incident-calibrate`), per
    route ("POST /signup"): the answer's parts that are ignored when it is compared. Read
    from `<incident>.noise.yaml` beside the incident file."""

    path: Path | None = None  # None: there is no calibration file
    routes: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))

    def of(self, route: str) -> tuple[str, ...]:
        return self.routes.get(route, ())


@dataclass(frozen=True)
class Expect:
    status: StatusCondition | None = None
    # requests that failed in production must now answer so (None: not asserted)
    resolved: StatusCondition | None = None
    mutations: MutationsMode = MutationsMode.IGNORE
    # what varies between runs, replaced in the side-effect log before it is compared
    normalize: tuple[Normalizer, ...] = tuple(BUILTIN_NORMALIZERS[n] for n in DEFAULT_NORMALIZE)
    response: ResponseMatch | None = None  # None: the answer's content is not compared


@dataclass(frozen=True)
class DatabaseSpec:
    state: DatabaseState = DatabaseState.REQUEST
    # with state window: the fixture that puts the database in its state before the window,
    # requested once per run of the incident, by the first of its items that runs
    before: str | None = None

    @property
    def window(self) -> bool:
        return self.state is DatabaseState.WINDOW


@dataclass(frozen=True)
class SourceRef:
    """Where the recorded spans come from, as `source:` names it: `scheme://location`, or a
    file path (scheme "file", location resolved against the incident file's folder)."""

    scheme: str  # lower case: "file", "clickhouse", "chdb", or a plugin's
    location: str  # for "file", an absolute path
    text: str  # as written (after ${ENV} expansion)
    line: int  # of `source:` in the incident file

    @property
    def path(self) -> Path:
        """The location as a path (for file-like sources)."""
        return Path(self.location)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class IncidentSpec:
    path: Path
    name: str
    title: str
    window: Window
    source: SourceRef
    select: Select
    target: Target
    sandbox: SandboxSpec
    expect: Expect
    usefixtures: tuple[str, ...]
    line: int  # first line of the top-level mapping
    lines: Mapping[str, int]  # dotted key path -> line: "select.routes", "select.routes[0]"
    noise: Noise = field(default_factory=Noise)  # the calibration file beside it, when there is one
    database: DatabaseSpec = DatabaseSpec()
