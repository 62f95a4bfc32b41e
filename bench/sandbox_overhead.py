# What the ptrace+seccomp sandbox costs, measured in one run (DESIGN §9):
#
#     /tmp/venv/bin/python bench/sandbox_overhead.py [--rounds N] [--full-rounds M]
#
# 1. The demo incident (incidents/2024-05-signup.yaml), loaded as the plugin loads it, replayed
#    by two IncidentReplay instances that differ only in ReplayOptions.sandboxed:
#      a. speed=inf, the requests whose recording has no timed-out outbound call: the cost
#         of the sandbox itself (tracer, DNS stub, trapped connects);
#      b. the whole incident at recorded latency (speed=1): what a user waits; the four 1 s
#         client timeouts dominate it;
#      c. IncidentReplay.start(): stubs + target start-up, traced vs bare.
#    Sides alternate order every round so both see the same machine noise.
# 2. A syscall micro-benchmark: a child Python program runs an untrapped syscall loop
#    (os.stat + os.pread), K loopback connects to a listener it owns on a port the policy
#    allows, and K connects the policy refuses; bare, under the tracer, and under the tracer
#    with tracer and child pinned to one CPU (to show what cross-CPU wake-ups cost).
#
# 3. The cost of the kernel boundary: the same sandboxed replay with the target in a network
#    namespace of its own (--incident-sandbox=strict) and with the tracer alone (=ptrace):
#    start-up (keeper + namespace + stubs inside + target) and the speed=inf replay.
#
# Prints tables and a final "ratios:" block. No asserts on time: numbers are for reading.
# Network: everything is 127.0.0.1; the bare target only gets stub URLs (checked first).
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pytest_incident.events.incident import open_incident  # noqa: E402
from pytest_incident.model.effects import Outcome  # noqa: E402
from pytest_incident.model.recorded import RecordedRequest  # noqa: E402
from pytest_incident.model.spec import IncidentSpec  # noqa: E402
from pytest_incident.runtime.database import PostgresServer, TemplateDatabase  # noqa: E402
from pytest_incident.runtime.network import Isolation  # noqa: E402
from pytest_incident.runtime.process import free_port  # noqa: E402
from pytest_incident.runtime.replay import IncidentReplay, ReplayOptions  # noqa: E402
from pytest_incident.sandbox.policy import SandboxPolicy  # noqa: E402

DEMO = ROOT / "incidents" / "2024-05-signup.yaml"
SIDES = ("sandboxed", "bare")


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


# --- 1. incident replay -----------------------------------------------------------------


def restore_demo_database() -> None:
    """The demo stores its accounts in PostgreSQL: start from its template (see conftest.py)."""
    server = PostgresServer.from_env()
    if not server.reachable():
        sys.exit(f"bench: the signup demo needs PostgreSQL at {server.host}:{server.port}")
    TemplateDatabase(server, "signup", (ROOT / "examples/signup/schema.sql",)).restore()


def load_demo() -> tuple[IncidentSpec, list[RecordedRequest]]:
    opened = open_incident(DEMO, os.environ)
    return opened.spec, list(opened.requests)


def make_replay(
    spec: IncidentSpec,
    requests: Sequence[RecordedRequest],
    workdir: Path,
    speed: float,
    sandboxed: bool,
    isolation: Isolation = Isolation.AUTO,
) -> IncidentReplay:
    target = spec.target
    replay = IncidentReplay(
        spec,
        requests,
        rootdir=ROOT,
        workdir=workdir,
        options=ReplayOptions(speed=speed, sandboxed=sandboxed, isolation=isolation),
    )
    if not sandboxed:
        check_bare_stays_local(replay, target.env)
    return replay


def check_bare_stays_local(replay: IncidentReplay, env: Mapping[str, str]) -> None:
    """The bare target runs without the tracer: every recorded endpoint must be reachable
    only through an env URL that unsandboxed_env rewrites to its stub, or we do not run it."""
    values = list(env.values())
    for endpoint in replay.endpoints:
        origin = f"{endpoint.scheme}://{endpoint.host}"
        if endpoint.scheme != "http" or not any(v.startswith(origin) for v in values):
            raise SystemExit(
                f"refusing to run the target bare: {origin}:{endpoint.port} is "
                "not an http URL in target.env, it would not be redirected"
            )


@dataclass
class Sample:
    wall_s: float  # around IncidentReplay.replay()
    exchange_s: float  # ReplayResult.elapsed_s: the HTTP exchange with the target only
    status: int | None
    unmatched: int
    dns: int  # DNS queries the stub answered during the request


@dataclass
class Side:
    name: str
    replay: IncidentReplay
    start_s: float = 0.0
    samples: dict[int, list[Sample]] = field(default_factory=dict)  # request index -> rounds
    dns_count: list[int] = field(default_factory=lambda: [0])


def count_dns(side: Side) -> None:
    """Wrap the instance's take_lookups (not the class) to count DNS queries per request."""
    dns = side.replay.dns
    if dns is None:
        return
    original = dns.take_lookups

    def take() -> list:  # type: ignore[type-arg]
        taken = original()
        side.dns_count[0] += len(taken)
        return taken

    dns.take_lookups = take  # type: ignore[method-assign]


def replay_once(side: Side, request: RecordedRequest) -> Sample:
    before = side.dns_count[0]
    t0 = time.perf_counter()
    result = side.replay.replay(request)
    wall = time.perf_counter() - t0
    unmatched = sum(1 for e in result.effects if e.outcome is Outcome.UNMATCHED)
    return Sample(wall, result.elapsed_s, result.status, unmatched, side.dns_count[0] - before)


def run_pair(
    spec: IncidentSpec,
    all_requests: list[RecordedRequest],
    requests: list[RecordedRequest],
    speed: float,
    rounds: int,
    warmup: int,
    tmp: Path,
    tag: str,
) -> list[Side]:
    """Start both sides, replay `requests` `rounds` times, alternating which side goes first."""
    sides: list[Side] = []
    try:
        for name in SIDES:
            replay = make_replay(
                spec, all_requests, tmp / f"{tag}-{name}", speed, sandboxed=name == "sandboxed"
            )
            side = Side(name, replay)
            sides.append(side)
            t0 = time.perf_counter()
            replay.start()
            side.start_s = time.perf_counter() - t0
            count_dns(side)
        warm = [r for r in requests if not any(c.timed_out for c in r.outbound)]
        for _ in range(warmup):
            for side in sides:
                for request in warm:
                    replay_once(side, request)
        for n in range(rounds):
            for side in sides if n % 2 == 0 else sides[::-1]:
                for i, request in enumerate(requests):
                    side.samples.setdefault(i, []).append(replay_once(side, request))
        return sides
    finally:
        for side in sides:
            side.replay.close()


def describe(request: RecordedRequest) -> str:
    timeouts = sum(1 for c in request.outbound if c.timed_out)
    calls = f"{len(request.outbound)} call" + ("s" if len(request.outbound) != 1 else "")
    extra = f", {timeouts} timeout" if timeouts else ""
    return f"{request.request_id[:8]} {request.method} {request.path} ({calls}{extra})"


def fmt(statuses: set[int | None]) -> str:
    return "/".join(str(x) for x in sorted(statuses, key=str))


def report_pair(
    title: str, sides: list[Side], requests: list[RecordedRequest], unit: str
) -> dict[str, float]:
    scale = 1e3
    sb, bare = sides
    print(f"\n{title}")
    print(
        f"  {'request':<44} {'rec':>4} {'sbx':>4} {'bare':>4}  "
        f"{'sandboxed':>10} {'bare':>9} {'ratio':>6} {'dns/req':>7}"
    )
    warnings = []
    for i, request in enumerate(requests):
        s_med = median([s.wall_s for s in sb.samples[i]])
        b_med = median([s.wall_s for s in bare.samples[i]])
        s_status = {s.status for s in sb.samples[i]}
        b_status = {s.status for s in bare.samples[i]}
        dns = median([s.dns for s in sb.samples[i]])
        print(
            f"  {describe(request):<44} {request.status or '-':>4} {fmt(s_status):>4} "
            f"{fmt(b_status):>4}  {s_med * scale:>8.2f}{unit:<2} {b_med * scale:>7.2f}{unit:<2}"
            f" {ratio(s_med, b_med):>6} {dns:>7g}"
        )
        if s_status != b_status:
            warnings.append(f"{describe(request)}: status sandboxed {s_status} != bare {b_status}")
        for side in sides:
            if any(s.unmatched for s in side.samples[i]):
                warnings.append(f"{describe(request)}: unmatched outbound calls on {side.name}")
    rounds = len(sb.samples[0])
    totals = {
        side.name: [sum(side.samples[i][n].wall_s for i in side.samples) for n in range(rounds)]
        for side in sides
    }
    s_tot, b_tot = median(totals["sandboxed"]), median(totals["bare"])
    print(
        f"  {'total per round (median of ' + str(rounds) + ' rounds)':<60} "
        f"{s_tot * scale:>8.2f}{unit:<2} {b_tot * scale:>7.2f}{unit:<2} "
        f"{ratio(s_tot, b_tot):>6}"
    )
    overhead = {
        side.name: median([s.wall_s - s.exchange_s for i in side.samples for s in side.samples[i]])
        for side in sides
    }
    print(
        f"  replay() bookkeeping outside the HTTP exchange, median per request: "
        f"sandboxed {overhead['sandboxed'] * 1e3:.2f} ms, bare {overhead['bare'] * 1e3:.2f} ms"
    )
    for warning in warnings:
        print(f"  WARNING: {warning}")
    return {"sandboxed": s_tot, "bare": b_tot}


def bench_startup(
    spec: IncidentSpec,
    requests: list[RecordedRequest],
    rounds: int,
    tmp: Path,
    earlier: dict[str, list[float]],
) -> dict[str, list[float]]:
    times = {name: list(earlier.get(name, [])) for name in SIDES}
    for n in range(rounds):
        for name in SIDES if n % 2 == 0 else SIDES[::-1]:
            replay = make_replay(
                spec,
                requests,
                tmp / f"start{n}-{name}",
                float("inf"),
                sandboxed=name == "sandboxed",
            )
            try:
                t0 = time.perf_counter()
                replay.start()
                times[name].append(time.perf_counter() - t0)
            finally:
                replay.close()
    return times


def bench_isolation(
    spec: IncidentSpec, requests: list[RecordedRequest], fast: list[RecordedRequest],
    rounds: int, tmp: Path,
) -> dict[str, dict[str, list[float]]]:  # fmt: skip
    """Per mode: start-up seconds and speed=inf replay seconds (all `fast` requests)."""
    modes = {"namespace": Isolation.STRICT, "ptrace": Isolation.PTRACE}
    times: dict[str, dict[str, list[float]]] = {m: {"start": [], "replay": []} for m in modes}
    for n in range(rounds + 1):  # round 0 warms up
        for name in modes if n % 2 == 0 else list(modes)[::-1]:
            restore_demo_database()
            replay = make_replay(
                spec, requests, tmp / f"iso{n}-{name}", float("inf"), True, modes[name]
            )
            try:
                t0 = time.perf_counter()
                replay.start()
                started = time.perf_counter() - t0
                t0 = time.perf_counter()
                for request in fast:
                    replay.replay(request)
                replayed = time.perf_counter() - t0
            finally:
                replay.close()
            if n:
                times[name]["start"].append(started)
                times[name]["replay"].append(replayed)
    return times


# --- 2. syscall micro-benchmark ---------------------------------------------------------

CHILD = textwrap.dedent("""\
    import json, os, socket, sys, time
    allowed, closed, k, m = (int(a) for a in sys.argv[1:5])
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", allowed))
    listener.listen(128)
    fd = os.open(__file__, os.O_RDONLY)
    out = {}

    t0 = time.perf_counter()
    for _ in range(m):                      # untrapped: stat + pread never stop the tracee
        os.stat(__file__)
        os.pread(fd, 64, 0)
    out["loop_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    for _ in range(k):                      # trapped, allowed by the policy
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.connect(("127.0.0.1", allowed))
        server, _ = listener.accept()
        server.close()
        client.close()
    out["connect_s"] = time.perf_counter() - t0

    refused = 0
    t0 = time.perf_counter()
    for _ in range(k):                      # trapped, refused (bare: nobody listens there)
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            client.connect(("127.0.0.1", closed))
        except ConnectionRefusedError:
            refused += 1
        client.close()
    out["refused_s"] = time.perf_counter() - t0
    out["refused"] = refused
    print(json.dumps(out))
""")


def run_child(argv: list[str], env: dict[str, str], cpu: int | None = None) -> dict[str, float]:
    if cpu is not None:  # pin in a tiny exec wrapper: no preexec_fn in a threaded parent
        pin = "import os, sys; os.sched_setaffinity(0, {%d}); os.execv(sys.argv[1], sys.argv[1:])"
        argv = [sys.executable, "-c", pin % cpu, *argv]
    proc = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:6])}... exited {proc.returncode}:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


MICRO = ("sandboxed", "bare", "pinned")  # pinned: sandboxed, tracer and child on one CPU


def bench_syscalls(reps: int, k: int, m: int, tmp: Path) -> dict[str, dict[str, list[float]]]:
    child = tmp / "syscall_child.py"
    child.write_text(CHILD)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    results: dict[str, dict[str, list[float]]] = {name: {} for name in MICRO}
    cpu = min(os.sched_getaffinity(0))

    def traced(argv: list[str], allowed: int) -> list[str]:
        policy = tmp / f"policy-{allowed}.json"
        policy.write_text(SandboxPolicy(allow=frozenset({("127.0.0.1", allowed)})).to_json())
        return [
            sys.executable,
            "-m",
            "pytest_incident.sandbox.tracer",
            "--policy",
            str(policy),
            "--events",
            str(tmp / "micro-events.jsonl"),
            "--",
            *argv,
        ]

    for n in range(reps):
        allowed, closed = free_port(), free_port()
        while closed == allowed:
            closed = free_port()
        plain = [sys.executable, str(child), str(allowed), str(closed), str(k), str(m)]
        for name in MICRO if n % 2 == 0 else MICRO[::-1]:
            wrap = (lambda a: a) if name == "bare" else partial(traced, allowed=allowed)
            out = run_child(wrap(plain), env, cpu if name == "pinned" else None)
            if out["refused"] != k:
                raise RuntimeError(f"{name}: {out['refused']} of {k} connects were refused")
            for key, value in out.items():
                results[name].setdefault(key, []).append(value)
            if name == "pinned":
                continue
            t0 = time.perf_counter()
            subprocess.run(
                wrap([sys.executable, "-c", "pass"]),
                env=env,
                cwd=ROOT,
                check=True,
                timeout=30,
            )
            results[name].setdefault("spawn_s", []).append(time.perf_counter() - t0)
    return results


# --- main -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Sandboxed vs bare: demo incident replay, start-up, syscall costs."
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=15,
        help="rounds of the speed=inf replay; the micro-benchmark runs "
        "max(3, N/3) times per side (default 15)",
    )
    parser.add_argument(
        "--full-rounds",
        type=int,
        default=2,
        help="rounds of the full incident at speed 1; ~8 s each (default 2)",
    )
    parser.add_argument(
        "--start-rounds",
        type=int,
        default=3,
        help="extra start/close cycles per side for start-up (default 3)",
    )
    parser.add_argument("--connects", type=int, default=2000, help="K connects (default 2000)")
    parser.add_argument(
        "--loop", type=int, default=100_000, help="untrapped stat+pread iterations (default 100000)"
    )
    args = parser.parse_args(argv)
    for var in [v for v in os.environ if v.lower().endswith("_proxy")]:
        del os.environ[var]  # both sides talk to 127.0.0.1 only; a proxy would be a 3rd party

    began = time.perf_counter()
    restore_demo_database()
    spec, requests = load_demo()
    fast = [r for r in requests if not any(c.timed_out for c in r.outbound)]
    print(
        f"pytest-incident sandbox overhead: python {platform.python_version()}, "
        f"{os.cpu_count()} cpus, kernel {platform.release()}"
    )
    print(
        f"demo incident {spec.name}: {len(requests)} requests, {len(fast)} without a "
        f"recorded timeout"
    )
    micro_reps = max(3, args.rounds // 3)
    with tempfile.TemporaryDirectory(prefix="incident-bench-") as tmpdir:
        tmp = Path(tmpdir)
        a = run_pair(spec, requests, fast, float("inf"), args.rounds, 1, tmp, "inf")
        a_tot = report_pair(
            f"1a. replay, speed=inf, requests without a recorded timeout, "
            f"{args.rounds} rounds (+1 warm-up); wall time of replay()",
            a,
            fast,
            "ms",
        )
        b = run_pair(spec, requests, requests, 1.0, args.full_rounds, 1, tmp, "full")
        b_tot = report_pair(
            f"1b. replay, speed=1 (recorded latency), the full incident, "
            f"{args.full_rounds} rounds; wall time of replay()",
            b,
            requests,
            "ms",
        )
        earlier = {name: [s.start_s for s in (*a, *b) if s.name == name] for name in SIDES}
        starts = bench_startup(spec, requests, args.start_rounds, tmp, earlier)
        micro = bench_syscalls(micro_reps, args.connects, args.loop, tmp)
        iso = bench_isolation(spec, requests, fast, max(3, args.rounds // 3), tmp)

    s_start, b_start = median(starts["sandboxed"]), median(starts["bare"])
    print(
        f"\n1c. target start-up, IncidentReplay.start() (stubs + target until it listens), "
        f"{len(starts['sandboxed'])} starts per side"
    )
    print(
        f"  sandboxed {s_start * 1e3:7.1f} ms   bare {b_start * 1e3:7.1f} ms   "
        f"ratio {ratio(s_start, b_start)}   (readiness is polled every 20 ms)"
    )

    k, m = args.connects, args.loop
    med = {name: {key: median(v) for key, v in micro[name].items()} for name in MICRO}
    print(
        f"\n2. syscall micro-benchmark, child python, {micro_reps} runs per side "
        f"(medians, timed inside the child, per operation)"
    )
    print(
        f"  {'':<42} {'sandboxed':>10} {'bare':>10} {'ratio':>7} {'extra':>10}  "
        f"{'1-CPU*':>10} {'extra':>10}"
    )
    rows = [
        (f"untrapped loop, {m} x (stat+pread)", "loop_s", m),
        (f"allowed connect, {k} x (+accept, close)", "connect_s", k),
        (f"refused connect, {k} x", "refused_s", k),
    ]
    for label, key, count in rows:
        s_us, b_us = med["sandboxed"][key] / count * 1e6, med["bare"][key] / count * 1e6
        p_us = med["pinned"][key] / count * 1e6
        print(
            f"  {label:<42} {s_us:>7.2f} µs {b_us:>7.2f} µs {ratio(s_us, b_us):>7} "
            f"{s_us - b_us:>+7.2f} µs  {p_us:>7.2f} µs {p_us - b_us:>+7.2f} µs"
        )
    s_sp, b_sp = med["sandboxed"]["spawn_s"], med["bare"]["spawn_s"]
    print(
        f"  {'spawn `python -c pass` (wall, from parent)':<42} {s_sp * 1e3:>7.1f} ms "
        f"{b_sp * 1e3:>7.1f} ms {ratio(s_sp, b_sp):>7} {(s_sp - b_sp) * 1e3:>+7.1f} ms"
    )
    print("  * 1-CPU: sandboxed again, tracer and child pinned to one CPU (no cross-CPU wake-ups)")

    conn_extra = (med["sandboxed"]["connect_s"] - med["bare"]["connect_s"]) / k * 1e6
    pinned_extra = (med["pinned"]["connect_s"] - med["bare"]["connect_s"]) / k * 1e6
    refused_extra = (med["sandboxed"]["refused_s"] - med["bare"]["refused_s"]) / k * 1e6
    calls = sum(len(r.outbound) for r in fast)
    per_call = (a_tot["sandboxed"] - a_tot["bare"]) / calls * 1e3 if calls else float("nan")
    ns_start, pt_start = median(iso["namespace"]["start"]), median(iso["ptrace"]["start"])
    ns_replay, pt_replay = median(iso["namespace"]["replay"]), median(iso["ptrace"]["replay"])
    print(
        f"\n3. the kernel boundary: target in its own network namespace vs the tracer alone, "
        f"{len(iso['namespace']['start'])} rounds per side (medians)"
    )
    print(
        f"  start-up   namespace {ns_start * 1e3:7.1f} ms   ptrace {pt_start * 1e3:7.1f} ms   "
        f"ratio {ratio(ns_start, pt_start)}   ({(ns_start - pt_start) * 1e3:+.1f} ms)"
    )
    per_request = (ns_replay - pt_replay) / len(fast) * 1e3 if fast else float("nan")
    print(
        f"  replay     namespace {ns_replay * 1e3:7.1f} ms   ptrace {pt_replay * 1e3:7.1f} ms   "
        f"ratio {ratio(ns_replay, pt_replay)}   ({per_request:+.2f} ms per request)"
    )

    print("\nratios: (sandboxed / bare)")
    print(
        f"  replay speed=inf, no-timeout requests, total  "
        f"{ratio(a_tot['sandboxed'], a_tot['bare'])}  ({a_tot['sandboxed'] * 1e3:.1f} ms vs "
        f"{a_tot['bare'] * 1e3:.1f} ms; {per_call:+.2f} ms per outbound call)"
    )
    print(
        f"  replay speed=1, full incident, total          "
        f"{ratio(b_tot['sandboxed'], b_tot['bare'])}  ({b_tot['sandboxed']:.2f} s vs "
        f"{b_tot['bare']:.2f} s)"
    )
    print(
        f"  target start-up                               {ratio(s_start, b_start)}"
        f"  ({s_start * 1e3:.0f} ms vs {b_start * 1e3:.0f} ms)"
    )
    print(
        f"  untrapped syscall loop                        "
        f"{ratio(med['sandboxed']['loop_s'], med['bare']['loop_s'])}"
    )
    print(
        f"  allowed connect                               "
        f"{ratio(med['sandboxed']['connect_s'], med['bare']['connect_s'])}"
        f"  ({conn_extra:+.1f} µs per trapped connect; {pinned_extra:+.1f} µs on one CPU)"
    )
    print(
        f"  refused connect                               "
        f"{ratio(med['sandboxed']['refused_s'], med['bare']['refused_s'])}"
        f"  ({refused_extra:+.1f} µs per trapped connect)"
    )
    print(f"(whole run {time.perf_counter() - began:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
