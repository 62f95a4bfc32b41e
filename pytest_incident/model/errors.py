# Every exception pytest-incident raises, in one hierarchy (stdlib only, no I/O).
#
#   IncidentError                    anything pytest-incident raises on purpose
#   ├── FileError                    a user's file is wrong: `path:line: message` + excerpt
#   │   ├── IncidentFileError        ... an incident YAML file
#   │   ├── RecordingError           ... a recording (frozen events file, event source)
#   │   └── ConfigFileError          ... the project's configuration (pyproject.toml)
#   ├── SourceError                  an event source reference that cannot be read, where no
#   │                                file is to blame (the command line's --source)
#   ├── ReplayError                  a replay could not run as configured
#   │   ├── ReplayConfigError        ... a setting that cannot be honoured
#   │   └── TargetError              ... the target did not start or stopped answering
#   ├── ReplayFailure                a replayed request did not meet the expectations
#   └── ProtocolError                bytes that do not follow a wire protocol
#
# A FileError carries the excerpt (source lines around `line`, marked with `>`) computed
# by whoever read the file; this module never reads it. Messages say what is wrong and
# what is allowed; they are the product's interface and kept as good as the tests pin them.
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

CONTEXT_LINES = 2  # source lines shown before the offending one
MAX_MARKED_LINES = 6  # a long offending value is cut after this many lines
MAX_SHOWN_COLUMNS = 200  # a long line is cut after this many characters


class IncidentError(Exception):
    """Base class of every exception pytest-incident raises on purpose."""


class FileError(IncidentError):
    """A mistake in a user's file: `path:line: message` plus the offending source lines.

    `text` is the file's content, for the excerpt; without it there is no excerpt.
    """

    def __init__(
        self,
        path: Path | str,
        line: int,
        message: str,
        *,
        end_line: int | None = None,
        text: str | None = None,
    ) -> None:
        super().__init__(path, line, message)
        self.path = Path(path)
        self.line = line
        self.end_line = max(end_line or line, line)
        self.message = message
        self.excerpt = format_excerpt(text.splitlines(), line, self.end_line) if text else ""

    def __str__(self) -> str:
        header = f"{self.path}:{self.line}: {self.message}"
        return f"{header}\n{self.excerpt}" if self.excerpt else header

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (type(self), self.path, self.line, self.message, self.end_line, self.excerpt),
        )


def _rebuild(
    kind: type[FileError], path: Path, line: int, message: str, end_line: int, excerpt: str
) -> FileError:
    error = kind(path, line, message, end_line=end_line)
    error.excerpt = excerpt
    return error


class IncidentFileError(FileError):
    """A mistake in an incident YAML file."""


class RecordingError(FileError):
    """A mistake in a recording: a frozen events file or what an event source returned."""


class ConfigFileError(FileError):
    """A mistake in the project's configuration: pyproject.toml's [tool.pytest-incident]."""


class SourceError(IncidentError):
    """An event source that cannot be read as referenced (unreachable server, bad
    credentials, missing table or columns, nothing in the window), in one line. An
    incident's source turns it into an IncidentFileError at its `source:` line; the
    command line prints it after the option that named the source. `key` is the incident
    file's key it concerns: "source", or "window" / "select" for a window or selection that
    keeps nothing."""

    def __init__(self, message: str, *, key: str = "source") -> None:
        super().__init__(message)
        self.message = message
        self.key = key

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_source_error, (type(self), self.message, self.key))


def _rebuild_source_error(kind: type[SourceError], message: str, key: str) -> SourceError:
    return kind(message, key=key)


class ReplayError(IncidentError):
    """A replay could not run as configured (reported on the item, not as a traceback)."""


class ReplayConfigError(ReplayError):
    """A setting that cannot be honoured."""


class TargetError(ReplayError):
    """The target could not be started or stopped answering."""


class IsolationUnavailable(ReplayError):
    """The kernel boundary the sandbox asks for (a network namespace) cannot be made here."""


class ReplayFailure(IncidentError):
    """The replayed request did not meet the incident's expectations; `report` says how,
    `summary` in one line (the short test summary's, and junitxml's message)."""

    def __init__(self, report: str, summary: str = "") -> None:
        super().__init__(report)
        self.report = report
        self.summary = summary or report.partition("\n")[0]


class ProtocolError(IncidentError, ValueError):
    """Bytes that do not follow the wire protocol a parser reads."""


def format_excerpt(lines: Sequence[str], line: int, end_line: int | None = None) -> str:
    """Source lines `line`..`end_line` marked with `>`, after CONTEXT_LINES lines before."""
    if not lines or not 1 <= line <= len(lines):
        return ""
    last = min(max(end_line or line, line), len(lines))
    shown_last = min(last, line + MAX_MARKED_LINES - 1)
    first = max(1, line - CONTEXT_LINES)
    width = max(3, len(str(shown_last)) + 1)
    out = []
    for number in range(first, shown_last + 1):
        mark = ">" if number >= line else ""
        text = lines[number - 1]
        if len(text) > MAX_SHOWN_COLUMNS:
            text = text[:MAX_SHOWN_COLUMNS] + f" ... ({len(text) - MAX_SHOWN_COLUMNS} more)"
        out.append(f"{mark:>3}{number:>{width}} | {text}".rstrip())
    if shown_last < last:
        out.append(f"{'':>3}{'':>{width}} | ... ({last - shown_last} more lines)")
    return "\n".join(out)
