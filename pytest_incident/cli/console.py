# What the command line's subcommands print and how: one-line usage errors (exit status 2,
# never a traceback), and colour and progress only when stdout is a terminal (and NO_COLOR
# is not set). Progress goes to stderr on one line that is rewritten, then cleared. A reader
# that goes away (`| head`) ends the command quietly with status 141, as SIGPIPE would.
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn, TextIO, TypeVar

USAGE_ERROR = 2
CLOSED_PIPE = 141  # 128 + SIGPIPE, as a shell reports a command whose reader went away
PROGRESS_EVERY = 5_000  # items between two progress updates

_T = TypeVar("_T")
_COLOURS = {"red": "31", "yellow": "33", "green": "32", "bold": "1", "dim": "2"}


class UsageError(Exception):
    """A mistake on the command line: its one-line message says what is allowed."""


def one_line_errors(command: argparse.ArgumentParser) -> None:
    """Make argparse's own mistakes about a subcommand (a missing, bad or unknown option)
    one line, like ours, instead of the usage and the error (argparse calls the
    subcommand's error, and would leave unknown options to the top-level parser)."""

    def error(message: str) -> NoReturn:
        print(f"{command.prog}: {message} (see {command.prog} --help)", file=sys.stderr)
        sys.exit(USAGE_ERROR)

    parse_known_args = command.parse_known_args

    def parse_all(args: Any = None, namespace: Any = None) -> tuple[Any, list[str]]:
        parsed, extras = parse_known_args(args, namespace)
        if extras:
            error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras

    setattr(command, "error", error)  # noqa: B010 (argparse calls self.error)
    setattr(command, "parse_known_args", parse_all)  # noqa: B010


@dataclass
class Console:
    """Where a subcommand writes: `out` for results, `err` for progress and errors."""

    out: TextIO
    err: TextIO
    interactive: bool  # stdout is a terminal: colour and progress

    @classmethod
    def of(
        cls,
        out: TextIO | None = None,
        err: TextIO | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Console:
        out = out if out is not None else sys.stdout
        err = err if err is not None else sys.stderr
        environ = environ if environ is not None else os.environ
        tty = _isatty(out) and "NO_COLOR" not in environ and environ.get("TERM") != "dumb"
        return cls(out, err, tty)

    def print(self, text: str = "") -> None:
        print(text, file=self.out, flush=True)

    def error(self, text: str) -> None:
        self.clear()
        print(text, file=self.err, flush=True)

    def colour(self, text: str, colour: str) -> str:
        if not self.interactive or not text:
            return text
        return f"\x1b[{_COLOURS[colour]}m{text}\x1b[0m"

    def progress(self, text: str) -> None:
        if self.interactive:
            self.err.write(f"\r\x1b[2K{text}")
            self.err.flush()

    def clear(self) -> None:
        if self.interactive:
            self.err.write("\r\x1b[2K")
            self.err.flush()

    def closed(self) -> int:
        """stdout's reader went away (`| head`): say nothing more, exit as SIGPIPE would."""
        if self.out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())  # Python's flush at exit must not fail
            os.close(devnull)
        return CLOSED_PIPE

    def counted(self, items: Iterable[_T], what: str) -> Iterator[_T]:
        """`items`, with `reading: N what, R/s` shown while they come (on a terminal)."""
        started = time.monotonic()
        for count, item in enumerate(items, 1):
            if count % PROGRESS_EVERY == 0:
                rate = count / max(time.monotonic() - started, 1e-6)
                self.progress(f"reading: {count:,} {what}, {rate:,.0f}/s")
            yield item
        self.clear()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # closed, or not a real stream
        return False
