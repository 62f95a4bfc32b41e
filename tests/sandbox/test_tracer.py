"""The sandbox against real processes: the tracer runs a real Python child under ptrace.

Every destination here is loopback. Where a test checks blocking, the listener is on
127.0.0.1 and the test's policy treats it as external; the listener must see nothing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from ptrace.binding import func as pt

from pytest_incident.runtime.stubs.dns import DnsStub
from pytest_incident.sandbox import seccomp
from pytest_incident.sandbox.policy import SandboxPolicy
from pytest_incident.sandbox.tracer.handlers import HANDLERS, Context, Handler, register
from pytest_incident.sandbox.tracer.loop import EventLog, Tracer
from pytest_incident.sandbox.tracer.tracee import Registers, resume

from ..sandboxing import assert_no_connection, net_events, port_of, run_traced, tracer_argv
from .test_seccomp import run, seccomp_data

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")


def test_refuses_a_destination_not_allowed_before_the_kernel_runs_it(
    tmp_path: Path, listener: socket.socket
) -> None:
    port = port_of(listener)
    proc, events = run_traced(
        tmp_path,
        SandboxPolicy(),
        f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {port}), timeout=2)
            print("connected")
        except ConnectionRefusedError:
            print("refused")
    """,
    )
    assert proc.stdout.strip() == "refused", proc.stderr
    assert_no_connection(listener)
    [event] = net_events(events)
    assert event["action"] == "refuse"
    assert event["dest"] == f"127.0.0.1:{port}"
    assert event["reason"] == "not in sandbox.allow"
    exit_event = events[-1]
    assert isinstance(exit_event.pop("t"), int)  # CLOCK_MONOTONIC, like every event's
    assert exit_event == {"event": "exit", "pid": exit_event["pid"], "code": 0, "signal": None}


def test_allowed_destination_passes_through(tmp_path: Path, listener: socket.socket) -> None:
    port = port_of(listener)
    policy = SandboxPolicy(allow=frozenset({("127.0.0.1", port)}))
    proc, events = run_traced(
        tmp_path,
        policy,
        f"""
        import socket
        s = socket.create_connection(("127.0.0.1", {port}), timeout=2)
        s.sendall(b"live")
        s.close()
    """,
    )
    assert proc.returncode == 0, proc.stderr
    conn, _ = listener.accept()
    assert conn.recv(10) == b"live"
    conn.close()
    assert [e["action"] for e in net_events(events)] == ["allow"]


def test_threads_and_child_processes_are_traced(tmp_path: Path, listener: socket.socket) -> None:
    port = port_of(listener)
    proc, events = run_traced(
        tmp_path,
        SandboxPolicy(),
        f"""
        import socket, subprocess, sys, threading
        def attempt(tag):
            try:
                socket.create_connection(("127.0.0.1", {port}), timeout=2)
                print(tag, "connected")
            except ConnectionRefusedError:
                print(tag, "refused")
        attempt("main")
        t = threading.Thread(target=attempt, args=("thread",)); t.start(); t.join()
        code = "import socket\\ntry:\\n socket.create_connection(('127.0.0.1', {port}), 2)\\n" \\
               "except ConnectionRefusedError: print('child refused')"
        print(subprocess.run([sys.executable, "-c", code], capture_output=True,
                             text=True).stdout.strip())
    """,
    )
    assert proc.stdout.split("\n")[:3] == ["main refused", "thread refused", "child refused"]
    assert_no_connection(listener)
    refused = net_events(events)
    assert len(refused) == 3
    assert len({e["pid"] for e in refused}) == 3  # main thread, second thread, child


def test_recorded_host_resolves_through_dns_stub_and_is_redirected(
    tmp_path: Path, listener: socket.socket
) -> None:
    dns = DnsStub({"api.payments.example": "127.77.0.1"})
    try:
        policy = SandboxPolicy(
            redirects={("127.77.0.1", 80): ("127.0.0.1", port_of(listener))},
            dns=dns.address,
            hostnames={"127.77.0.1": "api.payments.example"},
        )
        proc, events = run_traced(
            tmp_path,
            policy,
            """
            import socket
            s = socket.create_connection(("api.payments.example", 80), timeout=2)
            s.sendall(b"to the stub")
            s.close()
            try:
                socket.create_connection(("not-recorded.example", 80), timeout=2)
            except ConnectionRefusedError:
                print("unrecorded host resolves, its connect is refused")
        """,
        )
        assert proc.returncode == 0, proc.stderr
        assert "unrecorded host resolves, its connect is refused" in proc.stdout
        conn, _ = listener.accept()
        assert conn.recv(20) == b"to the stub"
        conn.close()
        event, refused = net_events(events)
        assert refused["action"] == "refuse"
        assert refused["dest"] == dns.unrecorded["not-recorded.example"] + ":80"
        assert dns.name_of(dns.unrecorded["not-recorded.example"]) == "not-recorded.example"
        assert event["action"] == "redirect"
        assert event["host"] == "api.payments.example"
        assert event["to"] == f"127.0.0.1:{port_of(listener)}"
        looked_up = {(q.name, q.known) for q in dns.take_lookups()}
        assert ("api.payments.example", True) in looked_up
        assert ("not-recorded.example", False) in looked_up
    finally:
        dns.close()


def test_redirected_datagram_reply_appears_to_come_from_the_original_server(
    tmp_path: Path,
) -> None:
    """Resolvers drop replies from an unexpected source; the tracer rewrites recvfrom's."""
    dns = DnsStub({"api.payments.example": "127.77.0.1"})
    try:
        policy = SandboxPolicy(dns=dns.address)
        proc, _ = run_traced(
            tmp_path,
            policy,
            """
            import socket
            from dnslib import DNSRecord
            query = DNSRecord.question("api.payments.example").pack()
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            s.connect(("127.0.0.53", 53))
            s.send(query)
            data, source = s.recvfrom(512)
            print(source, DNSRecord.parse(data).short())
        """,
        )
        assert proc.stdout.strip() == "('127.0.0.53', 53) 127.77.0.1", proc.stderr
    finally:
        dns.close()


def test_raw_sockets_and_io_uring_are_denied(tmp_path: Path) -> None:
    proc, _ = run_traced(
        tmp_path,
        SandboxPolicy(),
        """
        import ctypes, errno, socket
        for family, kind in [(socket.AF_INET, socket.SOCK_RAW), (socket.AF_INET6, socket.SOCK_RAW),
                             (socket.AF_PACKET, socket.SOCK_RAW)]:
            try:
                socket.socket(family, kind)
                print("created")
            except PermissionError:
                print("denied")
        libc = ctypes.CDLL(None, use_errno=True)
        params = ctypes.create_string_buffer(120)
        print(libc.syscall(425, 8, params), errno.errorcode[ctypes.get_errno()])
    """,
    )
    assert proc.stdout.split() == ["denied", "denied", "denied", "-1", "ENOSYS"], proc.stderr


def test_filter_fails_closed_without_a_tracer(listener: socket.socket) -> None:
    code = textwrap.dedent(f"""
        import socket
        from pytest_incident.sandbox import seccomp
        seccomp.install(seccomp.build_program())
        try:
            socket.create_connection(("127.0.0.1", {port_of(listener)}), timeout=2)
            print("connected")
        except OSError as exc:
            print(exc.errno)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.stdout.strip() == "38", proc.stderr  # ENOSYS
    assert_no_connection(listener)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is not running
        return stat.read().split(") ")[1][0] != "Z"


def _wait_gone(pid: int, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_nothing_outlives_the_target(tmp_path: Path) -> None:
    pidfile = tmp_path / "daemon.pid"
    proc, _ = run_traced(
        tmp_path,
        SandboxPolicy(),
        f"""
        import os, subprocess, sys
        # a daemon that detaches into its own session and would otherwise live on
        code = ("import os, time\\n"
                "open({str(pidfile)!r}, 'w').write(str(os.getpid()))\\ntime.sleep(60)")
        subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
        import time
        while not os.path.exists({str(pidfile)!r}) or not open({str(pidfile)!r}).read():
            time.sleep(0.01)
        sys.exit(3)
    """,
    )
    assert proc.returncode == 3, proc.stderr
    daemon = int(pidfile.read_text())
    assert _wait_gone(daemon), f"daemon {daemon} still running after the target exited"


def test_stopping_or_killing_the_tracer_ends_every_tracee(tmp_path: Path) -> None:
    for how in (signal.SIGTERM, signal.SIGKILL):
        pidfile = tmp_path / f"target-{how.name}.pid"
        code = (
            f"import os, time\nopen({str(pidfile)!r}, 'w').write(str(os.getpid()))\ntime.sleep(60)"
        )
        tracer = subprocess.Popen(tracer_argv(tmp_path, SandboxPolicy(), code))
        try:
            deadline = time.monotonic() + 10
            while not (pidfile.exists() and pidfile.read_text()):
                assert time.monotonic() < deadline, "target did not start"
                time.sleep(0.01)
            target = int(pidfile.read_text())
            tracer.send_signal(how)
            tracer.wait(10)
            assert _wait_gone(target), f"target survived {how.name} of the tracer"
        finally:
            tracer.kill()
            tracer.wait()


def test_untraced_clones_are_denied_and_clone3_falls_back(tmp_path: Path) -> None:
    proc, _ = run_traced(
        tmp_path,
        SandboxPolicy(),
        """
        import ctypes, errno, os, signal, threading
        libc = ctypes.CDLL(None, use_errno=True)
        CLONE_UNTRACED = 0x00800000
        # clone(flags=CLONE_UNTRACED|SIGCHLD, stack=0): a fork the tracer would not see
        pid = libc.syscall(56, CLONE_UNTRACED | signal.SIGCHLD, 0, 0, 0, 0)
        if pid == 0:
            os._exit(0)
        print(pid, errno.errorcode[ctypes.get_errno()])
        print(libc.syscall(435, 0, 0), errno.errorcode[ctypes.get_errno()])  # clone3
        t = threading.Thread(target=lambda: print("thread ran")); t.start(); t.join()
        """,
    )
    assert proc.stdout.split("\n")[:3] == ["-1 EPERM", "-1 ENOSYS", "thread ran"], proc.stderr


@pytest.fixture
def udp_listener() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.3)
    yield sock
    sock.close()


def assert_no_datagram(sock: socket.socket) -> None:
    with pytest.raises(TimeoutError):
        sock.recv(100)


def test_unspecified_family_cannot_smuggle_a_datagram(
    tmp_path: Path, udp_listener: socket.socket
) -> None:
    """udp_sendmsg reads an AF_UNSPEC address as IPv4; the policy must not wave it through."""
    port = port_of(udp_listener)
    proc, events = run_traced(
        tmp_path,
        SandboxPolicy(),
        f"""
        import ctypes, errno, socket, struct
        libc = ctypes.CDLL(None, use_errno=True)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        addr = struct.pack("=H", socket.AF_UNSPEC) + struct.pack("!H4s8x", {port},
                                                                  socket.inet_aton("127.0.0.1"))
        sent = libc.sendto(s.fileno(), b"smuggled", 8, 0, addr, len(addr))
        print(sent, errno.errorcode.get(ctypes.get_errno()))
        """,
    )
    assert proc.stdout.strip() == "-1 EAFNOSUPPORT", proc.stderr
    assert_no_datagram(udp_listener)
    [event] = net_events(events)
    assert event["action"] == "refuse"


def test_source_routing_options_are_denied(tmp_path: Path) -> None:
    proc, _ = run_traced(
        tmp_path,
        SandboxPolicy(),
        """
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        lsrr = bytes([1, 131, 7, 4, 127, 0, 0, 2])  # NOP, LSRR via 127.0.0.2
        for level, name, value in [(socket.IPPROTO_IP, 4, lsrr),  # IP_OPTIONS
                                   (41, 57, b"\\0" * 8)]:          # IPV6_RTHDR
            try:
                (s if level == 0 else socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                 ).setsockopt(level, name, value)
                print("set")
            except PermissionError:
                print("denied")
        s.setsockopt(socket.IPPROTO_IP, socket.IP_TOS, 0x10)  # ordinary options still work
        print("tos ok")
        """,
    )
    assert proc.stdout.split() == ["denied", "denied", "tos", "ok"], proc.stderr


def test_control_messages_that_route_are_refused(
    tmp_path: Path, udp_listener: socket.socket
) -> None:
    port = port_of(udp_listener)
    policy = SandboxPolicy(allow=frozenset({("127.0.0.1", port)}))
    proc, events = run_traced(
        tmp_path,
        policy,
        f"""
        import socket
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        lsrr = bytes([1, 131, 7, 4, 127, 0, 0, 2])
        try:
            s.sendmsg([b"routed"], [(socket.IPPROTO_IP, 7, lsrr)], 0, ("127.0.0.1", {port}))
            print("sent")
        except PermissionError:
            print("refused")
        s.sendmsg([b"plain"], [(socket.IPPROTO_IP, socket.IP_TOS, bytes(4))], 0,
                  ("127.0.0.1", {port}))
        """,
    )
    assert proc.stdout.strip() == "refused", proc.stderr
    assert udp_listener.recv(100) == b"plain"  # the allowed one, with a harmless TOS
    assert_no_datagram(udp_listener)
    reasons = [e["reason"] for e in net_events(events) if e["action"] == "refuse"]
    assert reasons == ["control message level 0 type 7 could change the destination"]


def test_datagrams_to_loopback_ports_not_allowed_go_to_the_sink(
    tmp_path: Path, udp_listener: socket.socket
) -> None:
    """A local agent (statsd, a tracing agent) would forward them off the machine."""
    from pytest_incident.runtime.stubs.sink import DatagramSink

    sink = DatagramSink()
    try:
        port = port_of(udp_listener)
        proc, events = run_traced(
            tmp_path,
            SandboxPolicy(sink=sink.address),
            f"""
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(b"signup.count:1|c", ("127.0.0.1", {port}))
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.connect(("127.0.0.1", {port}))
            c.send(b"signup.latency:3|ms")
            """,
        )
        assert proc.returncode == 0, proc.stderr
        assert_no_datagram(udp_listener)
        deadline = time.monotonic() + 2
        while sink.take_count() == 0:
            assert time.monotonic() < deadline, "the sink saw nothing"
            time.sleep(0.01)
        assert {(e["call"], e["action"]) for e in net_events(events)} == {
            ("sendto", "discard"),
            ("connect", "discard"),
        }
    finally:
        sink.close()


def test_ways_around_the_tracer_are_denied(tmp_path: Path) -> None:
    proc, _ = run_traced(
        tmp_path,
        SandboxPolicy(),
        """
        import ctypes, errno, os, socket
        libc = ctypes.CDLL(None, use_errno=True)
        def outcome(result):
            return "ok" if result >= 0 else errno.errorcode[ctypes.get_errno()]
        # a seccomp filter with a user-space listener would answer before the tracer
        fprog = ctypes.create_string_buffer(16)  # never read: the call is denied first
        print(outcome(libc.syscall(317, 1, 8, fprog)))   # SECCOMP_SET_MODE_FILTER, NEW_LISTENER
        print(outcome(libc.syscall(101, 16, os.getppid(), 0, 0)))  # PTRACE_ATTACH
        for family in (40, 44, 17):  # AF_VSOCK, AF_XDP, AF_PACKET
            try:
                socket.socket(family, socket.SOCK_DGRAM)
                print("created")
            except PermissionError:
                print("EPERM")
        status = open("/proc/self/status").read()
        bounding = int(status.split("CapBnd:")[1].split()[0], 16)
        print("net_admin" if bounding & (1 << 12) else "no-net_admin",
              "net_raw" if bounding & (1 << 13) else "no-net_raw")
        """,
    )
    assert proc.stdout.split() == [
        "EPERM", "EPERM", "EPERM", "EPERM", "EPERM", "no-net_admin", "no-net_raw"
    ], proc.stderr  # fmt: skip


def test_bad_pointer_fails_the_call_not_the_sandbox(tmp_path: Path) -> None:
    proc, events = run_traced(
        tmp_path,
        SandboxPolicy(),
        """
        import ctypes, errno, socket, threading
        libc = ctypes.CDLL(None, use_errno=True)
        s = socket.socket()
        print(libc.connect(s.fileno(), ctypes.c_void_p(1), 16),
              errno.errorcode[ctypes.get_errno()])
        t = threading.Thread(target=lambda: print("still running")); t.start(); t.join()
        """,
    )
    assert proc.stdout.split("\n")[:2] == ["-1 EFAULT", "still running"], proc.stderr
    assert events[-1]["event"] == "exit" and events[-1]["code"] == 0


def test_message_headers_are_copied_not_rewritten(tmp_path: Path) -> None:
    """sendmsg/sendmmsg see private copies; the caller's headers stay as they were."""
    dns = DnsStub({"api.payments.example": "127.77.0.1"})
    try:
        proc, _ = run_traced(
            tmp_path,
            SandboxPolicy(dns=dns.address),
            """
            import ctypes, socket, struct
            from dnslib import DNSRecord
            libc = ctypes.CDLL(None, use_errno=True)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            query = bytes(DNSRecord.question("api.payments.example").pack())
            name = ctypes.create_string_buffer(struct.pack("=H", socket.AF_INET)
                                               + struct.pack("!H4s8x", 53,
                                                             socket.inet_aton("127.0.0.53")))
            data = ctypes.create_string_buffer(query, len(query))
            iov = struct.pack("=QQ", ctypes.addressof(data), len(query))
            iovbuf = ctypes.create_string_buffer(iov, len(iov))
            hdr = struct.pack("=QI4xQQQQi4x", ctypes.addressof(name), 16,
                              ctypes.addressof(iovbuf), 1, 0, 0, 0)
            vec = ctypes.create_string_buffer(hdr + bytes(8) + hdr + bytes(8))
            before = vec.raw
            sent = libc.sendmmsg(s.fileno(), vec, 2, 0)
            lens = [struct.unpack_from("=I", vec.raw, 56 + 64 * i)[0] for i in range(2)]
            unchanged = all(vec.raw[64 * i:64 * i + 56] == before[64 * i:64 * i + 56]
                            for i in range(2))
            print(sent, lens == [len(query)] * 2, unchanged)
            one = ctypes.create_string_buffer(hdr)
            print(libc.sendmsg(s.fileno(), one, 0) == len(query), one.raw[:56] == hdr)
            print(DNSRecord.parse(s.recv(512)).short())
            """,
        )
        assert proc.stdout.split("\n")[:3] == ["2 True True", "True True", "127.77.0.1"], (
            proc.stderr
        )
        assert {q.name for q in dns.take_lookups()} == {"api.payments.example"}
    finally:
        dns.close()


def test_sendmmsg_sends_only_the_messages_that_were_checked(
    tmp_path: Path, udp_listener: socket.socket
) -> None:
    """A long vector whose first messages are plain cannot slip an address in later: only
    messages that were checked and copied are sent (as many as the scratch area holds, at
    most 64), and sendmmsg says how many went."""
    port = port_of(udp_listener)
    proc, _ = run_traced(
        tmp_path,
        SandboxPolicy(allow=frozenset({("127.0.0.1", port)})),
        f"""
        import ctypes, socket, struct
        libc = ctypes.CDLL(None, use_errno=True)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", {port}))
        data = ctypes.create_string_buffer(b"x")
        iov = ctypes.create_string_buffer(struct.pack("=QQ", ctypes.addressof(data), 1))
        plain = struct.pack("=QI4xQQQQi4x", 0, 0, ctypes.addressof(iov), 1, 0, 0, 0)
        vec = ctypes.create_string_buffer((plain + bytes(8)) * 70)
        print(libc.sendmmsg(s.fileno(), vec, 70, 0))
        """,
    )
    assert 1 <= int(proc.stdout.strip()) <= 64, proc.stderr


def test_a_call_restarted_after_a_signal_reads_the_callers_own_buffers(tmp_path: Path) -> None:
    """SA_RESTART re-runs a call with its registers; the signal frame lands right where a
    private copy would sit, so the tracer puts the caller's registers back at the exit."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = port_of(probe)
    proc, events = run_traced(
        tmp_path,
        SandboxPolicy(allow=frozenset({("127.0.0.1", port)})),
        f"""
        import fcntl, os, signal, socket, threading, time
        srv = socket.socket()
        srv.bind(("127.0.0.1", {port}))
        srv.listen()  # never accepts, never reads
        c = socket.create_connection(("127.0.0.1", {port}))
        c.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        c.setblocking(False)
        for _ in range(20):
            try:
                while c.send(bytes(65536)):
                    pass
            except BlockingIOError:
                time.sleep(0.02)
        c.setblocking(True)
        signal.signal(signal.SIGALRM, lambda *_: None)
        signal.siginterrupt(signal.SIGALRM, False)  # SA_RESTART: the kernel re-runs the call

        def unblock():
            signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
            time.sleep(0.4)
            flags = fcntl.fcntl(c.fileno(), fcntl.F_GETFL)
            fcntl.fcntl(c.fileno(), fcntl.F_SETFL, flags | os.O_NONBLOCK)

        threading.Thread(target=unblock).start()
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        try:
            c.sendto(b"x", ("127.0.0.1", {port}))
            print("sent")
        except OSError as exc:
            print(type(exc).__name__)
        """,
    )
    assert proc.stdout.strip() == "BlockingIOError", proc.stderr  # as without the sandbox
    refused = [e for e in net_events(events) if e["action"] == "refuse"]
    assert refused == []
    sends = [e for e in net_events(events) if e["call"] == "sendto"]
    assert len(sends) > 1  # restarted at least once, each time re-read and re-checked


def test_target_cannot_reach_processes_outside_the_sandbox(tmp_path: Path) -> None:
    """Landlock keeps the target from signalling or writing the memory of the tracer."""
    probe = subprocess.run(
        [sys.executable, "-c", "import ctypes; from pytest_incident.sandbox import seccomp; "
         "ctypes.CDLL(None).prctl(38, 1, 0, 0, 0); print(seccomp.enter_landlock_domain())"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if int(probe.stdout.strip() or 0) < 6:
        pytest.skip("Landlock signal scoping needs Landlock ABI 6 (Linux 6.12)")
    proc, _ = run_traced(
        tmp_path,
        SandboxPolicy(),
        """
        import os
        tracer = os.getppid()
        for attempt in (lambda: os.kill(tracer, 0),
                        lambda: open(f"/proc/{tracer}/mem", "r+b")):
            try:
                attempt()
                print("reached")
            except PermissionError:
                print("denied")
        """,
    )
    assert proc.stdout.split() == ["denied", "denied"], proc.stderr


def test_sctp_sockets_are_denied(tmp_path: Path) -> None:
    proc, _ = run_traced(
        tmp_path,
        SandboxPolicy(),
        """
        import socket
        try:
            socket.socket(socket.AF_INET, socket.SOCK_STREAM, 132)
            print("created")
        except PermissionError:
            print("denied")
        """,
    )
    assert proc.stdout.strip() == "denied", proc.stderr


def test_every_call_the_filter_traps_has_a_handler() -> None:
    program = seccomp.build_program()
    with_address = (3, 0x1000, 16, 0, 0x2000, 16)  # every pointer argument set
    trapped = {
        nr
        for nr in range(512)
        if run(program, seccomp_data(nr, *with_address)) == seccomp.RET_TRAP_TRACE
    }
    assert {seccomp.SYSCALL_NAMES[nr] for nr in trapped} == set(HANDLERS)


SECCOMP_STOP = (7 << 16) | (signal.SIGTRAP << 8) | 0x7F  # PTRACE_EVENT_SECCOMP


def test_a_handler_plugs_in_by_registering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop calls whatever is registered for a trapped call, and resumes a trapped call
    with no handler unchanged (no register written, nothing logged)."""
    regs = SimpleNamespace(
        orig_rax=seccomp.NR["sendto"], rax=0, rdi=3, rsi=0x1000, rdx=5, r10=0, r8=0x2000, r9=16,
        rsp=0x7FFF0000,
    )  # fmt: skip
    ptrace_calls: list[tuple[str, int, int]] = []
    monkeypatch.setattr(pt, "ptrace_getregs", lambda pid: regs)
    monkeypatch.setattr(pt, "ptrace_setregs", lambda pid, r: ptrace_calls.append(("set", pid, 0)))
    monkeypatch.setattr(pt, "ptrace_cont", lambda pid, sig: ptrace_calls.append(("cont", pid, sig)))
    monkeypatch.setattr(pt, "ptrace_syscall", lambda pid, sig: ptrace_calls.append(("sys", pid, 0)))
    registry: dict[str, Handler] = {}
    seen: list[tuple[int, int]] = []

    @register("connect", registry)
    def on_connect(ctx: Context, pid: int, regs: Registers) -> None:
        seen.append((pid, regs.orig_rax))
        resume(pid)

    with pytest.raises(ValueError):
        register("connect", registry)(on_connect)
    tracer = Tracer(SandboxPolicy(), EventLog(tmp_path / "events.jsonl"), registry)
    before = dict(vars(regs))

    tracer._on_status(4242, SECCOMP_STOP)  # sendto: trapped, but not registered here
    assert ptrace_calls == [("cont", 4242, 0)]
    assert vars(regs) == before and seen == []

    regs.orig_rax = seccomp.NR["connect"]
    tracer._on_status(4242, SECCOMP_STOP)
    assert seen == [(4242, seccomp.NR["connect"])]
    assert ptrace_calls[1:] == [("cont", 4242, 0)]
    tracer.events.close()
    assert (tmp_path / "events.jsonl").read_text() == ""
