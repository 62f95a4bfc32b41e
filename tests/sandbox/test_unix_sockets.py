"""Unix sockets: a target reaches its own and those `sandbox.allow` names, never a host
daemon's (here: a listener the test holds, standing for docker.sock or a forwarding proxy);
syslog goes to a sink. Every guarantee runs in both modes, in namespaces of the target's own
and with the tracer alone, and the races run bare too, to show they do get out unconfined.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_incident.sandbox.policy import SandboxPolicy

from ..sandboxing import namespaces_missing, read_events, run_isolated

MODES = [
    pytest.param(
        True,
        id="namespaces",
        marks=pytest.mark.skipif(bool(namespaces_missing()), reason=namespaces_missing()),
    ),
    pytest.param(False, id="tracer-alone"),
]


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[socket.socket]:
    """A host daemon's stream socket (docker.sock, a forwarding proxy), in tmp_path/daemon."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(tmp_path / "daemon"))
    sock.listen(64)
    sock.settimeout(0.3)
    yield sock
    sock.close()


def accepted(listener: socket.socket) -> int:
    """How many connections wait at `listener` (each accepted and closed)."""
    count = 0
    listener.settimeout(0.05)
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            return count
        conn.close()
        count += 1


def run(tmp_path: Path, code: str, isolated: bool | None, **policy: object) -> dict[str, object]:
    """`python -c code` under the tracer (isolated or not), or bare (None): its JSON line."""
    if isolated is None:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            capture_output=True, text=True, cwd=tmp_path, timeout=120,
        )  # fmt: skip
    else:
        proc = run_isolated(tmp_path, code, isolated, SandboxPolicy(**policy))  # type: ignore[arg-type]
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout.splitlines()[-1])
    return result


CONNECT = """
import json, socket, sys
results = {}
for name in sys.argv[1:] or %r:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(name)
        s.sendall(b"hello")
        results[repr(name)] = "connected"
    except OSError as exc:
        results[repr(name)] = exc.errno
    s.close()
print(json.dumps(results))
"""


@pytest.mark.parametrize("isolated", MODES)
def test_a_host_daemons_socket_is_refused_and_reported(
    tmp_path: Path, daemon: socket.socket, isolated: bool
) -> None:
    path = str(tmp_path / "daemon")
    result = run(tmp_path, CONNECT % [path], isolated)
    assert result == {repr(path): 111}  # ECONNREFUSED, as from a socket nobody listens on
    assert accepted(daemon) == 0
    [event] = [e for e in read_events(tmp_path) if e["event"] == "net"]
    assert (event["dest"], event["action"]) == (path, "refuse")
    assert f"unix:{path}" in str(event["reason"])  # how to let it through


@pytest.mark.parametrize("isolated", MODES)
def test_a_socket_in_sandbox_allow_passes_live_and_is_reported(
    tmp_path: Path, daemon: socket.socket, isolated: bool
) -> None:
    """The twin: the same socket, allowed, is reached; what the target sent arrives."""
    path = str(tmp_path / "daemon")
    result = run(tmp_path, CONNECT % [path], isolated, unix_allow=frozenset({path}))
    assert result == {repr(path): "connected"}
    conn, _ = daemon.accept()
    assert conn.recv(5) == b"hello"
    conn.close()
    [event] = [e for e in read_events(tmp_path) if e["event"] == "net"]
    assert (event["dest"], event["action"]) == (path, "allow")


OWN = """
import json, os, socket, threading
results = {}
for name in ("own.sock", b"\\0incident-own-%d" % os.getpid()):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(name)
    server.listen()
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    client.connect(name)
    client.sendall(b"ping")
    conn, _ = server.accept()
    results[repr(name)] = conn.recv(4).decode()
# a datagram socket of its own, sent to by name
sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sink.bind("own.dgram")
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"dgram", "own.dgram")
results["dgram"] = sink.recv(5).decode()
print(json.dumps(results))
"""


@pytest.mark.parametrize("isolated", MODES)
def test_the_targets_own_sockets_work_silently(tmp_path: Path, isolated: bool) -> None:
    result = run(tmp_path, OWN, isolated)
    assert sorted(result.values()) == ["dgram", "ping", "ping"]
    assert [e for e in read_events(tmp_path) if e["event"] == "net"] == []


ABSTRACT_DAEMON = b"\0incident-test-daemon"


@pytest.mark.parametrize("isolated", MODES)
def test_a_host_daemons_abstract_socket_is_refused(tmp_path: Path, isolated: bool) -> None:
    daemon = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        daemon.bind(ABSTRACT_DAEMON + str(tmp_path).encode())
    except OSError as exc:
        pytest.skip(f"cannot bind an abstract name here: {exc}")
    daemon.listen()
    try:
        name = ABSTRACT_DAEMON + str(tmp_path).encode()
        code = CONNECT.replace("%r", repr([name]))
        result = run(tmp_path, code, isolated)
        assert list(result.values()) == [111]
        assert accepted(daemon) == 0
        [event] = [e for e in read_events(tmp_path) if e["event"] == "net"]
        assert event["action"] == "refuse" and str(event["dest"]).startswith("@incident-test")
    finally:
        daemon.close()


# the end of each race program: accept what its own server got, then report
RACE_END = """
    try:
        server.setblocking(False)
        while True:
            server.accept()[0].close()
    except BlockingIOError:
        pass
stop = True
flipper.join()
print(json.dumps({"connected": reached}))
"""

SYMLINK_RACE = (
    """
import json, os, socket, threading
os.chdir(%(dir)r)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind("own.sock")
server.listen(1024)
stop = False
def flip():
    # "link" points at the target's own socket, then at the daemon's, over and over
    i = 0
    while not stop:
        i += 1
        os.symlink("daemon" if i %% 2 else "own.sock", "link.new")
        os.replace("link.new", "link")
flipper = threading.Thread(target=flip)
flipper.start()
reached = 0
for _ in range(%(attempts)d):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)  # the daemon's backlog fills up: fail, do not wait
    try:
        s.connect("link")
        reached += 1
    except OSError:
        pass
    s.close()
"""
    + RACE_END
)


def race(tmp_path: Path, isolated: bool | None, attempts: int = 400) -> dict[str, object]:
    return run(tmp_path, SYMLINK_RACE % {"dir": str(tmp_path), "attempts": attempts}, isolated)


@pytest.mark.parametrize("isolated", MODES)
def test_a_symlink_swapped_after_the_check_reaches_only_the_targets_own_socket(
    tmp_path: Path, daemon: socket.socket, isolated: bool
) -> None:
    """The tracer decides on the inode it resolved and connects to exactly that one: a link
    flipped between the target's own socket and the daemon's never lands on the daemon."""
    result = race(tmp_path, isolated)
    assert accepted(daemon) == 0
    assert result["connected"] > 0  # the race ran: its own socket was reached through it


def test_the_symlink_race_does_reach_the_daemon_unconfined(
    tmp_path: Path, daemon: socket.socket
) -> None:
    """The twin: the same program, bare, reaches the daemon through the link."""
    race(tmp_path, None, attempts=2000)
    assert accepted(daemon) > 0


ADDRESS_RACE = (
    """
import ctypes, json, os, socket, struct, threading
os.chdir(%(dir)r)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind("own.sock")
server.listen(1024)
own = struct.pack("=H", socket.AF_UNIX) + b"own.sock".ljust(108, b"\\0")
theirs = struct.pack("=H", socket.AF_UNIX) + b"daemon".ljust(108, b"\\0")
buf = ctypes.create_string_buffer(own, len(own))
libc = ctypes.CDLL(None, use_errno=True)
stop = False
def flip():
    # the address the main thread passes turns into the daemon's after it was looked at
    while not stop:
        ctypes.memmove(buf, theirs, len(theirs))
        ctypes.memmove(buf, own, len(own))
flipper = threading.Thread(target=flip)
flipper.start()
reached = 0
for _ in range(%(attempts)d):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setblocking(False)  # the daemon's backlog fills up: fail, do not wait
    if libc.connect(s.fileno(), buf, len(own)) == 0:
        reached += 1
    s.close()
"""
    + RACE_END
)


@pytest.mark.parametrize("isolated", [*MODES, pytest.param(None, id="bare")])
def test_an_address_rewritten_after_the_check_never_reaches_the_daemon(
    tmp_path: Path, daemon: socket.socket, isolated: bool | None
) -> None:
    """The tracer connects from its own copy of the address; bare, the race gets out."""
    attempts = 400 if isolated is not None else 5000  # bare, the GIL makes the race rarer
    result = run(tmp_path, ADDRESS_RACE % {"dir": str(tmp_path), "attempts": attempts}, isolated)
    if isolated is None:
        assert accepted(daemon) > 0  # the twin: unconfined, some connects land there
        return
    assert accepted(daemon) == 0
    assert result["connected"] > 0


@pytest.fixture
def datagram_daemon(tmp_path: Path) -> Iterator[socket.socket]:
    """A host daemon's datagram socket (syslog, journald, systemd's notify socket)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(tmp_path / "dgram-daemon"))
    sock.settimeout(0.3)
    yield sock
    sock.close()


SENDS = """
import json, socket
path = %r
results = {}
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
for how in ("sendto", "sendmsg"):
    try:
        if how == "sendto":
            s.sendto(b"by sendto", path)
        else:
            s.sendmsg([b"by ", b"sendmsg"], [], 0, path)
        results[how] = "sent"
    except OSError as exc:
        results[how] = exc.errno
print(json.dumps(results))
"""


@pytest.mark.parametrize("isolated", MODES)
def test_datagrams_to_a_host_daemon_are_refused(
    tmp_path: Path, datagram_daemon: socket.socket, isolated: bool
) -> None:
    path = str(tmp_path / "dgram-daemon")
    result = run(tmp_path, SENDS % path, isolated)
    assert result == {"sendto": 111, "sendmsg": 111}
    with pytest.raises(TimeoutError):
        datagram_daemon.recv(100)


@pytest.mark.parametrize("isolated", MODES)
def test_datagrams_to_an_allowed_socket_arrive_whole(
    tmp_path: Path, datagram_daemon: socket.socket, isolated: bool
) -> None:
    """The twin: allowed, both sends arrive, each as what the target sent (the tracer made
    them from the target's buffers)."""
    path = str(tmp_path / "dgram-daemon")
    result = run(tmp_path, SENDS % path, isolated, unix_allow=frozenset({path}))
    assert result == {"sendto": "sent", "sendmsg": "sent"}
    assert {datagram_daemon.recv(100), datagram_daemon.recv(100)} == {b"by sendto", b"by sendmsg"}


SYSLOG = """
import json, logging, logging.handlers
handler = logging.handlers.SysLogHandler(address="/dev/log")
logger = logging.getLogger("app")
logger.addHandler(handler)
logger.warning("card declined for order 7")
print(json.dumps({"logged": True}))
"""


@pytest.mark.parametrize("isolated", MODES)
def test_syslog_goes_to_the_sink(tmp_path: Path, isolated: bool) -> None:
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(tmp_path / "sink"))
    sink.settimeout(5)
    try:
        result = run(tmp_path, SYSLOG, isolated, unix_sink=str(tmp_path / "sink"))
        assert result == {"logged": True}
        assert b"card declined for order 7" in sink.recv(1000)
    finally:
        sink.close()
    [event] = [e for e in read_events(tmp_path) if e["event"] == "net"]
    assert (event["dest"], event["action"]) == ("/dev/log", "discard")


@pytest.mark.parametrize("isolated", MODES)
def test_without_a_sink_syslog_is_refused(tmp_path: Path, isolated: bool) -> None:
    """The twin: with no sink, the line goes nowhere (a host's /dev/log is another program's
    socket; here there may be none at all)."""
    proc = run_isolated(tmp_path, SYSLOG, isolated, SandboxPolicy())
    assert "--- Logging error ---" in proc.stderr  # SysLogHandler could not deliver it
    assert [e for e in read_events(tmp_path) if e.get("action") == "discard"] == []


CONTROL = """
import json, os, socket
path = %r
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
r, w = os.pipe()
try:
    s.sendmsg([b"fd"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, r.to_bytes(4, "little"))], 0, path)
    print(json.dumps({"sent": True}))
except OSError as exc:
    print(json.dumps({"errno": exc.errno}))
"""


@pytest.mark.parametrize("isolated", MODES)
def test_descriptors_sent_by_name_are_refused_even_to_an_allowed_socket(
    tmp_path: Path, datagram_daemon: socket.socket, isolated: bool
) -> None:
    """The tracer makes a named send itself and cannot carry the target's descriptors."""
    path = str(tmp_path / "dgram-daemon")
    result = run(tmp_path, CONTROL % path, isolated, unix_allow=frozenset({path}))
    assert result == {"errno": 1}  # EPERM
    with pytest.raises(TimeoutError):
        datagram_daemon.recv(100)


PASSING = """
import json, os, socket
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
r, w = os.pipe()
a.sendmsg([b"fd"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, r.to_bytes(4, "little"))])
data, fds, _, _ = socket.recv_fds(b, 10, 1)
os.write(w, b"through")
print(json.dumps({"data": data.decode(), "read": os.read(fds[0], 7).decode()}))
"""


@pytest.mark.parametrize("isolated", MODES)
def test_descriptors_pass_between_the_targets_own_sockets(tmp_path: Path, isolated: bool) -> None:
    assert run(tmp_path, PASSING, isolated) == {"data": "fd", "read": "through"}


SWAP_SOURCE = Path(__file__).with_name("descriptor_swap.c")


@pytest.fixture(scope="module")
def descriptor_swap(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The descriptor-swap program, compiled (C: no GIL between the two threads)."""
    if shutil.which("gcc") is None:
        pytest.skip("needs gcc to build the descriptor-swap program")
    binary = tmp_path_factory.mktemp("swap") / "descriptor_swap"
    subprocess.run(["gcc", "-O2", "-pthread", "-o", str(binary), str(SWAP_SOURCE)], check=True)
    return str(binary)


def swapped_calls(
    tmp_path: Path, program: str, how: str, isolated: bool | None, attempts: int = 1500
) -> None:
    path = str(tmp_path / ("daemon" if how == "connect" else "dgram-daemon"))
    argv = [program, how, path, str(attempts)]
    if isolated is None:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    else:
        code = f"import os; os.execv({program!r}, {argv!r})"
        proc = run_isolated(tmp_path, code, isolated)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("how", ["connect", "sendto", "sendmsg"])
@pytest.mark.parametrize("isolated", MODES)
def test_a_descriptor_swapped_under_a_netlink_call_reaches_no_daemon(
    tmp_path: Path,
    daemon: socket.socket,
    datagram_daemon: socket.socket,
    descriptor_swap: str,
    isolated: bool,
    how: str,
) -> None:
    """Found by an adversarial pass: netlink calls ran natively on the caller's descriptor
    number, so a unix socket dup2'd over it after the look reached the daemon (about 25 %).
    The tracer now makes the call itself, on the socket it looked at."""
    swapped_calls(tmp_path, descriptor_swap, how, isolated)
    assert accepted(daemon) == 0
    datagram_daemon.settimeout(0.05)
    with pytest.raises(TimeoutError):
        datagram_daemon.recv(10)


def test_the_descriptor_swap_does_reach_the_daemon_unconfined(
    tmp_path: Path, daemon: socket.socket, descriptor_swap: str
) -> None:
    swapped_calls(tmp_path, descriptor_swap, "connect", None, attempts=5000)
    assert accepted(daemon) > 0


FULL_BACKLOG = """
import ctypes, json, os, socket, threading, time
os.chdir(%r)
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind("own.sock")
server.listen(0)
filled = []
while True:  # fill the backlog; it is never accepted
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
    try:
        s.connect("own.sock")
    except BlockingIOError:
        s.close()
        break
    filled.append(s)
stop = False
def meddle(sock):
    # keeps the shared socket blocking and without a send timeout
    while not stop:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, bytes(16))
        os.set_blocking(sock.fileno(), True)
waits = []
for _ in range(2):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    t = threading.Thread(target=meddle, args=(s,))
    t.start()
    start = time.monotonic()
    try:
        s.connect("own.sock")
        result = "connected"
    except OSError as exc:
        result = exc.errno
    waits.append([result, round(time.monotonic() - start, 1)])
    stop = True
    t.join()
    stop = False
print(json.dumps({"waits": waits}))
"""


@pytest.mark.parametrize("isolated", MODES)
def test_a_connect_to_a_full_backlog_cannot_hang_the_tracer(tmp_path: Path, isolated: bool) -> None:
    """Found by an adversarial pass: the tracer bounded its own blocking connect with the
    socket's flags and timeout, which the target shares and reset from another thread; the
    tracer then waited forever. A timer of its own ends the wait after 1 s (EAGAIN)."""
    result = run(tmp_path, FULL_BACKLOG % str(tmp_path), isolated)
    # each wait ended (EAGAIN), where before the run itself timed out
    assert [outcome for outcome, _ in result["waits"]] == [11, 11]  # type: ignore[attr-defined]
