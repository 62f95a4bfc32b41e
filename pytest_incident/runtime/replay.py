# One incident file's replay environment: DNS stub, one HTTP stub per recorded endpoint, the
# sandbox policy that ties them together, and the target process. Started once per incident
# file, reused by its items, restarted when the target dies.
#
# Recorded hostnames get addresses 127.77.x.y; the DNS stub answers them, and the policy
# redirects connects to (address, recorded port) to that endpoint's stub. Only loopback
# entries of `sandbox.allow` pass live. Nothing here decides a verdict.
from __future__ import annotations

import http.client
import ipaddress
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from pytest_incident.core.book import ReplayBook
from pytest_incident.core.effect_log import EffectLog
from pytest_incident.core.matching import MatchRules
from pytest_incident.model.effects import Effect, EffectKind, Outcome
from pytest_incident.model.endpoints import Address, addresses_of
from pytest_incident.model.errors import ReplayConfigError, TargetError
from pytest_incident.model.mutations import Mutation
from pytest_incident.model.normalizers import Normalizer
from pytest_incident.model.recorded import OutboundCall, RecordedRequest
from pytest_incident.model.result import ReplayResult
from pytest_incident.model.spec import (
    EmailMode,
    IncidentSpec,
    OutboundMode,
    ScheduledMode,
)
from pytest_incident.runtime.bridge import Bridge
from pytest_incident.runtime.network import HostNetwork, Isolation, Network, open_network
from pytest_incident.runtime.process import (
    Launch,
    TargetProcess,
    describe_exit,
    free_port,
    run_sandboxed,
)
from pytest_incident.runtime.servers import LoopbackServer, PortStub, SocketMaker
from pytest_incident.runtime.stubs.dns import DnsStub
from pytest_incident.runtime.stubs.http import Endpoint, HttpStub
from pytest_incident.runtime.stubs.jobs import JobQueueStub
from pytest_incident.runtime.stubs.pgtap import CONNECT_TIMEOUT_S, PgTap
from pytest_incident.runtime.stubs.sink import DatagramSink, SyslogSink
from pytest_incident.runtime.stubs.smtp import SmtpStub
from pytest_incident.runtime.stubs.tls import IncidentCA, trust_env
from pytest_incident.sandbox.events import NetEvent, SandboxEvent
from pytest_incident.sandbox.policy import SandboxPolicy
from pytest_incident.target import HARNESS

MAPPED_NET = ipaddress.IPv4Address("127.77.0.0")
# framing the replay sets itself: the body is sent whole, with its own length, on a
# connection of its own (every other recorded header is sent as recorded, in order)
FRAMING_HEADERS = {"content-length", "transfer-encoding", "connection"}


@dataclass(frozen=True)
class ReplayOptions:
    speed: float = 1.0  # recorded latencies are divided by this; inf = no latency
    sandboxed: bool = True  # False only for benchmarks: no tracer, env points at the stubs
    isolation: Isolation = Isolation.AUTO  # the target's own network namespace, if possible


SMTP_PORTS = (25, 587, 2525)  # plain, STARTTLS offered
SMTPS_PORT = 465  # implicit TLS
TAP_CONNECT_WAIT_S = CONNECT_TIMEOUT_S + 1.0  # a tap tries the upstream for at most that
REPLAY_ENV = "PYTEST_INCIDENT_REPLAY"  # "1" in every target: a replay is running
SCHEDULED_ENV = "PYTEST_INCIDENT_SCHEDULED"  # "hold": in-process schedulers start paused


def mapped_addresses(hosts: Iterable[str]) -> dict[str, str]:
    """Recorded hostname -> a stable loopback address in 127.77.0.0/16."""
    return {host: str(MAPPED_NET + 1 + i) for i, host in enumerate(sorted(set(hosts)))}


def endpoints_of(calls: Iterable[OutboundCall]) -> list[Endpoint]:
    return sorted(
        {Endpoint(c.host.lower(), c.port, c.scheme) for c in calls}, key=lambda e: (e.host, e.port)
    )


class IncidentReplay:
    """One incident file's stubs and sandboxed target, configured by its spec (plus what
    plugins add: body normalizers and port stubs)."""

    def __init__(
        self,
        spec: IncidentSpec,
        requests: Sequence[RecordedRequest],
        rootdir: Path,
        workdir: Path,
        options: ReplayOptions = ReplayOptions(),
        normalizers: Sequence[Normalizer] = (),
        port_stubs: Callable[[ReplayBook], Mapping[int, PortStub]] | None = None,
        stub_endpoints: Sequence[Endpoint] = (),
    ) -> None:
        """Not started yet; `normalizers` and `port_stubs` come from plugins (hookspecs);
        `stub_endpoints` get an HTTP(S) stub even with no recorded call (each call to them is
        then unmatched: the `sandbox` command's way to list what a program calls)."""
        self.target = target = spec.target
        self.sandbox = sandbox = spec.sandbox
        self.cwd = target.cwd or rootdir
        self.make_port_stubs = port_stubs
        self.options = options
        self.workdir = workdir
        self.log = EffectLog()
        self.book = ReplayBook(
            unmatched=sandbox.unmatched,
            speed=options.speed,
            match_on=MatchRules(
                sandbox.match_on, (*sandbox.normalize, *normalizers), sandbox.normalize_headers
            ),
            log=self.log,
        )
        calls = [call for request in requests for call in request.outbound]
        hosts = [c.host.lower() for c in calls] + [e.host for e in stub_endpoints]
        self.addresses = mapped_addresses(hosts)
        self.allow = addresses_of(sandbox.allow)
        self.queues = addresses_of(sandbox.queues)
        stubbed = sandbox.outbound is OutboundMode.STUB
        self.endpoints = (
            sorted({*endpoints_of(calls), *stub_endpoints}, key=lambda e: (e.host, e.port))
            if stubbed
            else []
        )
        self.ca: IncidentCA | None = None
        self.stubs: dict[Endpoint, LoopbackServer] = {}
        self.smtp: dict[int, SmtpStub] = {}
        self.port_stubs: dict[int, PortStub] = {}
        self.jobs: JobQueueStub | None = None
        self.taps: dict[Address, PgTap] = {}  # allowed endpoint -> its tap
        self._tap_problems_seen: dict[Address, int] = {}
        self._tapped_connects: dict[str, int] = {}  # "host:port" of a tap -> connects to it
        self._mutations: list[Mutation] = []
        self._mutations_lock = threading.Lock()
        self.dns: DnsStub | None = None
        self.sink: DatagramSink | None = None
        self.syslog: SyslogSink | None = None
        self.process: TargetProcess | None = None
        self.network: Network = HostNetwork()
        self.bridges: dict[int, Bridge] = {}  # plugin port -> its bridge, when isolated
        # why the target shares the host's network ("" when it has its own), once started
        self.isolation_note = ""
        # why the target could not be started: the later items fail with it at once rather
        # than wait for it again
        self.start_failure: TargetError | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the stubs (once) and the target (again if it is not running, unless it could
        not be started before: then the TargetError of that start, at once)."""
        if self.start_failure is not None:
            raise TargetError(
                f"{self.start_failure} (when an earlier item started it; not tried again)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            if self.dns is None:
                self._start_stubs()
            if self.process is None:
                self.process = TargetProcess(
                    self._launch(), self._policy(), self.workdir, self.network
                )
            if not self.process.alive():
                self.process.stop()
                try:
                    self.process.start()
                except TargetError as exc:
                    self.start_failure = exc
                    raise
        except BaseException:
            if self.process is not None:
                self.process.stop()
            raise

    def _start_stubs(self) -> None:
        """Open the target's network and start every stub; a failure half way (a plugin's
        port stub that raises, a port that cannot be bound) closes what it opened: the next
        item starts afresh, and a file of many items does not pile up networks and stubs."""
        try:
            self._open_stubs()
        except BaseException:
            self._close_stubs()
            raise

    def _open_stubs(self) -> None:
        if self.options.sandboxed:
            self.network, self.isolation_note = open_network(self.options.isolation)
        inside = self.network.socket  # every stub listens where the target can reach it
        ca = self.ca = IncidentCA()
        for endpoint in self.endpoints:
            tls = ca.server_context(endpoint.host) if endpoint.scheme == "https" else None
            self.stubs[endpoint] = self._http_stub(endpoint, tls, inside)
        if self.sandbox.email is EmailMode.STUB:
            plain = SmtpStub(self.book, tls=self._any_host_tls(), sockets=inside)
            self.smtp = {port: plain for port in SMTP_PORTS}
            self.smtp[SMTPS_PORT] = SmtpStub(
                self.book, tls=self._any_host_tls(), implicit_tls=True, sockets=inside
            )
        if self.queues:
            self.jobs = JobQueueStub(self.book, sockets=inside)
        for live in sorted(self.allow):  # live, through a tap: accepts inside, connects out
            self.taps[live] = PgTap(live, self._on_mutations, sockets=inside)
        if self.make_port_stubs is not None:
            self.port_stubs = dict(self.make_port_stubs(self.book))
            if self.network.isolated:  # a plugin's stub listens on the host: bridge to it
                self.bridges = {
                    port: Bridge(stub.address, sockets=inside)
                    for port, stub in self.port_stubs.items()
                }
        self.dns = DnsStub(self.addresses, sockets=inside)
        self.sink = DatagramSink(sockets=inside)
        self.syslog = SyslogSink()

    def _http_stub(
        self, endpoint: Endpoint, tls: ssl.SSLContext | None, sockets: SocketMaker
    ) -> LoopbackServer:
        """What serves `endpoint` inside the target's network: the HTTP stub answering from
        the recording (`pytest-incident record` relays instead)."""
        return HttpStub(endpoint, self.book, tls=tls, sockets=sockets)

    def _any_host_tls(self) -> ssl.SSLContext:
        """A server context that presents a certificate for whatever name the client asks
        for (SNI): mail hosts are not known before the target connects."""
        assert self.ca is not None
        ca = self.ca
        context = ca.server_context("localhost")

        def choose(sock: ssl.SSLObject, name: str | None, _: ssl.SSLContext) -> None:
            if name:
                sock.context = ca.server_context(name)

        context.sni_callback = choose
        return context

    def _policy(self) -> SandboxPolicy | None:
        if not self.options.sandboxed:
            return None
        assert self.dns is not None
        redirects = {
            (self.addresses[e.host], e.port): stub.address for e, stub in self.stubs.items()
        }
        if self.jobs is not None:
            redirects.update({endpoint: self.jobs.address for endpoint in self.queues})
        redirects.update({endpoint: tap.address for endpoint, tap in self.taps.items()})
        return SandboxPolicy(
            redirects=redirects,
            allow=self.allow,
            dns=self.dns.address,
            sink=self.sink.address if self.sink else None,
            port_redirects={
                **{port: stub.address for port, stub in self.smtp.items()},
                **self._port_stub_addresses(),
            },
            hostnames={ip: host for host, ip in self.addresses.items()},
            unix_allow=frozenset(self.sandbox.allow_unix),
            unix_sink=self.syslog.path if self.syslog else None,
        )

    def _port_stub_addresses(self) -> dict[int, tuple[str, int]]:
        """Where the target reaches each plugin port stub: through its bridge if any."""
        return {
            port: (self.bridges.get(port) or stub).address for port, stub in self.port_stubs.items()
        }

    def run_command(self, argv: Sequence[str]) -> tuple[int, list[Effect]]:
        """Run `argv` to its end in exactly this replay's sandbox (namespaces, policy and
        stubs), its stdio the caller's: its exit status, and every effect it had, in order
        (what it tried to reach, what the stubs answered)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.dns is None:
            self._start_stubs()
        policy = self._policy()
        if policy is None:
            raise ReplayConfigError("a command runs sandboxed only")
        self.book.begin((), label="command")
        status, events = run_sandboxed(
            argv, self._target_env(), self.cwd, policy, self.network, self.workdir
        )
        effects = [*self.book.end(), *self._sandbox_effects(events), *self._dropped_datagrams()]
        effects += [
            Effect(Outcome.BLOCKED, "database tap", problem, EffectKind.NETWORK)
            for problem in self._take_tap_problems()
        ]
        return status, sorted(effects, key=lambda e: e.at_ns or 0)

    def _launch(self) -> Launch:
        config = self.target
        port = free_port(self.network)
        python = str(config.python or sys.executable)
        status_file = None
        if config.app is not None and config.interface is not None:
            # run by path: the harness imports nothing of this package inside the target
            status_file = self.workdir / "harness-status"
            argv: tuple[str, ...] = (
                python, str(HARNESS), config.interface, config.app,
                "--server", str(config.served_by), "--port", str(port),
                "--status", str(status_file),
            )  # fmt: skip
        elif config.command is not None:
            argv = tuple(
                part.replace("{port}", str(port)).replace("{python}", python)
                for part in config.command
            )
        else:
            raise ReplayConfigError("target needs one of: wsgi, asgi, command")
        return Launch(argv, self._target_env(), self.cwd, port, config.ready_timeout_s, status_file)

    def _target_env(self) -> dict[str, str]:
        """The target's environment: its own (see target_base_env), the replay's markers,
        and what makes it trust the run's CA."""
        config = self.target
        env = target_base_env(os.environ, config.pass_env)
        if config.python is not None:
            env = interpreter_env(config.python, env)
        env.update(config.env)
        # the target's own PYTHONPATH (from target.env or the environment) comes after its
        # working directory, and the in-target hooks come first
        paths = [str(self.cwd), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        env["PYTHONUNBUFFERED"] = "1"
        env[REPLAY_ENV] = "1"
        if self.sandbox.scheduled is ScheduledMode.HOLD:
            env[SCHEDULED_ENV] = "hold"
        if self.ca is not None:
            files = self.ca.write_files(self.workdir / "tls")
            env.update(trust_env(files, pythonpath=env["PYTHONPATH"]))
        if not self.options.sandboxed:
            env.update(self.unsandboxed_env(config.env))
        return env

    def unsandboxed_env(self, env: Mapping[str, str]) -> dict[str, str]:
        """Benchmarks only: point URLs in the env at the stubs directly (no DNS, no tracer).

        Exact scheme/host/port matches only; refuses to run bare when a recorded endpoint is
        not reachable that way, since a bare target would then contact the real host.
        """
        stubs = {(e.scheme, e.host, e.port): stub for e, stub in self.stubs.items()}
        rewritten: dict[str, str] = {}
        reached: set[tuple[str, str, int]] = set()
        for key, value in env.items():
            parts = urlsplit(value)
            if not parts.scheme or not parts.hostname:
                continue
            port = parts.port or (443 if parts.scheme == "https" else 80)
            where = (parts.scheme, parts.hostname.lower(), port)
            stub = stubs.get(where)
            if stub is not None:
                rewritten[key] = parts._replace(
                    netloc=f"{stub.address[0]}:{stub.address[1]}"
                ).geturl()
                reached.add(where)
        missing = sorted(set(stubs) - reached) + sorted(
            (e.scheme, e.host, e.port) for e in self.endpoints if e.scheme != "http"
        )
        if missing:
            raise ReplayConfigError(
                "unsandboxed replay needs every recorded endpoint named by an http:// URL in "
                f"target.env; not reachable that way: {missing}"
            )
        return rewritten

    def close(self) -> None:
        if self.process is not None:
            self.process.close()
        self._close_stubs()

    def _close_stubs(self) -> None:
        for stub in self.stubs.values():
            stub.close()
        self.stubs.clear()
        for smtp in set(self.smtp.values()):
            smtp.close()
        self.smtp.clear()
        if self.jobs is not None:
            self.jobs.close()
            self.jobs = None
        for bridge in self.bridges.values():
            bridge.close()
        self.bridges.clear()
        for port_stub in self.port_stubs.values():
            port_stub.close()
        self.port_stubs.clear()
        for tap in self.taps.values():
            tap.close()
        self.taps.clear()
        if self.dns is not None:
            self.dns.close()
            self.dns = None
        if self.sink is not None:
            self.sink.close()
            self.sink = None
        if self.syslog is not None:
            self.syslog.close()
            self.syslog = None
        self.network.close()
        self.network = HostNetwork()

    # -- one request -------------------------------------------------------------------

    def replay(self, request: RecordedRequest) -> ReplayResult:
        self.start()  # TargetError propagates: the item reports it
        process = self.process
        assert process is not None
        if self.dns is not None:
            self.dns.take_lookups()
        # whatever the sandbox reported since the last item answered came after it: late
        self.log.add_all(self._sandbox_effects(process.read_events()))
        if self.jobs is not None:
            self.jobs.reset()  # every request starts from an empty queue store
        with self._mutations_lock:
            self._mutations.clear()  # writes of earlier items (or between items) are theirs
        self.book.begin(request.outbound, label=request.request_id[:8])
        started = time.monotonic()
        status, headers, body, error = self._send(request, process.launch.port)
        elapsed = time.monotonic() - started
        effects = list(self.book.end())
        crash = ""
        if status is None and process.wait_exit(1.0) is not None:
            crash = f"target {describe_exit(process.exit_code())}"
        effects += self.log.settle(self._sandbox_effects(process.read_events()))
        effects += self._dropped_datagrams()
        return ReplayResult(
            status,
            body,
            error,
            tuple(effects),
            crash,
            process.output_tail() if (crash or status is None) else "",
            elapsed,
            self._take_mutations(),
            tuple(f"database tap: {p}" for p in self._take_tap_problems()),
            headers,
        )

    def _take_tap_problems(self) -> list[str]:
        """What the taps could not follow since the last item ended (between items too): a
        tap that lost track of a connection has an incomplete mutation log, so the item
        must not pass on it."""
        found: list[str] = []
        for endpoint, tap in self.taps.items():
            address = f"{tap.address[0]}:{tap.address[1]}"
            made = self._tapped_connects.get(address, 0)
            # the sandbox saw these connects made; wait for the tap to have tried each
            arrived = tap.wait_connected(made, TAP_CONNECT_WAIT_S)
            if arrived < made:
                found.append(
                    f"{made - arrived} connection(s) to {endpoint[0]}:{endpoint[1]} never "
                    f"reached the tap within {TAP_CONNECT_WAIT_S:g}s; their writes are unknown"
                )
                self._tapped_connects[address] = arrived  # report the shortfall once
            problems = tap.problems()
            seen = self._tap_problems_seen.get(endpoint, 0)
            found.extend(problems[seen:])
            self._tap_problems_seen[endpoint] = len(problems)
        return found

    def _on_mutations(self, mutations: list[Mutation]) -> None:
        """From a tap's relay thread: keep the settled writes of the item running now."""
        with self._mutations_lock:
            self._mutations.extend(mutations)

    def _take_mutations(self) -> tuple[Mutation, ...]:
        """The item's settled writes, then those of transactions still open (outcome
        "pending"): a request that answered before committing shows as such."""
        pending = [m for tap in self.taps.values() for m in tap.pending()]
        with self._mutations_lock:
            taken, self._mutations = self._mutations, []
        return (*taken, *pending)

    def _send(
        self, request: RecordedRequest, port: int
    ) -> tuple[int | None, tuple[tuple[str, str], ...], bytes, str]:
        """The answer's status, headers and body, or (None, (), b"", why there is none)."""
        conn = TargetConnection(
            self.network, "127.0.0.1", port, timeout=self.target.request_timeout_s
        )
        try:
            send_request(conn, request, port)
            response = conn.getresponse()
            body = response.read()
            return response.status, tuple(response.getheaders()), body, ""
        except TimeoutError:
            return None, (), b"", f"no answer within {self.target.request_timeout_s:g}s"
        except (OSError, http.client.HTTPException) as exc:
            return None, (), b"", f"{type(exc).__name__}: {exc}".rstrip(": ")
        except ValueError as exc:  # http.client refuses a header or target it cannot send
            return None, (), b"", f"the recorded request cannot be sent as HTTP/1.1: {exc}"
        finally:
            conn.close()

    def _unrecorded_name(self, dest: str) -> str:
        if self.dns is None or ":" not in dest:
            return ""
        name = self.dns.name_of(dest.rsplit(":", 1)[0])
        return f"{name}: not a host in the recording" if name else ""

    def _sandbox_effects(self, events: Iterable[SandboxEvent]) -> list[Effect]:
        """The sandbox's decisions worth showing, as effects stamped with the tracer's time."""
        effects: list[Effect] = []
        tapped = {f"{tap.address[0]}:{tap.address[1]}" for tap in self.taps.values()}
        for event in events:
            if not isinstance(event, NetEvent):
                continue
            if event.action == "redirect":
                if event.to in tapped:  # an allowed endpoint, live through its tap
                    self._tapped_connects[event.to] = self._tapped_connects.get(event.to, 0) + 1
                    effects.append(
                        Effect(
                            Outcome.ALLOWED,
                            f"{event.call} {event.dest}",
                            "in sandbox.allow (live; writes logged)",
                            EffectKind.NETWORK,
                            at_ns=event.t,
                        )
                    )
                continue
            host = event.host or self._unrecorded_name(event.dest)
            what = f"{event.call} {event.dest}" + (f" ({host})" if host else "")
            outcome = Outcome.ALLOWED if event.action == "allow" else Outcome.BLOCKED
            effects.append(Effect(outcome, what, event.reason, EffectKind.NETWORK, at_ns=event.t))
        if self.dns is not None:
            self.dns.take_lookups()  # unrecorded hosts show up by name on their connects
        return effects

    def _dropped_datagrams(self) -> list[Effect]:
        effects = []
        dropped = self.sink.take_count() if self.sink is not None else 0
        if dropped:
            what = f"{dropped} datagram(s)"
            why = "dropped by the sandbox's sink"
            effects.append(Effect(Outcome.BLOCKED, what, why, EffectKind.NETWORK))
        logged = self.syslog.take_count() if self.syslog is not None else 0
        if logged:
            what = f"{logged} syslog message(s)"
            why = "dropped by the sandbox's syslog sink"
            effects.append(Effect(Outcome.BLOCKED, what, why, EffectKind.NETWORK))
        return effects


# What of pytest's environment every target gets: where programs and the user's files are,
# language and time zone. Nothing else (no credentials, no proxies) unless `target.pass_env`
# names it or `target.env` sets it.
BASE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR",
            "TERM", "VIRTUAL_ENV")  # fmt: skip


def target_base_env(host: Mapping[str, str], pass_env: Sequence[str]) -> dict[str, str]:
    """The part of pytest's environment a target starts from."""
    names = {*BASE_ENV, *pass_env}
    return {name: value for name, value in host.items() if name in names or name.startswith("LC_")}


def interpreter_env(python: Path, env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a target run by `python` (target.python), as activating its venv would make
    it: VIRTUAL_ENV names that venv and its bin comes first on PATH; pytest's VIRTUAL_ENV is
    dropped when `python` is in no venv."""
    changed = {name: value for name, value in env.items() if name != "VIRTUAL_ENV"}
    venv = python.parent.parent
    if (venv / "pyvenv.cfg").is_file():
        changed["VIRTUAL_ENV"] = str(venv)
        path = [str(venv / "bin"), env.get("PATH", "")]
        changed["PATH"] = os.pathsep.join(p for p in path if p)
    return changed


def send_request(conn: http.client.HTTPConnection, request: RecordedRequest, port: int) -> None:
    """Send the recorded request as it was: method, target, every header in recorded order
    (Host and Accept-Encoding included, nothing added), and the body. Only framing is the
    replay's own: the body goes with its length. A recording without Host gets the target's
    address as one, which HTTP/1.1 requires."""
    conn.putrequest(request.method, request.target, skip_host=True, skip_accept_encoding=True)
    headers = list(request.headers)
    if not any(name.lower() == "host" for name, _ in headers):
        conn.putheader("Host", f"127.0.0.1:{port}")
    recorded_length = False
    for name, value in headers:
        if name.lower() in FRAMING_HEADERS:
            recorded_length = recorded_length or name.lower() == "content-length"
            continue
        conn.putheader(name, value)
    body = request.body
    if body or recorded_length:
        conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body or None)


class TargetConnection(http.client.HTTPConnection):
    """An HTTP connection made on the target's side of the replay's network (the recorded
    request sent to the target, in a replay or a recording)."""

    def __init__(self, network: Network, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._network = network

    def connect(self) -> None:
        sock = self._network.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect((self.host, self.port))
        except BaseException:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock


__all__ = [
    "IncidentReplay",
    "ReplayConfigError",
    "ReplayOptions",
    "ReplayResult",
    "TargetConnection",
    "TargetError",
]
