# The span model: OpenTelemetry spans in the shape of the Collector's ClickHouse exporter
# table `otel_traces`, and the timestamp forms ClickHouse and incident files use.
#
# Strategy: a Span is a frozen, flat copy of one `otel_traces` row (attributes are a
# str -> str map, exactly as ClickHouse stores them); pytest_incident.model.recorded reads
# meaning into them. Nothing here performs I/O.
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime


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


def parse_timestamp(text: str | int | float) -> int:
    """Nanoseconds from ClickHouse text (`2024-05-14 14:03:12.5`), ISO 8601, or a number."""
    if isinstance(text, int | float):
        return int(text)
    value = text.strip().replace("T", " ").removesuffix("Z").removesuffix("+00:00")
    whole, _, frac = value.partition(".")
    try:
        base = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"not a UTC timestamp: {text!r}") from None
    if frac and not frac.isdigit():
        raise ValueError(f"not a UTC timestamp: {text!r}")
    return int(base.timestamp()) * 1_000_000_000 + int((frac or "0").ljust(9, "0")[:9])
