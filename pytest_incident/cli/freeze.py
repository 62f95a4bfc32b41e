# `pytest-incident freeze NAME --source REF --window A..B [--service S] [--filter ...]
# [--dir incidents] [--force]`: the requests of a window, with their whole traces, redacted,
# into `DIR/NAME.events.jsonl.gz`, and an incident file `DIR/NAME.yaml` to fill in (its
# target) and replay with `pytest --incident=NAME`.
#
# Strategy: read_window (any source) gives the traces of the window's Server spans; the
# incident's own selection (events/selection.choose) picks the requests the filters keep, and
# every span of their traces is kept. The spans are held in memory (an incident is a window
# of one service, not a day of traffic), redacted together (core/redaction.py: a secret found
# in one span is swept from all; the key of the placeholders is drawn at random here and
# never stored), and written. Both files are written to a temporary file beside them and
# moved into place: linked (which fails if the name was taken meanwhile) or, with --force,
# replaced; never half-written, never overwritten without --force. The scaffold is loaded
# before it is written (with a stand-in target) and must select exactly the frozen requests.
#
# Exit status: 0 written; 1 nothing written: the window and filters keep no request; 2 a
# usage mistake (an option, a file that exists, pyproject.toml's redaction rules); 3 the
# source cannot be read; 130 interrupted.
from __future__ import annotations

import argparse
import os
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pytest_incident.cli.console import USAGE_ERROR, Console, UsageError, one_line_errors
from pytest_incident.cli.project import redaction_rules
from pytest_incident.cli.scaffold import Scaffold, checkable, without_password
from pytest_incident.cli.selection import (
    add_source_options,
    add_window_option,
    nothing_in_window,
    parse_filters,
    parse_window,
    window_text,
)
from pytest_incident.core.redaction import RedactionReport, Redactor
from pytest_incident.events.frozen import read_spans, write_spans
from pytest_incident.events.incident import describe, selected
from pytest_incident.events.selection import choose
from pytest_incident.events.window import read_window
from pytest_incident.model.errors import ConfigFileError, FileError, IncidentError
from pytest_incident.model.recorded import RecordedRequest, is_database_statement
from pytest_incident.model.spans import Span, format_timestamp
from pytest_incident.model.spec import Select, Window
from pytest_incident.spec import load_incident

PROG = "pytest-incident freeze"
WRITTEN, NOTHING, SOURCE_ERROR, INTERRUPTED = 0, 1, 3, 130
DEFAULT_DIR = "incidents"
EVENTS_SUFFIX = ".events.jsonl.gz"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_CHECK_APP = "pytest_incident_freeze_check:app"  # a stand-in target, never started

Clock = Callable[[], int]


def add_parser(commands: Any) -> None:
    command = commands.add_parser(
        "freeze",
        help="freeze a window's requests (redacted) into an incident to replay",
        description="Write the requests of a time window, with their whole traces and with "
        "their secrets redacted, into DIR/NAME.events.jsonl.gz, and an incident file "
        "DIR/NAME.yaml to fill in (its target) and replay with pytest --incident=NAME. "
        "Redaction rules: [tool.pytest-incident.redact] in pyproject.toml (README, Redaction).",
        epilog="Exit status: 0 written; 1 the window and filters keep no request (nothing "
        "written); 2 a usage mistake; 3 the source cannot be read; 130 interrupted.",
    )
    command.add_argument("name", metavar="NAME", help="the incident's name (letters, digits, .-_)")
    add_source_options(command)
    add_window_option(command, required=True)
    command.add_argument(
        "--dir",
        default=DEFAULT_DIR,
        type=Path,
        metavar="DIR",
        help=f"where to write the two files (default {DEFAULT_DIR}; created when missing)",
    )
    command.add_argument(
        "--force", action="store_true", help="overwrite NAME's files when they exist"
    )
    command.set_defaults(run=run)
    one_line_errors(command)


@dataclass(frozen=True)
class Paths:
    events: Path
    incident: Path


def run(
    args: argparse.Namespace, clock: Clock = time.time_ns, console: Console | None = None
) -> int:
    console = console or Console.of()
    try:
        paths = _paths(args)
        filters = parse_filters(args.service, args.filter)
        window = parse_window(args.window)
        rules, config = redaction_rules(Path.cwd())
    except UsageError as exc:
        console.error(f"{PROG}: {exc}")
        return USAGE_ERROR
    except ConfigFileError as exc:
        console.error(f"{PROG}: {exc.path}:{exc.line}: {exc.message}")
        return USAGE_ERROR
    try:
        spans = list(
            console.counted(read_window(args.source, Path.cwd(), window, args.service), "spans")
        )
        selection = choose(spans, window, filters.select)
        if not selection.requests:
            console.error(f"{PROG}: nothing written: {_nothing(window, filters.select, selection)}")
            return NOTHING
        requests = selection.requests
        traces = {r.request_id for r in requests}
        kept = _whole_traces(spans, traces)
        del spans
        redactor = Redactor(rules, secrets.token_bytes(32))
        frozen = sorted(redactor.redact(kept), key=lambda s: (s.timestamp_ns, s.span_id))
        # the filters go into the incident file: a secret they name is redacted there too,
        # as it is in the frozen paths they select
        select = replace(
            filters.select,
            routes=tuple(redactor.redact_text(r, "select.routes") for r in filters.select.routes),
        )
        scaffold = Scaffold(
            name=args.name,
            window=window_text(window),
            source=paths.events.name,
            frozen_from=_printable(without_password(args.source)),
            frozen_on=format_timestamp(clock())[:10],
            select=select,
            requests=len(requests),
            failed=sum(r.failed for r in requests),
            services=sorted({r.span.service for r in requests}),
            redacted=redactor.report.lines() if redactor.report.total else [],
            database=any(is_database_statement(s) for s in frozen),
        )
        replayed = _write(paths, frozen, scaffold, traces, args.force)
    except _Exists as exc:
        console.error(f"{PROG}: {exc} exists; pass --force to overwrite it")
        return USAGE_ERROR
    except _Unselected as exc:
        console.error(f"{PROG}: nothing written: {exc}")
        return USAGE_ERROR
    except OSError as exc:
        console.error(f"{PROG}: cannot write {exc.filename or args.dir}: {exc.strerror or exc}")
        return USAGE_ERROR
    except IncidentError as exc:
        if nothing_in_window(exc):
            console.error(f"{PROG}: nothing written: {exc}")
            return NOTHING
        if isinstance(exc, FileError):
            console.error(f"{PROG}: {exc.path}:{exc.line}: {exc.message}")
        else:
            console.error(f"{PROG}: --source {exc}")  # the message names the reference
        return SOURCE_ERROR
    except KeyboardInterrupt:
        console.error(f"{PROG}: interrupted; nothing written")
        return INTERRUPTED
    try:
        _report(console, paths, scaffold, frozen, replayed, redactor.report, config, args)
    except BrokenPipeError:
        return console.closed()
    return WRITTEN


def _whole_traces(spans: list[Span], traces: set[str]) -> list[Span]:
    """Every span of `traces`; and when they hold no database statement, one other of the
    source's, if it gave one: selection learns from any span that the recording captures
    database writes (a request that wrote nothing then wrote nothing, rather than was
    not recorded), and the frozen file must say the same."""
    kept = [s for s in spans if s.trace_id in traces]
    if not any(is_database_statement(s) for s in kept):
        kept += [s for s in spans if is_database_statement(s)][:1]
    return kept


def _paths(args: argparse.Namespace) -> Paths:
    name = args.name
    if not _NAME_RE.fullmatch(name) or name.endswith((".yaml", ".yml")):
        raise UsageError(
            f"NAME {name!r}: use letters, digits, '.', '_' and '-' (at most 200, starting "
            "with a letter or digit, without .yaml)"
        )
    folder: Path = args.dir
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--dir {folder}: not a directory")
    paths = Paths(folder / f"{name}{EVENTS_SUFFIX}", folder / f"{name}.yaml")
    if not args.force:
        for path in (paths.incident, paths.events):
            if path.exists() or path.is_symlink():
                raise UsageError(f"{path} exists; pass --force to overwrite it")
    return paths


class _Exists(Exception):
    """A file appeared under a name freeze was about to take (without --force)."""


class _Unselected(Exception):
    """The scaffold's select, redacted, does not select the frozen requests."""


def _nothing(window: Window, select: Select, selection: Any) -> str:
    span = f"{window_text(window)} UTC"
    if not selection.in_window.count:
        scope = f" of service {select.service!r}" if select.service is not None else ""
        return (
            f"no recorded request{scope} in {span} (pytest-incident tail shows when there "
            "are requests, and when they failed)"
        )
    return (
        f"{selected(select)} matches none of the requests in {span}; the window holds "
        f"{describe(selection.in_window)}"
    )


def _write(
    paths: Paths, spans: list[Span], scaffold: Scaffold, traces: set[str], force: bool
) -> list[RecordedRequest]:
    """Write both files; the requests the incident file selects from the frozen one."""
    folder = paths.incident.parent
    folder.mkdir(parents=True, exist_ok=True)
    events_existed = paths.events.exists()
    events = _temporary(folder, EVENTS_SUFFIX)
    try:
        write_spans(events, spans)
        _sync(events)
        _place(events, paths.events, force)
    finally:
        events.unlink(missing_ok=True)
    try:
        text = scaffold.text()
        requests = _check(folder, text, traces)
        incident = _temporary(folder, ".yaml")
        try:
            incident.write_text(text, encoding="utf-8")
            _sync(incident)
            _place(incident, paths.incident, force)
        finally:
            incident.unlink(missing_ok=True)
    except BaseException:
        if not events_existed:  # the recording without its incident file is of no use
            paths.events.unlink(missing_ok=True)
        raise
    return requests


def _temporary(folder: Path, suffix: str) -> Path:
    """A new empty file in `folder` with a random name, made as any file is (the umask's
    mode, not mkstemp's 0600: the frozen files are the repository's)."""
    while True:
        path = folder / f".freeze-{secrets.token_hex(8)}{suffix}"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return path


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _place(temporary: Path, final: Path, force: bool) -> None:
    """Move `temporary` to `final` at once: replace it with --force, else take the name only
    if it is free (a link fails when it exists)."""
    if force:
        os.replace(temporary, final)
        return
    try:
        os.link(temporary, final)
    except FileExistsError:
        raise _Exists(str(final)) from None


def _check(folder: Path, text: str, traces: set[str]) -> list[RecordedRequest]:
    """The scaffold, with a stand-in target, loads and selects exactly the frozen requests
    from the frozen file: those requests, as a replay reads them."""
    probe = _temporary(folder, ".yaml")
    try:
        probe.write_text(checkable(text, _CHECK_APP), encoding="utf-8")
        spec = load_incident(probe, os.environ)
        requests = choose(read_spans(spec.source.path), spec.window, spec.select).requests
    finally:
        probe.unlink(missing_ok=True)
    found = {r.request_id for r in requests}
    if found != traces:  # a route filter that names part of a redacted value
        raise _Unselected(
            f"once redacted, the incident file's select keeps {len(found & traces)} of the "
            f"{len(traces)} frozen request(s): a --filter route= names (part of) a value that "
            "redaction replaces; filter with request=TRACE-ID (from pytest-incident tail) instead"
        )
    return requests


def _report(
    console: Console,
    paths: Paths,
    scaffold: Scaffold,
    spans: list[Span],
    requests: list[RecordedRequest],
    report: RedactionReport,
    config: Path | None,
    args: argparse.Namespace,
) -> None:
    console.print(
        f"froze {scaffold.requests} request(s) ({scaffold.failed} failed in production) with "
        f"their traces, {len(spans)} spans, into {paths.events}"
    )
    rules = f"the defaults and {config}" if config else "the defaults"
    for line in report.lines():
        console.print(line)
    console.print(f"  (redaction rules: {rules})")
    unreplayable = [r for r in requests if r.problem is not None]
    if unreplayable:
        console.print(
            f"note: {len(unreplayable)} of them cannot be replayed as recorded (each will "
            f"error at setup); the first: {unreplayable[0].problem}"
        )
    if len(scaffold.services) > 1 and args.service is None:
        console.print(
            f"note: the requests belong to {len(scaffold.services)} services "
            f"({', '.join(scaffold.services)}); pass --service to keep one"
        )
    console.print(
        f"wrote {paths.incident}: fill in its target: (how to start the current code), then "
        f"run: pytest --incident={scaffold.name}"
    )


def _printable(text: str) -> str:
    return text if text.isprintable() else repr(text)
