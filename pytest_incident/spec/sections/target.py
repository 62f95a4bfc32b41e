# `target:` how to start the current code: exactly one of `wsgi` (run by the bundled harness)
# or `command` (any server, `{port}` replaced by the port it must listen on), its environment
# (`env`, and `pass_env`: pytest's variables it gets as they are), working directory and
# timeouts.
from __future__ import annotations

import re
import shlex
from functools import partial
from types import MappingProxyType
from typing import Any

from pytest_incident.model.spec import Target
from pytest_incident.spec.reader import SectionReader
from pytest_incident.spec.scalars import parse_duration
from pytest_incident.spec.section import DURATION, TEXT_OR_LIST, Section, mapping
from pytest_incident.spec.yaml_loader import KeyPath

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_WSGI_RE = re.compile(rf"{_DOTTED}:{_DOTTED}")
_TIMEOUTS = ("ready_timeout", "request_timeout")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse(reader: SectionReader, data: dict[str, Any]) -> Target | None:
    ok = True
    present = [key for key in ("wsgi", "command") if key in data]
    if len(present) != 1:
        got = "both" if present else "neither"
        spans = [reader.key(("target", key)) for key in present]
        span = max(spans) if spans else reader.start(("target",))
        reader.add(span, f"target needs exactly one of: wsgi, command; got {got}")
        ok = False
    wsgi = data.get("wsgi")
    if wsgi is not None and not _WSGI_RE.fullmatch(wsgi.strip()):
        reader.fail(("target", "wsgi"), f"{wsgi!r} is not 'package.module:attribute'")
        ok = False
    command = _command(reader, data.get("command"))
    ok = ok and (command is not None or "command" not in data)
    env: dict[str, str] = {}
    for key, value in (data.get("env") or {}).items():
        path: KeyPath = ("target", "env", key)
        if not key or "=" in key or "\0" in key:
            reader.add(reader.key(path), f"target.env: {key!r} is not a variable name")
            ok = False
        else:
            env[key] = reader.as_text(path, value)
    pass_env: list[str] = []
    for path, name in reader.items(data, "pass_env", ("target",)):
        if not _ENV_NAME_RE.fullmatch(name):
            reader.fail(path, f"{name!r} is not an environment variable name")
            ok = False
        else:
            pass_env.append(name)
    cwd = None
    if "cwd" in data:
        cwd = (reader.base / data["cwd"]).absolute()
        if not cwd.is_dir():
            reader.fail(("target", "cwd"), f"directory not found: {cwd}")
            ok = False
    timeouts: dict[str, float] = {}
    for key in _TIMEOUTS:
        if key not in data:
            continue
        seconds = reader.attempt(("target", key), partial(parse_duration, data[key]))
        if seconds is None:
            ok = False
        elif seconds <= 0:
            reader.fail(("target", key), "must be more than 0")
            ok = False
        else:
            timeouts[f"{key}_s"] = seconds
    if not ok:
        return None
    return Target(
        wsgi=wsgi.strip() if wsgi is not None else None,
        command=command,
        env=MappingProxyType(env),
        cwd=cwd,
        pass_env=tuple(pass_env),
        **timeouts,
    )


def _command(reader: SectionReader, value: str | list[Any] | None) -> tuple[str, ...] | None:
    path: KeyPath = ("target", "command")
    if value is None:
        return None
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:
            reader.fail(path, f"cannot split the command: {exc}")
            return None
    else:
        argv = [reader.as_text((*path, i), item) for i, item in enumerate(value)]
    if not argv:
        reader.fail(path, "expected a command, got an empty string")
        return None
    if not any("{port}" in arg for arg in argv):
        reader.fail(
            path,
            "must contain {port}, replaced by the port the target listens on, "
            "e.g. 'gunicorn -b 127.0.0.1:{port} app:app'",
        )
        return None
    return tuple(argv)


SCHEMA = mapping(
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
        "pass_env": TEXT_OR_LIST,
        **{key: DURATION for key in _TIMEOUTS},
    }
)
SECTION = Section("target", "target", SCHEMA, parse, required=True, planned=(("target", "asgi"),))
