# Where incident files are, and which one `--incident NAME` means: the ini `incident_dirs`
# checked, walked, and a name looked up, without one bad file or directory stopping the run.
#
# Strategy: names before contents. The walk lists names only (os.scandir, no symlinked
# directory followed, unreadable or vanishing entries passed over, at most MAX_WALK_ENTRIES
# entries). A name is first looked for among the file stems, which opens nothing; only when no
# stem matches are the `incident:` keys read, each file through spec.document (regular files
# only, non-blocking, bounded). A file whose name cannot be read there is passed over and
# listed in the "no such incident" message; when it is collected (selected by its stem, or
# named as a path) its own collection error says `file:line` what is wrong with it.
from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from pytest_incident.model.errors import IncidentFileError
from pytest_incident.spec.document import not_regular, read_document

MAX_WALK_ENTRIES = 100_000  # directory entries looked at under the incident directories
DEFAULT_DIRS = ("incidents",)  # the ini default, which need not exist
_ALLOWED_DIRS = "directories (relative to the rootdir) that hold incident YAML files"


def incident_dirs(rootpath: Path, entries: Sequence[str]) -> tuple[Path, ...]:
    """The ini `incident_dirs`, resolved against `rootpath`. Each must be a readable
    directory, except the default `incidents`, which may be absent; anything else is a
    pytest.UsageError saying what is allowed."""
    dirs: list[Path] = []
    for entry in entries:
        if not entry.strip():
            raise pytest.UsageError(f"ini incident_dirs: an empty entry; allowed: {_ALLOWED_DIRS}")
        directory = rootpath / entry
        problem = _directory_problem(directory)
        if problem == "missing" and tuple(entries) == DEFAULT_DIRS:
            problem = ""
        if problem:
            problem = "does not exist" if problem == "missing" else problem
            raise pytest.UsageError(
                f"ini incident_dirs: {_shown(directory)} {problem}; allowed: {_ALLOWED_DIRS}"
            )
        dirs.append(directory)
    return tuple(dirs)


def _directory_problem(directory: Path) -> str:
    try:
        mode = os.stat(directory).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    except OSError as exc:
        return f"cannot be looked at ({exc.strerror or exc})"
    except ValueError as exc:  # a NUL, from `-o incident_dirs=...`
        return f"cannot be looked at ({exc})"
    if not stat.S_ISDIR(mode):
        return f"is {not_regular(mode) or 'a file'}, not a directory"
    if not os.access(directory, os.R_OK | os.X_OK):
        return "cannot be read (no permission)"
    return ""


def incident_files(dirs: Sequence[Path], is_incident: Callable[[Path], bool]) -> list[Path]:
    """The incident paths under `dirs`, sorted, by name only (special files included: they
    are refused by name when selected); `__snapshots__` folders are not looked into."""
    found: list[Path] = []
    seen = 0
    for directory in dirs:
        for path in _walk(directory):
            seen += 1
            if seen > MAX_WALK_ENTRIES:
                raise pytest.UsageError(
                    f"ini incident_dirs: more than {MAX_WALK_ENTRIES} entries under "
                    f"{', '.join(_shown(d) for d in dirs)}; allowed: {_ALLOWED_DIRS}"
                )
            if is_incident(path):
                found.append(path)
    return sorted(found)


def _walk(directory: Path) -> Iterator[Path]:
    """Every entry under `directory` that is not a directory (symlinked ones are not
    followed); what cannot be listed is passed over."""
    pending = [directory]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                listed = list(entries)
        except (OSError, ValueError):
            continue
        for entry in listed:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if entry.name != "__snapshots__":
                    pending.append(path)
                yield path  # counted, and a directory named *.yaml is refused when selected
            else:
                yield path


def find_incident(files: Sequence[Path], name: str, dirs: Sequence[Path]) -> Path:
    """The file `--incident NAME` means: its stem, else its `incident:` key."""
    if not name.strip() or "/" in name or "\0" in name:
        raise pytest.UsageError(
            f"--incident {name!r}: expected an incident name (a file's stem or its "
            "`incident:`); an incident file is named as a path argument instead"
        )
    for path in files:
        if path.stem == name:
            return _selectable(path, name)
    unread: list[str] = []
    names: list[str] = []
    for path in files:
        declared, problem = declared_name(path)
        if declared == name:
            return path
        if problem:
            unread.append(f"{_shown(path)} ({problem})")
        else:
            names.append(declared)
    where = ", ".join(_shown(d) for d in dirs) or "no directory (ini incident_dirs is empty)"
    message = f"--incident {name}: no such incident in {where}; known: "
    message += ", ".join(sorted(set(names))) or "none"
    if unread:
        message += "; names not read from: " + ", ".join(unread)
    raise pytest.UsageError(message)


def _selectable(path: Path, name: str) -> Path:
    """`path`, when it is a regular file: a directory, FIFO, device or socket named like an
    incident file is refused by name (pytest would not collect it; it is never opened)."""
    try:
        kind = not_regular(os.stat(path).st_mode)
    except (OSError, ValueError):
        return path  # its collection error says what is wrong
    if kind is not None:
        raise pytest.UsageError(
            f"--incident {name}: {_shown(path)} is {kind}, not a regular file; an incident "
            "file is a YAML file"
        )
    return path


def declared_name(path: Path) -> tuple[str, str]:
    """The `incident:` value (the stem when there is none) and, when the file could not be
    read for it, what is wrong (validation proper comes at collection)."""
    try:
        _, document = read_document(path)
    except FileNotFoundError:
        return path.stem, "vanished"
    except IncidentFileError as exc:
        problem = exc.message if len(exc.message) <= 80 else exc.message[:80] + "..."
        return path.stem, f"line {exc.line}: {problem}"
    data = document.data if document is not None else None
    name = data.get("incident") if isinstance(data, dict) else None
    if name is None or name == "" or isinstance(name, dict | list):
        return path.stem, ""
    return document.raw.get(("incident",), str(name)) if document else str(name), ""


def _shown(path: Path) -> str:
    """A path as the user knows it: relative to the working directory when inside it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except (OSError, ValueError):
        return str(path)
