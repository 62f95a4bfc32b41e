# Small value parsers the incident file's sections share: durations, `host:port`
# destinations, and how a YAML value is named in a message. Pure; ValueError or a message.
from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

# ASCII digits only, here and in ports: `\d` and str.isdigit() also take `५` or `²`
_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ns|us|µs|ms|s|m|h)?")
_DURATION_UNITS: Mapping[str, float] = MappingProxyType(
    {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
)
MAX_DURATION_S = 7 * 24 * 3600.0  # a week: longer is a mistake, and overflows timers
_DURATION_FORMS = "a number with a unit: 200us, 2ms, 1.5s, 2m, 1h (a bare number is seconds)"


def parse_duration(text: str | int | float) -> float:
    """`15s`, `200us`, `2ms`, `1.5s`, `2m`, `1m30s` -> seconds; a bare number is seconds."""
    if isinstance(text, bool) or not isinstance(text, int | float | str):
        raise ValueError(f"not a duration: {text!r}; use {_DURATION_FORMS}")
    if isinstance(text, int | float):
        if (isinstance(text, float) and not math.isfinite(text)) or text < 0:
            raise ValueError(f"not a duration: {text!r}; use {_DURATION_FORMS}")
        return _bounded(text)
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
    return _bounded(total)


def _bounded(seconds: float) -> float:
    """`seconds` as a float, if it is at most MAX_DURATION_S (`1e400s` is inf: not)."""
    if not seconds <= MAX_DURATION_S:  # compares a huge int exactly; nan is not <=
        raise ValueError(f"too long a duration: at most {MAX_DURATION_S:.0f}s (a week)")
    return float(seconds)


def check_host_port(text: str) -> str | None:
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
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        return f"{text!r}: the port must be a number from 1 to 65535; {expected}"
    return None


def describe(value: Any) -> str:
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
