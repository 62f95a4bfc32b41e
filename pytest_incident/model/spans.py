# The span model: OpenTelemetry spans in the shape of the Collector's ClickHouse exporter
# table `otel_traces`, and the timestamp forms ClickHouse and incident files use.
#
# Strategy: a Span is a frozen, flat copy of one `otel_traces` row (attributes are a
# str -> str map, exactly as ClickHouse stores them); pytest_incident.model.recorded reads
# meaning into them. Nothing here performs I/O.
from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

# The timestamps a recording may hold: from the epoch to the last instant of year 9999 (what
# a datetime can show), in nanoseconds.
MAX_TIMESTAMP_NS = 253_402_300_799_999_999_999


class SpanKind(enum.Enum):
    UNSPECIFIED = "Unspecified"
    INTERNAL = "Internal"
    SERVER = "Server"
    CLIENT = "Client"
    PRODUCER = "Producer"
    CONSUMER = "Consumer"

    @classmethod
    def parse(cls, text: str) -> SpanKind:
        """Accept the exporter's names ("Server") and the protobuf names ("SPAN_KIND_SERVER")."""
        name = text.strip().upper().removeprefix("SPAN_KIND_")
        try:
            return cls[name]
        except KeyError:
            allowed = ", ".join(k.value for k in cls)
            raise ValueError(f"unknown SpanKind {text!r}; allowed: {allowed}") from None


@dataclass(frozen=True)
class SpanEvent:
    timestamp_ns: int
    name: str
    attributes: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SpanOrigin:
    """Where a span was read: its recording's file and line (for messages)."""

    path: Path
    line: int


@dataclass(frozen=True)
class Span:
    timestamp_ns: int  # start, nanoseconds since the epoch (UTC)
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    kind: SpanKind
    service: str
    attributes: Mapping[str, str]
    duration_ns: int
    status_code: str = "Unset"
    status_message: str = ""
    resource_attributes: Mapping[str, str] = field(default_factory=dict)
    events: tuple[SpanEvent, ...] = ()
    # where it was read, when a file holds it; not part of the span's value
    origin: SpanOrigin | None = field(default=None, compare=False, repr=False)

    @property
    def end_ns(self) -> int:
        return self.timestamp_ns + self.duration_ns

    def attr(self, key: str, default: str = "") -> str:
        return self.attributes.get(key, default)


def format_timestamp(ns: int) -> str:
    """ClickHouse DateTime64(9) text form, UTC: `2024-05-14 14:03:12.123456789`."""
    seconds, frac = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp}.{frac:09d}"


def parse_timestamp(text: object) -> int:
    """Nanoseconds from ClickHouse text (`2024-05-14 14:03:12.5`), ISO 8601, or a number of
    nanoseconds; ValueError for anything else (ASCII digits only, 1970 to 9999)."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError(f"not a UTC timestamp: {text!r}")
    if isinstance(text, float) and not math.isfinite(text):
        raise ValueError(f"not a UTC timestamp: {text!r}")
    ns = int(text) if isinstance(text, int | float) else _parse_text(text)
    if not 0 <= ns <= MAX_TIMESTAMP_NS:
        raise ValueError(f"timestamp {text!r} is out of range; allowed: 1970 to 9999")
    return ns


def _parse_text(text: str) -> int:
    value = text.strip().replace("T", " ").removesuffix("Z").removesuffix("+00:00")
    whole, _, frac = value.partition(".")
    if not value.isascii():  # strptime would take other scripts' digits
        raise ValueError(f"not a UTC timestamp: {text!r}")
    try:
        base = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"not a UTC timestamp: {text!r}") from None
    if frac and not frac.isdigit():
        raise ValueError(f"not a UTC timestamp: {text!r}")
    return int(base.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])
