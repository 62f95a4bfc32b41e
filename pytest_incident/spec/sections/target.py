# `target:` how to start the current code: exactly one of `wsgi` or `asgi` (an app the bundled
# harness serves with `server`) or `command` (any server, `{port}` replaced by the port it must
# listen on), the interpreter (`python`: a file or a venv folder), its environment (`env`, and
# `pass_env`: pytest's variables it gets as they are), working directory and timeouts.
from __future__ import annotations

import os
import re
import shlex
import stat
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

from pytest_incident.model.spec import SERVERS, TARGET_PLACEHOLDER, Target
from pytest_incident.spec.reader import SectionReader
from pytest_incident.spec.scalars import parse_duration
from pytest_incident.spec.section import DURATION, TEXT_OR_LIST, Section, mapping
from pytest_incident.spec.yaml_loader import KeyPath

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_APP_RE = re.compile(rf"{_DOTTED}:{_DOTTED}")
_TIMEOUTS = ("ready_timeout", "request_timeout")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KINDS = ("wsgi", "asgi", "command")
# what no argument, environment value or path can hold (the kernel takes C strings)
_NUL = "contains a NUL character (\\0), which no command argument, variable or path can hold"
_SHOWN_PATH_CHARS = 200
_PLACEHOLDER_MESSAGE = (
    f"fill in how to start the current code ({TARGET_PLACEHOLDER} is the placeholder "
    "`pytest-incident freeze` wrote): the app as 'package.module:attribute' "
    "(e.g. myservice.app:app), or replace this key with asgi: or command:"
)


def parse(reader: SectionReader, data: dict[str, Any]) -> Target | None:
    ok = True
    present = [key for key in _KINDS if key in data]
    if len(present) != 1:
        got = " and ".join(present) or "none"
        spans = [reader.key(("target", key)) for key in present]
        span = max(spans) if spans else reader.start(("target",))
        reader.add(span, f"target needs exactly one of: {', '.join(_KINDS)}; got {got}")
        ok = False
    apps: dict[str, str] = {}
    for kind in ("wsgi", "asgi"):
        ref = data.get(kind)
        if ref is not None and ref.strip() == TARGET_PLACEHOLDER:
            reader.fail(("target", kind), _PLACEHOLDER_MESSAGE)
            ok = False
        elif ref is not None and not _is_app_reference(ref.strip()):
            reader.fail(("target", kind), f"{ref!r} is not 'package.module:attribute'")
            ok = False
        elif ref is not None:
            apps[kind] = ref.strip()
    server = _server(reader, data, present)
    ok = ok and (server is not None or "server" not in data)
    command = _command(reader, data.get("command"))
    ok = ok and (command is not None or "command" not in data)
    env: dict[str, str] = {}
    for key, value in (data.get("env") or {}).items():
        path: KeyPath = ("target", "env", key)
        if not key or "=" in key or "\0" in key:
            reader.add(reader.key(path), f"target.env: {key!r} is not a variable name")
            ok = False
        elif "\0" in (text := reader.as_text(path, value)):
            reader.fail(path, _NUL)
            ok = False
        else:
            env[key] = text
    pass_env: list[str] = []
    for path, name in reader.items(data, "pass_env", ("target",)):
        if not _ENV_NAME_RE.fullmatch(name):
            reader.fail(path, f"{name!r} is not an environment variable name")
            ok = False
        else:
            pass_env.append(name)
    python = _python(reader, data.get("python"), command)
    ok = ok and (python is not None or "python" not in data)
    cwd = None
    if "cwd" in data:
        cwd = _cwd(reader, data["cwd"])
        ok = ok and cwd is not None
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
        wsgi=apps.get("wsgi"),
        asgi=apps.get("asgi"),
        server=server,
        python=python,
        command=command,
        env=MappingProxyType(env),
        cwd=cwd,
        pass_env=tuple(pass_env),
        **timeouts,
    )


def _is_app_reference(text: str) -> bool:
    """`package.module:attribute`, every part a Python identifier."""
    if not _APP_RE.fullmatch(text):
        return False
    return all(part.isidentifier() for part in re.split(r"[.:]", text))


def _stat(path: Path) -> os.stat_result | str | None:
    """What `path` is: its stat, None when nothing is there, or why it cannot be looked at
    (any OSError a path from the file can raise: too long, a loop, no permission)."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        return f"{_shown(path)}: {exc.strerror or exc}"


def _shown(path: Path) -> str:
    text = str(path)
    return text if len(text) <= _SHOWN_PATH_CHARS else text[:_SHOWN_PATH_CHARS] + "..."


def _cwd(reader: SectionReader, value: str) -> Path | None:
    path: KeyPath = ("target", "cwd")
    if "\0" in value:
        reader.fail(path, _NUL)
        return None
    cwd = (reader.base / value).absolute()
    found = _stat(cwd)
    if isinstance(found, str):
        reader.fail(path, found)
        return None
    if found is None or not stat.S_ISDIR(found.st_mode):
        reader.fail(path, f"directory not found: {_shown(cwd)}")
        return None
    return cwd


def _server(reader: SectionReader, data: dict[str, Any], present: list[str]) -> str | None:
    """`server`, checked against the app's interface (only a wsgi/asgi app has one)."""
    name = data.get("server")
    if name is None:
        return None
    path: KeyPath = ("target", "server")
    apps = [kind for kind in present if kind in SERVERS]
    if not apps:
        reader.fail(
            path,
            "only with target.wsgi or target.asgi (a command starts its own server); "
            + "; ".join(f"with {kind}: {', '.join(SERVERS[kind])}" for kind in SERVERS),
        )
        return None
    allowed = SERVERS[apps[0]]
    if name not in allowed:
        others = [kind for kind in SERVERS if name in SERVERS[kind]]
        what = f"serves {others[0]} apps, not {apps[0]}" if others else "is not a server"
        reader.fail(path, f"{name!r} {what}; allowed with target.{apps[0]}: {', '.join(allowed)}")
        return None
    return str(name)


def _python(
    reader: SectionReader, value: str | None, command: tuple[str, ...] | None
) -> Path | None:
    """`python`: an interpreter, or a venv folder (its bin/python), relative to the incident
    file's folder; kept as written, not resolved (a venv's python is a symlink whose own
    path tells it its venv)."""
    if value is None:
        return None
    path: KeyPath = ("target", "python")
    if not value.strip():
        reader.fail(path, "expected an interpreter or a venv folder, got an empty string")
        return None
    if "\0" in value:
        reader.fail(path, _NUL)
        return None
    python = Path(os.path.normpath(reader.base / Path(value).expanduser()))
    found = _stat(python)
    if isinstance(found, os.stat_result) and stat.S_ISDIR(found.st_mode):
        venv = python
        python = venv / "bin" / "python"
        found = _stat(python)
        if found is None:
            reader.fail(path, f"{_shown(venv)} is a folder without bin/python (not a venv)")
            return None
    if isinstance(found, str):
        reader.fail(path, found)
        return None
    if found is None:
        reader.fail(path, f"interpreter not found: {_shown(python)}")
        return None
    if not stat.S_ISREG(found.st_mode) or not os.access(python, os.X_OK):
        reader.fail(path, f"not an executable file: {_shown(python)}")
        return None
    if command is not None and not any("{python}" in arg for arg in command):
        reader.fail(
            path,
            "the command does not use {python}; target.python is the interpreter of "
            "wsgi/asgi targets and of {python} in a command",
        )
        return None
    return python


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
    for i, arg in enumerate(argv):
        if "\0" in arg:
            reader.fail((*path, i) if isinstance(value, list) else path, _NUL)
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
        "asgi": {"type": "string"},
        "command": {
            "type": ["string", "array"],
            "minItems": 1,
            "items": {"type": ["string", "number"]},
        },
        "server": {"type": "string"},
        "python": {"type": "string"},
        "env": {
            "type": "object",
            "additionalProperties": {"type": ["string", "number", "boolean"]},
        },
        "cwd": {"type": "string"},
        "pass_env": TEXT_OR_LIST,
        **{key: DURATION for key in _TIMEOUTS},
    }
)
SECTION = Section("target", "target", SCHEMA, parse, required=True)
