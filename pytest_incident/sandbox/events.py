# What the tracer reports, as typed events that cross the process boundary as JSON Lines,
# both ways: the tracer writes `event.to_json()`, the runtime reads `parse_event(line)`. One
# module owns the format; nothing else builds or reads these dicts by key name.
#
# Every event carries `t`, time.monotonic_ns() in the tracer: CLOCK_MONOTONIC is one clock
# for every process of the machine, so the runtime orders events among its own effects.
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from pytest_incident.model.errors import ProtocolError


@dataclass(frozen=True)
class NetEvent:
    """The sandbox decided a connect or send (only decisions worth reporting are sent)."""

    pid: int
    call: str  # connect, sendto, sendmsg, sendmmsg
    dest: str  # "127.0.0.1:5432", "/run/x.sock", "(address family 16)"
    action: str  # policy Action value: allow, redirect, discard, refuse
    reason: str
    t: int
    host: str = ""  # the recorded host name the address stands for
    to: str = ""  # "ip:port" the call was redirected to

    event = "net"


@dataclass(frozen=True)
class ExitEvent:
    """The target's main process ended: its exit code, or the signal that killed it."""

    pid: int
    code: int | None
    signal: int | None
    t: int = 0

    event = "exit"


SandboxEvent = NetEvent | ExitEvent
_TYPES: dict[str, type[NetEvent] | type[ExitEvent]] = {"net": NetEvent, "exit": ExitEvent}


def to_json(event: SandboxEvent) -> str:
    """One line of the events file (without the newline)."""
    fields = {k: v for k, v in asdict(event).items() if v != "" or k in ("reason", "dest")}
    return json.dumps({"event": event.event, **fields})


def parse_event(line: str | bytes) -> SandboxEvent:
    """An event from one line; ProtocolError when it is not one."""
    try:
        data: Any = json.loads(line)
        kind = _TYPES[data.pop("event")]
        return kind(**data)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ProtocolError(f"not a sandbox event: {line!r} ({exc})") from None
