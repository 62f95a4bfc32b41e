# `pytest-incident sandbox [options] -- COMMAND...`: run any command in exactly the sandbox a
# replay uses -- its own network, PID and mount namespaces, the same policy, a DNS stub that
# answers every name with a loopback address, SMTP and job-queue stubs, taps to `--allow`ed
# live endpoints -- and list, at the end, every destination it tried to reach and what
# happened. For "what does my service call?", and as the entry point security tests use.
#
# Exit status: the command's own (128 + N when signal N killed it); 125 when the sandbox
# cannot run here (no ptrace or seccomp, or no namespace with --isolation strict); 2 for a
# usage mistake.
from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from pytest_incident.model.effects import Effect
from pytest_incident.model.endpoints import LoopbackEndpoint, addresses_of
from pytest_incident.model.errors import IncidentError
from pytest_incident.model.spec import (
    Expect,
    IncidentSpec,
    JobsMode,
    SandboxSpec,
    Select,
    SourceRef,
    Target,
    Window,
)
from pytest_incident.runtime.network import Isolation
from pytest_incident.runtime.replay import IncidentReplay, ReplayOptions
from pytest_incident.runtime.stubs.http import Endpoint

SANDBOX_UNAVAILABLE = 125
DEFAULT_PORTS = {"http": 80, "https": 443}


def add_parser(commands: Any) -> None:
    command = commands.add_parser(
        "sandbox",
        help="run a command in the replay sandbox and list what it tried to reach",
        description="Run COMMAND in exactly the sandbox a replay uses (nothing leaves the "
        "machine) and print, at the end, every destination it tried to reach and what "
        "happened. Exit status: the command's; 125 when the sandbox cannot run here.",
    )
    command.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="HOST:PORT|unix:PATH",
        help="a live loopback destination (e.g. localhost:5432), reached through a tap, or a "
        "socket file (unix:/run/postgresql/.s.PGSQL.5432) that passes live; repeatable",
    )
    command.add_argument(
        "--record-hosts",
        action="append",
        default=[],
        metavar="[SCHEME://]HOST[:PORT]",
        help="hosts whose HTTP(S) calls a stub takes and lists (answered 502: nothing is "
        "recorded); a bare HOST means http:80 and https:443; repeatable, or comma-separated",
    )
    command.add_argument(
        "--isolation",
        choices=[mode.value for mode in Isolation],
        default=Isolation.AUTO.value,
        help="auto (default): own namespaces where the kernel allows, else the tracer alone; "
        "strict: namespaces or nothing; ptrace: the tracer alone",
    )
    command.add_argument(
        "--jobs",
        choices=[mode.value for mode in JobsMode],
        default=JobsMode.RECORD.value,
        help="record (default): enqueues to localhost:6379 are taken by the job stub; block",
    )
    command.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="set in its environment"
    )
    command.add_argument(
        "--pass-env",
        action="append",
        default=[],
        metavar="NAME",
        help="pass this variable of yours as it is (otherwise only PATH, HOME, locale, ...)",
    )
    command.add_argument("--cwd", type=Path, default=None, help="working directory")
    command.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    command.set_defaults(run=run, error=command.error)


def run(args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        args.error("a command to run is needed after --")
    try:
        spec = _spec(args, argv)
        endpoints = [e for text in args.record_hosts for e in _record_hosts(text)]
    except ValueError as exc:
        args.error(str(exc))
    with tempfile.TemporaryDirectory(prefix="incident-sandbox-") as work:
        replay = IncidentReplay(
            spec,
            [],
            rootdir=Path.cwd(),
            workdir=Path(work),
            options=ReplayOptions(isolation=Isolation(args.isolation)),
            stub_endpoints=endpoints,
        )
        try:
            status, effects = replay.run_command(argv)
        except IncidentError as exc:
            print(f"pytest-incident sandbox: {exc}", file=sys.stderr)
            return SANDBOX_UNAVAILABLE
        finally:
            replay.close()
        print(report(status, effects, replay.isolation_note), file=sys.stderr)
    return status


def report(status: int, effects: list[Effect], not_isolated: str) -> str:
    lines = [f"pytest-incident sandbox: exit status {status}; what it tried to reach:"]
    lines += [f"  {line}" for e in effects for line in e.render().splitlines()] or ["  (nothing)"]
    if not_isolated:
        lines.append(f"  (not isolated: the tracer alone kept it off the network: {not_isolated})")
    return "\n".join(lines)


def _spec(args: argparse.Namespace, argv: list[str]) -> IncidentSpec:
    env: dict[str, str] = {}
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--env {item!r}: expected NAME=VALUE")
        env[name] = value
    unix = tuple(text[len("unix:") :] for text in args.allow if text.startswith("unix:"))
    for path in unix:
        if not path.startswith("/"):
            raise ValueError(f"--allow unix:{path}: expected the absolute path of a socket file")
    allow = tuple(
        LoopbackEndpoint.parse(text) for text in args.allow if not text.startswith("unix:")
    )
    jobs = JobsMode(args.jobs)
    sandbox = SandboxSpec(allow=allow, allow_unix=unix, jobs=jobs)
    if jobs is JobsMode.BLOCK:
        sandbox = replace(sandbox, queues=())
    elif addresses_of(allow) & addresses_of(sandbox.queues):
        raise ValueError(
            "--allow names the job queue the job stub stands in for (localhost:6379); "
            "add --jobs block to reach it live"
        )
    cwd = args.cwd.absolute() if args.cwd else None
    target = Target(
        wsgi=None,
        command=tuple(argv),
        env=MappingProxyType(env),
        cwd=cwd,
        pass_env=tuple(args.pass_env),
    )
    return IncidentSpec(
        path=Path("<command line>"),
        name="sandbox",
        title="",
        window=Window(0, 1),
        source=SourceRef("command", "", "", 0),
        select=Select(),
        target=target,
        sandbox=sandbox,
        expect=Expect(),
        usefixtures=(),
        line=0,
        lines=MappingProxyType({}),
    )


def _record_hosts(text: str) -> list[Endpoint]:
    found: list[Endpoint] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        parts = urlsplit(part if "://" in part else f"//{part}")
        host = (parts.hostname or "").lower()
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"--record-hosts {part!r}: the port must be a number") from None
        if not host:
            raise ValueError(f"--record-hosts {part!r}: expected [SCHEME://]HOST[:PORT]")
        if parts.scheme and parts.scheme not in DEFAULT_PORTS:
            raise ValueError(f"--record-hosts {part!r}: the scheme must be http or https")
        if parts.scheme:
            found.append(Endpoint(host, port or DEFAULT_PORTS[parts.scheme], parts.scheme))
        elif port is not None:
            found.append(Endpoint(host, port, "https" if port == 443 else "http"))
        else:
            found += [Endpoint(host, 80, "http"), Endpoint(host, 443, "https")]
    return found
