"""Who listens on the target's port: a readiness probe that connects proves only that
something does; the kernel's socket tables say whose it is."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_incident.runtime.listeners import listening_inodes, port_listeners, process_tree

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="reads Linux's /proc")

HOST_NET = Path("/proc/self/net")

LISTEN = """
import socket, sys, time
s = socket.socket()
if sys.argv[2] == "reuseport":
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
time.sleep(60)
"""

# a double fork: the listener is a grandchild whose parent has exited, in a new session
DAEMON = """
import os, socket, sys, time
if os.fork():
    os._exit(0)
os.setsid()
s = socket.socket()
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen()
print("listening", flush=True)
time.sleep(60)
"""

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
ROW = "{n}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000   0  0 {inode} 1 0"
TABLE = "\n".join(
    [
        HEADER + "  timeout inode",
        ROW.format(n=0, local="0100007F:1F90", remote="00000000:0000", state="0A", inode=111),
        ROW.format(n=1, local="0100007F:1F90", remote="0100007F:D431", state="01", inode=222),
        ROW.format(n=2, local="00000000:1F91", remote="00000000:0000", state="0A", inode=333),
    ]
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], check=False)
        proc.kill()
        proc.wait()


def start(procs: list[subprocess.Popen[str]], script: str, *args: str) -> subprocess.Popen[str]:
    """`script` in a session of its own (as the runtime starts a target), once it listens."""
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    procs.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "listening"
    return proc


def test_only_listening_rows_of_the_port_count() -> None:
    assert listening_inodes(TABLE, 0x1F90) == {111}  # not the established connection (222)
    assert listening_inodes(TABLE, 0x1F91) == {333}
    assert listening_inodes(TABLE, 80) == set()
    assert listening_inodes("header only\n  0: garbage\n", 80) == set()


def test_the_targets_own_listener_is_owned(started: list[subprocess.Popen[str]]) -> None:
    port = free_port()
    target = start(started, LISTEN, str(port), "plain")
    found = port_listeners(port, target.pid, HOST_NET)
    assert found.owned
    assert found.ours and not found.foreign


def test_an_orphan_that_left_the_tree_and_the_session_is_foreign(
    started: list[subprocess.Popen[str]],
) -> None:
    port = free_port()
    launcher = subprocess.Popen(
        [sys.executable, "-c", DAEMON, str(port)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    started.append(launcher)
    assert launcher.stdout is not None
    assert launcher.stdout.readline().strip() == "listening"
    # the launcher exited and the daemon, in a session of its own, went to init: nothing ties
    # it to what was started (in a sandboxed run the tracer is a subreaper and keeps it)
    found = port_listeners(port, launcher.pid, HOST_NET)
    assert not found.owned
    assert found.foreign


def test_someone_else_on_the_port_is_foreign(started: list[subprocess.Popen[str]]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        target = start(started, "print('listening', flush=True); import time; time.sleep(60)")
        found = port_listeners(port, target.pid, HOST_NET)
        assert not found.owned
        assert found.foreign and not found.ours
        assert "another process (not the target's) listens on 127.0.0.1:" in found.describe()


def test_a_listener_shared_through_reuseport_is_not_the_targets_alone(
    started: list[subprocess.Popen[str]],
) -> None:
    """With SO_REUSEPORT the kernel spreads connections over both listeners: the target
    listening too is not enough."""
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        target = start(started, LISTEN, str(port), "reuseport")
        found = port_listeners(port, target.pid, HOST_NET)
        assert found.ours and found.foreign
        assert not found.owned


def test_the_process_tree_takes_children_and_the_session(
    started: list[subprocess.Popen[str]],
) -> None:
    script = (
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    started.append(parent)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    tree = process_tree(parent.pid)
    assert {parent.pid, child} <= tree
    assert 1 not in tree
    assert os.getpid() not in tree


# -- which listeners count: those a connection to 127.0.0.1 reaches (the replay's only address)

# a listener on argv[1]:argv[2] (IPv6 ones dual-stack), sharing the port through SO_REUSEPORT
LISTEN_AT = """
import socket, sys, time
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
if family == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen()
print("listening", flush=True)
time.sleep(60)
"""


def squat(address: str, port: int = 0, v6only: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
    sock.bind((address, port))
    sock.listen()
    return sock


def connections_to_loopback(port: int, squatter: socket.socket, count: int = 20) -> int:
    """How many of `count` connections to 127.0.0.1:`port` the squatter gets."""
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    squatter.settimeout(1.0)
    got = 0
    try:
        while got < count:
            squatter.accept()[0].close()
            got += 1
    except TimeoutError:
        pass
    for client in clients:
        client.close()
    return got


@pytest.mark.parametrize(
    ("target_at", "squatter_at"),
    [
        ("0.0.0.0", "127.0.0.1"),
        ("::", "127.0.0.1"),  # the target dual-stack
        ("::", "::ffff:127.0.0.1"),
        ("0.0.0.0", "::ffff:127.0.0.1"),
    ],
)
def test_a_more_specific_listener_beside_a_wildcard_target_is_foreign(
    started: list[subprocess.Popen[str]], target_at: str, squatter_at: str
) -> None:
    """The kernel hands every connection to 127.0.0.1 to the more specific listener: the
    squatter gets them all while the target listens on its wildcard."""
    with squat(squatter_at) as squatter:
        port = squatter.getsockname()[1]
        target = start(started, LISTEN_AT, target_at, str(port))
        found = port_listeners(port, target.pid, HOST_NET)
        assert found.ours and found.foreign
        assert not found.owned
        assert connections_to_loopback(port, squatter) == 20  # the twin: it would get them


@pytest.mark.parametrize("squatter_at", ["::1", "127.0.0.2"])
def test_a_listener_no_connection_to_127_0_0_1_reaches_is_not_in_the_way(
    started: list[subprocess.Popen[str]], squatter_at: str
) -> None:
    """The replay connects to 127.0.0.1 only: someone else on ::1 or 127.0.0.2, same port, never
    gets a recorded request and does not keep the target from counting as started."""
    with squat(squatter_at, v6only=True) as squatter:
        port = squatter.getsockname()[1]
        target = start(started, LISTEN_AT, "127.0.0.1", str(port))
        found = port_listeners(port, target.pid, HOST_NET)
        assert found.owned, found
        assert connections_to_loopback(port, squatter) == 0  # the twin: it would get none


@pytest.mark.skipif(sys.byteorder != "little", reason="the rows below are little-endian")
def test_only_addresses_127_0_0_1_reaches_count() -> None:
    rows = [
        ("0100007F", True),  # 127.0.0.1
        ("00000000", True),  # 0.0.0.0
        ("0200007F", False),  # 127.0.0.2
        ("0000000000000000FFFF00000100007F", True),  # ::ffff:127.0.0.1
        ("00000000000000000000000000000000", True),  # ::, maybe dual-stack
        ("00000000000000000000000001000000", False),  # ::1
    ]
    header = HEADER + "  timeout inode"
    for n, (address, reached) in enumerate(rows):
        row = ROW.format(n=n, local=f"{address}:1F90", remote="0:0", state="0A", inode=500 + n)
        table = "\n".join([header, row])
        assert listening_inodes(table, 0x1F90) == ({500 + n} if reached else set()), address
    assert listening_inodes(HEADER + "\n 0: ZZ:1F90 0:0 0A x x x x x 7 1 0\n", 0x1F90) == set()


# -- a fake /proc: descriptors that cannot be read, names that look like stat's fields


def fake_process(proc: Path, pid: int, ppid: int, session: int, sockets: list[int]) -> None:
    entry = proc / str(pid)
    (entry / "fd").mkdir(parents=True)
    # comm may hold spaces and parentheses: the fields are those after the last ")"
    (entry / "stat").write_text(f"{pid} (a) b (c) S {ppid} {pid} {session} 0 -1 4194560\n")
    for n, inode in enumerate(sockets):
        (entry / "fd" / str(n + 3)).symlink_to(f"socket:[{inode}]")


def test_a_target_process_whose_descriptors_cannot_be_read_is_named(tmp_path: Path) -> None:
    """A process of the target that made itself non-dumpable (or runs as another user) hides
    its descriptors from an unprivileged pytest: its listener cannot be told from a
    squatter's. It is not counted as the target's -- and not called another process's."""
    proc, net = tmp_path / "proc", tmp_path / "net"
    net.mkdir()
    fake_process(proc, 100, 1, 100, [])  # the tracer
    fake_process(proc, 101, 100, 100, [])  # the target: its fd directory unreadable below
    fake_process(proc, 200, 1, 200, [777])  # someone else
    (proc / "101" / "fd").rmdir()
    (proc / "101" / "fd").write_text("")  # listing it fails as EACCES would
    table = "\n".join(
        [
            HEADER + "  timeout inode",
            ROW.format(n=0, local="0100007F:1F90", remote="0:0", state="0A", inode=555),
        ]
    )
    (net / "tcp").write_text(table)
    assert process_tree(100, proc) == {100, 101}
    found = port_listeners(0x1F90, 100, net, proc)
    assert not found.owned
    assert found.unreadable == (101,)
    assert "not known to be the target's" in found.describe()
    assert "another process" not in found.describe()
    # the twin: readable, the same socket is the target's
    (proc / "101" / "fd").unlink()
    (proc / "101" / "fd").mkdir()
    (proc / "101" / "fd" / "3").symlink_to("socket:[555]")
    assert port_listeners(0x1F90, 100, net, proc).owned
