# `pytest-incident record (--out FILE | --sink REF) [options] -- COMMAND...`: run a service
# in the replay's sandbox in record mode (runtime/recorder.py) and write what it did as spans
# in the shape replay reads.
#
# The command runs as a `target.command` does ({port}, {python}); a recording front on
# 127.0.0.1 takes the requests to record (its address is printed on stderr:
# `pytest-incident record: front http://127.0.0.1:PORT`). Outbound HTTP(S) endpoints are
# declared (`--host`, `--resolve`) and relayed to their real address; undeclared hosts are
# refused as in a replay and listed at the end. Recording ends when the command exits or on
# SIGINT/SIGTERM; the spans are then written to `--out`, atomically, or loaded into the
# ClickHouse table `--sink` names (as `load` does).
#
# Exit status: 0 written; 1 nothing recorded; 2 a usage mistake; 125 the sandbox or the
# service cannot run; 3 the file cannot be written or the sink fails.
from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from pytest_incident.cli.sandbox import SANDBOX_UNAVAILABLE, _spec
from pytest_incident.events.clickhouse import is_clickhouse, parse_reference
from pytest_incident.events.clickhouse_load import BATCH_ROWS, load_spans
from pytest_incident.events.frozen import write_spans
from pytest_incident.model.errors import IncidentError
from pytest_incident.model.spans import Span
from pytest_incident.runtime.network import Isolation
from pytest_incident.runtime.recorder import (
    Destination,
    IncidentRecorder,
    check_egress,
    endpoints_of_text,
    parse_resolve,
    resolve_destination,
)
from pytest_incident.runtime.replay import ReplayOptions
from pytest_incident.runtime.stubs.http import Endpoint


def add_parser(commands: Any) -> None:
    command = commands.add_parser(
        "record",
        help="run a service in the sandbox, relay its outbound calls, record spans",
        description="Run COMMAND ({port}, {python} as for targets) in the replay sandbox in "
        "record mode: requests sent to the printed front address are forwarded to it, its "
        "calls to the declared hosts are relayed to their real address, and everything is "
        "written as spans replay reads. Ends when COMMAND exits or on Ctrl-C/SIGTERM.",
    )
    where = command.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", type=Path, help="the recording: a frozen .jsonl[.gz] file")
    where.add_argument(
        "--sink",
        metavar="chdb:///DIR|clickhouse://USER@HOST:8123/DB",
        help="or a ClickHouse table (created in the exporter's layout when absent; the "
        "password as for `load`)",
    )
    command.add_argument("--service", default="service", help="ServiceName of the spans")
    command.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="[SCHEME://]HOST[:PORT]",
        help="an outbound endpoint to relay to the address the host resolves it to (a bare "
        "HOST: http:80 and https:443); repeatable",
    )
    command.add_argument(
        "--resolve",
        action="append",
        default=[],
        metavar="[SCHEME://]HOST[:PORT]=ADDRESS:PORT",
        help="an outbound endpoint and where it really is (e.g. a loopback fake); repeatable",
    )
    command.add_argument(
        "--allow-egress",
        action="store_true",
        help="let relays reach destinations that are not loopback (off: refused)",
    )
    command.add_argument(
        "--cafile",
        default=None,
        help="CA file that verifies https destinations (default: the system's)",
    )
    command.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="HOST:PORT|unix:PATH",
        help="a live loopback database, through a tap: its writes become DB Client spans",
    )
    command.add_argument(
        "--isolation",
        choices=[mode.value for mode in Isolation],
        default=Isolation.AUTO.value,
    )
    command.add_argument("--env", action="append", default=[], metavar="NAME=VALUE")
    command.add_argument("--pass-env", action="append", default=[], metavar="NAME")
    command.add_argument("--cwd", type=Path, default=None, help="working directory")
    command.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    command.set_defaults(run=run, error=command.error, jobs="record", record_hosts=[])


def run(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        args.error("a command to run is needed after --")
    out: Path | None = args.out
    if out is not None and not out.name.endswith((".jsonl", ".jsonl.gz")):
        args.error(f"--out {out}: the recording's name ends in .jsonl or .jsonl.gz")
    if args.cafile is not None and not Path(args.cafile).is_file():
        args.error(f"--cafile {args.cafile}: not a file")
    if args.sink is not None and not is_clickhouse(args.sink):
        args.error(f"--sink {args.sink!r}: expected chdb:///DIR or clickhouse://...")
    try:
        spec = _spec(args, argv)
        destinations: dict[Endpoint, Destination] = {}
        for text in args.resolve:
            endpoints, destination = parse_resolve(text)
            destinations.update(dict.fromkeys(endpoints, destination))
        for text in args.host:
            for endpoint in endpoints_of_text(text, "--host"):
                destinations[endpoint] = resolve_destination(endpoint, args.allow_egress)
        if args.cafile:
            destinations = {
                e: Destination(d.address, d.port, args.cafile) for e, d in destinations.items()
            }
        check_egress(destinations, args.allow_egress)
    except ValueError as exc:
        args.error(str(exc))
    except IncidentError as exc:
        args.error(str(exc))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with tempfile.TemporaryDirectory(prefix="incident-record-") as work:
            recorder = IncidentRecorder(
                spec,
                destinations,
                rootdir=Path.cwd(),
                workdir=Path(work),
                service=args.service,
                options=ReplayOptions(isolation=Isolation(args.isolation)),
            )
            try:
                host, port = recorder.start_front()
                print(f"pytest-incident record: front http://{host}:{port}", file=sys.stderr)
                sys.stderr.flush()
                process = recorder.process
                assert process is not None
                while not stop.wait(0.2) and process.alive():
                    pass
                if not process.alive():
                    print(
                        f"pytest-incident record: the service ended:\n{process.output_tail()}",
                        file=sys.stderr,
                    )
                front = recorder.front
                assert front is not None
                front.close()  # no request is half-recorded after this
                effects = recorder._sandbox_effects(process.read_events())
            except IncidentError as exc:
                print(f"pytest-incident record: {exc}", file=sys.stderr)
                return SANDBOX_UNAVAILABLE
            finally:
                recorder.close()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    spans = recorder.recording.spans()
    for effect in effects:
        for line in effect.render().splitlines():
            print(f"  {line}", file=sys.stderr)
    if recorder.recording.unattributed:
        print(
            f"pytest-incident record: {recorder.recording.unattributed} outbound call(s) or "
            "write(s) made while no request was in flight were not recorded",
            file=sys.stderr,
        )
    if not spans:
        print("pytest-incident record: no request was recorded; nothing written", file=sys.stderr)
        return 1
    try:
        print(f"pytest-incident record: {deliver(spans, out, args.sink)}")
    except (OSError, IncidentError) as exc:
        print(f"pytest-incident record: {exc}", file=sys.stderr)
        return 3
    return 0


def deliver(spans: list[Span], out: Path | None, sink: str | None) -> str:
    """Write `spans` to the file `out` (atomically) or load them into the ClickHouse table
    `sink`; what was done, to be shown. OSError or IncidentError when it cannot be done."""
    requests = sum(1 for s in spans if not s.parent_span_id)
    if sink is not None:
        ref = parse_reference(sink, Path.cwd(), os.environ, command_line=True)
        loaded = load_spans(ref, spans, "map", BATCH_ROWS, None)
        return f"loaded {loaded.spans} spans ({requests} requests) into {ref.shown}"
    assert out is not None
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{os.getpid()}.part.{out.name}")  # .gz stays last
    try:
        count = write_spans(partial, spans)
        os.replace(partial, out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OSError(f"{out}: cannot write: {exc}") from exc
    return f"wrote {count} spans ({requests} requests) to {out}"
