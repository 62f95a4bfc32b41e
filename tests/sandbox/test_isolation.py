"""The kernel boundary: a target in a network namespace of its own reaches nothing outside,
whatever the tracer lets through or loses a race on.

Each test runs inside a network namespace it creates (`unshare -n`, only `lo`), with
documentation-range addresses (198.51.100.7, 2001:db8::7) on that `lo` as "the outside" and a
loopback listener standing for a host service; escape_harness.py counts what reaches them.
Every hostile program is also run bare, to show it really does reach them when unconfined.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from ..sandboxing import namespaces_missing, run_isolated

HARNESS = Path(__file__).with_name("escape_harness.py")


pytestmark = pytest.mark.skipif(bool(namespaces_missing()), reason=namespaces_missing())


def run_escape(tmp_path: Path, program: str, mode: str, allow_host: bool = False) -> Any:
    path = tmp_path / "hostile.py"
    path.write_text(textwrap.dedent(program))
    argv = ["unshare", "-rn", sys.executable, str(HARNESS), mode, str(path), str(int(allow_host))]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])


HOST_SERVICE = """
import os, socket
try:
    socket.create_connection(("127.0.0.1", int(os.environ["HOST_PORT"])), timeout=2).close()
    print("connected")
except OSError as exc:
    print("failed", exc.errno)
"""


def test_a_connect_the_tracer_lets_through_reaches_nothing_outside(tmp_path: Path) -> None:
    """The policy allows 127.0.0.1:HOST_PORT, so the tracer passes the call unchanged; in its
    own namespace the target's 127.0.0.1 is its own loopback, where nothing listens."""
    result = run_escape(tmp_path, HOST_SERVICE, "netns", allow_host=True)
    assert result["hits"] == [], result
    assert result["stdout"].startswith("failed"), result


def test_the_same_connect_reaches_the_host_service_without_a_namespace(tmp_path: Path) -> None:
    """The twin: with the tracer alone, the allowed call does arrive (the harness sees it)."""
    result = run_escape(tmp_path, HOST_SERVICE, "ptrace", allow_host=True)
    assert result["hits"] == ["tcp 127.0.0.1"], result


# A thread with a descriptor table of its own: the number the tracer looks up in the
# leader's table is a unix socket there, an internet socket in the thread's. TCP and UDP,
# v4 and v6, connect/sendto/sendmsg; 200 rounds.
FD_TABLE_SPLIT = """
import ctypes, os, socket, threading
libc = ctypes.CDLL(None, use_errno=True)
CLONE_FILES = 0x400
out4, out6, port = os.environ["OUT4"], os.environ["OUT6"], int(os.environ["OUT_PORT"])

def attempt(family, kind, how, number):
    def thread():
        libc.unshare(CLONE_FILES)
        inet = socket.socket(family, kind)
        os.dup2(inet.fileno(), number)
        sock = socket.socket(fileno=number)
        sock.settimeout(0.5)
        dest = (out4 if family == socket.AF_INET else out6, port)
        try:
            if how == "connect":
                sock.connect(dest)
            elif how == "sendto":
                sock.sendto(b"x", dest)
            else:
                sock.sendmsg([b"x"], [], 0, dest)
        except OSError:
            pass
    t = threading.Thread(target=thread)
    t.start()
    t.join()

for round in range(25):
    for family in (socket.AF_INET, socket.AF_INET6):
        for kind, hows in ((socket.SOCK_STREAM, ("connect",)),
                           (socket.SOCK_DGRAM, ("connect", "sendto", "sendmsg"))):
            for how in hows:
                a, b = socket.socketpair()
                attempt(family, kind, how, a.fileno())
                a.close(); b.close()
print("done")
"""

# Another thread swaps an internet socket in and out under the number being connected.
DUP2_RACE = """
import ctypes, os, socket, struct, threading
libc = ctypes.CDLL(None, use_errno=True)
out4, port = os.environ["OUT4"], int(os.environ["OUT_PORT"])
addr = (struct.pack("<H", socket.AF_INET) + struct.pack(">H", port)
        + socket.inet_aton(out4) + bytes(8))
unix_a, unix_b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
stop = threading.Event()
def swap(number, inet):
    while not stop.is_set():
        os.dup2(inet, number)
        os.dup2(unix_a.fileno(), number)
target = os.dup(unix_a.fileno())
for round in range(300):
    inet = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stop.clear()
    t = threading.Thread(target=swap, args=(target, inet.fileno()), daemon=True)
    t.start()
    for _ in range(5):
        libc.sendto(target, b"x", 1, 0, addr, len(addr))
    stop.set()
    t.join()
    inet.close()
print("done")
"""

# A sendmsg header with no address, which a sibling process (no GIL between them) fills in and
# clears again while the call is checked: the header lives in shared memory.
MSGHDR_RACE = """
import ctypes, mmap, os, signal, socket, struct
libc = ctypes.CDLL(None, use_errno=True)
out4, port = os.environ["OUT4"], int(os.environ["OUT_PORT"])
shared = mmap.mmap(-1, 4096, mmap.MAP_SHARED)
base = ctypes.addressof(ctypes.c_char.from_buffer(shared))
NAME, IOV, ADDR, DATA = 0, 64, 128, 192
shared[ADDR:ADDR + 16] = (struct.pack("<H", socket.AF_INET) + struct.pack(">H", port)
                          + socket.inet_aton(out4) + bytes(8))
shared[DATA:DATA + 1] = b"x"
shared[IOV:IOV + 16] = struct.pack("QQ", base + DATA, 1)
# msghdr: name, namelen, iov, iovlen, control, controllen, flags
empty = struct.pack("QIxxxxQQQQixxxx", 0, 0, base + IOV, 1, 0, 0, 0)
named = struct.pack("QIxxxxQQQQixxxx", base + ADDR, 16, base + IOV, 1, 0, 0, 0)
shared[NAME:NAME + 56] = empty
child = os.fork()
if child == 0:
    while True:
        shared[NAME:NAME + 12] = named[:12]
        shared[NAME:NAME + 12] = empty[:12]
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
import time
deadline, attempts = time.monotonic() + 1.5, 0
while attempts < 3000 or time.monotonic() < deadline:  # a fixed time: loaded machines too
    libc.sendmsg(sock.fileno(), ctypes.c_void_p(base + NAME), 0)
    attempts += 1
os.kill(child, signal.SIGKILL)
os.waitpid(child, 0)
print("done")
"""

HOSTILE = {"fd-table-split": FD_TABLE_SPLIT, "dup2-race": DUP2_RACE, "msghdr-race": MSGHDR_RACE}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_programs_reach_nothing_outside_the_namespace(tmp_path: Path, name: str) -> None:
    result = run_escape(tmp_path, HOSTILE[name], "netns")
    assert result["count"] == 0, result
    assert "done" in result["stdout"], result  # it ran to the end, every attempt made


@pytest.mark.parametrize("name", ["fd-table-split", "msghdr-race"])
def test_the_tracer_alone_contains_split_tables_and_racing_headers(
    tmp_path: Path, name: str
) -> None:
    """Without the namespace too: descriptors are looked up in the calling thread's own
    table, and every message header the kernel reads is the tracer's checked copy. (A
    descriptor swapped between the lookup and the call is what only the namespace holds.)"""
    result = run_escape(tmp_path, HOSTILE[name], "ptrace")
    assert result["count"] == 0, result
    assert "done" in result["stdout"], result


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_programs_do_get_out_when_unconfined(tmp_path: Path, name: str) -> None:
    """The twin: run bare, each program reaches the outside, so a zero above means contained."""
    result = run_escape(tmp_path, HOSTILE[name], "bare")
    assert result["count"] > 0, result


# Random syscalls: socket/connect/sendto/sendmsg/sendmmsg/bind/dup2/close/setsockopt/unshare
# with random descriptors, families, types, flags, lengths and addresses drawn from the
# outside, the host service, the host daemon's unix sockets, the unspecified and v4-mapped
# forms and random bytes, while (RACE) another thread flips the address buffers between a
# harmless loopback address and an outside one. Seeded: a failure names its seed.
RANDOM_SYSCALLS = """
import ctypes, os, random, socket, struct, threading, time
FUZZ_RACE = 1
SEED, RACE = int(os.environ.get("FUZZ_SEED", "1")), FUZZ_RACE
rng = random.Random(SEED)
libc = ctypes.CDLL(None, use_errno=True)
out4, out6 = os.environ["OUT4"], os.environ["OUT6"]
port, host_port = int(os.environ["OUT_PORT"]), int(os.environ["HOST_PORT"])
NR = {"socket": 41, "connect": 42, "sendto": 44, "sendmsg": 46, "bind": 49, "setsockopt": 54,
      "sendmmsg": 307, "dup2": 33, "close": 3, "unshare": 272, "shutdown": 48}

def v4(ip, p, family=socket.AF_INET):
    return struct.pack("<H", family) + struct.pack(">H", p) + socket.inet_aton(ip) + bytes(8)

def v6(ip, p):
    return (struct.pack("<H", socket.AF_INET6) + struct.pack(">HI", p, 0)
            + socket.inet_pton(socket.AF_INET6, ip) + bytes(4))

def unix(path):
    return struct.pack("<H", socket.AF_UNIX) + path.encode() + b"\\0"

addresses = [
    v4(out4, port), v6(out6, port), v6("::ffff:" + out4, port), v4("127.0.0.1", host_port),
    v4("0.0.0.0", host_port), v6("::", port), v6("::1", host_port),
    v4(out4, port, socket.AF_UNSPEC),
    unix(os.environ["UNIX_DAEMON"]), unix(os.environ["UNIX_DGRAM"]),
    unix("../" * 8 + os.environ["UNIX_DAEMON"].lstrip("/")),
    struct.pack("<H", 16) + bytes(10),  # netlink
]
harmless = v4("127.0.0.1", 9)
SLOTS = 4
slot = [ctypes.create_string_buffer(128) for _ in range(SLOTS)]
def fill(i):
    a = rng.choice(addresses) if rng.random() < 0.9 else os.urandom(rng.randrange(0, 128))
    ctypes.memmove(slot[i], a, len(a))
    return ctypes.addressof(slot[i]), (len(a) if rng.random() < 0.8 else rng.randrange(0, 130))

stop = False
def flipper():
    outside = [a for a in addresses if a[:2] != struct.pack("<H", socket.AF_UNIX)]
    while not stop:
        for buf in slot:
            a = outside[int(time.monotonic_ns()) % len(outside)]
            ctypes.memmove(buf, a, len(a))
            ctypes.memmove(buf, harmless, len(harmless))
if RACE:
    threading.Thread(target=flipper, daemon=True).start()

data = ctypes.create_string_buffer(b"x" * 64)
iov = ctypes.create_string_buffer(struct.pack("QQ", ctypes.addressof(data), 8) * 4)
pktinfo = struct.pack("QiiI", 28, 0, 8, 0) + socket.inet_aton(out4) + socket.inet_aton(out4)
control = ctypes.create_string_buffer(pktinfo.ljust(64, b"\\0"))
headers = ctypes.create_string_buffer(64 * 4)
fds = []
FAMILIES = [socket.AF_INET, socket.AF_INET6, socket.AF_UNIX, socket.AF_UNSPEC, 16, 17]
TYPES = [socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW, socket.SOCK_SEQPACKET]
def fd():
    return rng.choice(fds) if fds and rng.random() < 0.9 else rng.randrange(0, 64)

def call(name, *args):
    return libc.syscall(NR[name], *[ctypes.c_long(a) for a in args])

calls = 0
deadline = time.monotonic() + 2.0
while calls < 4000 or time.monotonic() < deadline:
    calls += 1
    op = rng.choice(["socket"] * 3 + ["connect"] * 4 + ["sendto"] * 4 + ["sendmsg"] * 3
                    + ["sendmmsg", "bind", "dup2", "close", "setsockopt", "shutdown"])
    if op == "socket":
        kind = rng.choice(TYPES) | socket.SOCK_NONBLOCK
        new = call("socket", rng.choice(FAMILIES), kind, rng.choice([0, 0, 6, 17, 132]))
        if new >= 0:
            fds.append(new)
    elif op == "connect":
        addr, length = fill(rng.randrange(SLOTS))
        call("connect", fd(), addr, length)
    elif op == "sendto":
        addr, length = fill(rng.randrange(SLOTS))
        call("sendto", fd(), ctypes.addressof(data), 8, rng.choice([0, 0x40, 0x4000]), addr,
             length)
    elif op in ("sendmsg", "sendmmsg"):
        count = rng.randrange(1, 5) if op == "sendmmsg" else 1
        for i in range(count):
            addr, length = fill(i) if rng.random() < 0.7 else (0, 0)
            ctl, ctl_len = ((ctypes.addressof(control), rng.choice([16, 28, 32]))
                            if rng.random() < 0.3 else (0, 0))
            hdr = struct.pack("QIxxxxQQQQixxxx", addr, length, ctypes.addressof(iov),
                              rng.randrange(0, 4), ctl, ctl_len, 0)
            ctypes.memmove(ctypes.addressof(headers) + 64 * i, hdr, len(hdr))
        if op == "sendmsg":
            call("sendmsg", fd(), ctypes.addressof(headers), 0x40)
        else:
            call("sendmmsg", fd(), ctypes.addressof(headers), count, 0x40)
    elif op == "bind":
        addr, length = fill(rng.randrange(SLOTS))
        call("bind", fd(), addr, length)
    elif op == "dup2" and fds:
        call("dup2", fd(), rng.choice(fds))
    elif op == "close" and fds:
        number = fds.pop(rng.randrange(len(fds)))
        call("close", number)
    elif op == "setsockopt":
        value = ctypes.create_string_buffer(os.urandom(16))
        call("setsockopt", fd(), rng.choice([1, 0, 41, 6, 17]), rng.randrange(0, 80),
             ctypes.addressof(value), rng.choice([4, 8, 16]))
    elif op == "shutdown":
        call("shutdown", fd(), rng.randrange(0, 3))
stop = True
print("done", calls)
"""


def random_syscalls(seed: int, race: bool) -> str:
    return RANDOM_SYSCALLS.replace(
        'int(os.environ.get("FUZZ_SEED", "1")), FUZZ_RACE', f"{seed}, {int(race)}"
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_syscalls_reach_nothing_outside_the_namespace(tmp_path: Path, seed: int) -> None:
    program = random_syscalls(seed, race=True)
    result = run_escape(tmp_path, program, "netns")
    assert result["count"] == 0, (seed, result)
    assert "done" in result["stdout"], (seed, result)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_syscalls_reach_nothing_with_the_tracer_alone(tmp_path: Path, seed: int) -> None:
    """Without the namespace, and without a racing thread (the swap races of the README's
    limits are the namespace's to hold): every random call is decided and copied."""
    program = random_syscalls(seed, race=False)
    result = run_escape(tmp_path, program, "ptrace")
    assert result["count"] == 0, (seed, result)
    assert "done" in result["stdout"], (seed, result)


def test_random_syscalls_do_get_out_when_unconfined(tmp_path: Path) -> None:
    """The twin: bare, the same random calls reach the outside, the host service and the
    host daemon's unix sockets."""
    result = run_escape(tmp_path, random_syscalls(1, race=True), "bare")
    assert {"tcp 127.0.0.1", "unix stream", "unix dgram"} <= set(result["hits"]), result
    assert any(hit.endswith(("198.51.100.7", "2001:db8::7")) for hit in result["hits"]), result


# --- what the target sees of the machine --------------------------------------------------


SEES = """
import json, os
print(json.dumps({
    "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")),
    "pytest": os.path.exists("/proc/%d" % int(os.environ["PYTEST_PID"])),
}))
"""


def test_the_target_sees_no_other_process_and_inherits_only_stdio(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_PID", str(os.getpid()))
    held = os.open(os.devnull, os.O_RDONLY)  # inheritable, as a careless parent might leave
    os.set_inheritable(held, True)
    try:
        proc = run_isolated(tmp_path, SEES)
    finally:
        os.close(held)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["pids"] == [1, 2]  # its init and itself
    assert seen["pytest"] is False
    assert seen["fds"][:3] == [0, 1, 2] and len(seen["fds"]) == 4  # + listdir's own


def test_with_the_tracer_alone_the_target_sees_pytest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The twin: without the namespaces, pytest's process is right there in /proc."""
    monkeypatch.setenv("PYTEST_PID", str(os.getpid()))
    proc = run_isolated(tmp_path, SEES, isolated=False)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["pytest"] is True
    assert len(seen["pids"]) > 2


def test_kernel_tunables_are_read_only(tmp_path: Path) -> None:
    proc = run_isolated(
        tmp_path,
        """
        import errno
        for path in ("/proc/sys/kernel/core_pattern", "/proc/sys/net/ipv4/ip_forward",
                     "/proc/sysrq-trigger"):
            try:
                with open(path, "w") as handle:
                    handle.write("")
                print("wrote", path)
            except OSError as exc:
                print(errno.errorcode[exc.errno])
        """,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" not in proc.stdout, proc.stdout
    assert set(proc.stdout.split()) <= {"EROFS", "EACCES", "EPERM", "ENOENT"}, proc.stdout


ORPHAN = """
import subprocess, sys
subprocess.Popen([sys.executable, "-c",
                  "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                  "time.sleep(60)", "{marker}"], start_new_session=True,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print("started")
"""


def test_nothing_the_target_started_outlives_it(tmp_path: Path) -> None:
    """A daemon in its own session that ignores SIGTERM: gone with the target, because the
    target's PID namespace ends with it. (Run bare, the same daemon stays.)"""
    marker = f"incident-orphan-{os.getpid()}-{tmp_path.name}"
    proc = run_isolated(tmp_path, ORPHAN.format(marker=marker))
    assert proc.stdout.strip() == "started", proc.stderr
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.stdout == "", left.stdout

    bare = subprocess.run(
        [sys.executable, "-c", ORPHAN.format(marker=marker)], capture_output=True, text=True
    )
    assert bare.stdout.strip() == "started"
    stayed = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    subprocess.run(["pkill", "-KILL", "-f", marker])
    assert stayed.stdout.strip(), "the daemon should outlive a bare parent"
