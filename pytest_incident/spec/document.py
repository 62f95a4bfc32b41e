# Reading a user's YAML file (an incident file, its calibration file): bytes -> text ->
# document, each step bounded, every problem an IncidentFileError at a line.
#
# Strategy: the file is opened non-blocking and checked to be a regular file before a byte is
# read, so a FIFO, a device, a socket or a directory named `*.yaml` is refused by name and
# never hangs the run; reading stops past MAX_FILE_BYTES; the text must be UTF-8 with lines of
# at most MAX_LINE_CHARS characters; yaml_loader then composes it within its own limits
# (MAX_DEPTH, MAX_VALUES). README "Limits" lists all four.
from __future__ import annotations

import os
import stat
from pathlib import Path

from pytest_incident.model.errors import IncidentFileError
from pytest_incident.spec.yaml_loader import YamlDocument, YamlLoadError, load_yaml

MAX_FILE_BYTES = 1024 * 1024  # an incident file; a few KiB is usual
MAX_LINE_CHARS = 10_000  # characters in one line of it

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def not_regular(mode: int) -> str | None:
    """What a file of `mode` is when it is not a regular file (None when it is)."""
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return None if stat.S_ISREG(mode) else "a special file"


def read_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the regular file at `path`, at most `max_bytes` of them.
    FileNotFoundError passes through (the caller may take it for "no file"); anything else
    is an IncidentFileError at line 1."""
    try:
        # non-blocking and without a controlling terminal: opening a FIFO or a tty must not
        # wait; a regular file reads as usual
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise IncidentFileError(path, 1, _cannot_read(path, exc), text="") from None
    try:
        kind = not_regular(os.fstat(fd).st_mode)
        if kind is not None:
            raise IncidentFileError(path, 1, f"not a regular file ({kind}); not read", text="")
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes and (chunk := os.read(fd, max_bytes + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise IncidentFileError(path, 1, _cannot_read(path, exc), text="") from None
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > max_bytes:
        raise IncidentFileError(
            path, 1, f"the file is larger than {max_bytes} bytes; not read", text=""
        )
    return data


def _cannot_read(path: Path, exc: OSError | ValueError) -> str:
    if isinstance(exc, OSError):
        try:
            kind = not_regular(os.stat(path).st_mode)
        except (OSError, ValueError):
            kind = None
        if kind is not None:  # a socket cannot be opened at all (ENXIO)
            return f"not a regular file ({kind}); not read"
        return f"cannot read the file: {exc.strerror or exc}"
    return f"cannot read the file: {exc}"


def parse_document(path: Path, data: bytes) -> tuple[str, YamlDocument | None]:
    """A file's bytes as text and its document (None: no document at all); a file that is
    not UTF-8, has an over-long line or is not YAML is an IncidentFileError at its line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise IncidentFileError(path, line, "the file is not UTF-8 text", text="") from None
    for number, line_text in enumerate(text.splitlines(), 1):
        if len(line_text) > MAX_LINE_CHARS:
            message = f"the line is longer than {MAX_LINE_CHARS} characters"
            raise IncidentFileError(path, number, message, text=text)
    try:
        return text, load_yaml(text)
    except YamlLoadError as exc:
        raise IncidentFileError(
            path, exc.line, exc.message, end_line=exc.end_line, text=text
        ) from None


def read_document(path: Path, max_bytes: int = MAX_FILE_BYTES) -> tuple[str, YamlDocument | None]:
    """read_file, then parse_document."""
    return parse_document(path, read_file(path, max_bytes))
