# Unix-socket destinations: which socket a target's address names, and the call made by the
# tracer itself against exactly that socket.
#
# Strategy: a socket file is a name in a filesystem the target can change (a symlink swapped
# in, a file renamed over) and an address is memory the target can change, so no check of
# either can be trusted once the target runs again. Instead the tracer resolves the name
# once, as the calling thread would (its root, its cwd), into an O_PATH descriptor of its
# own: that pins the inode. It decides on that inode, and makes the connect or send itself,
# on a copy of the target's socket (pidfd_getfd shares the socket) addressed as
# /proc/self/fd/N, which can only reach the pinned inode. The target's call is then skipped
# with the tracer's result. An abstract name is connected to from the tracer's private copy
# of the address bytes.
#
# What a socket file is: one listed in `sandbox.allow` (its inode, taken when the tracer
# starts), the syslog sink (by path, so /dev/log works where the host has none), the
# target's own (sock_diag maps the inode or abstract name to the bound socket, which a
# traced process holds open), or another's: a host daemon's, refused.
#
# Invariants: the tracer connects or sends only to an inode it decided on; a blocking call
# waits at most BLOCKING_WAIT_S (a timer interrupts it: nothing of the shared socket is
# relied on or changed).
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import signal
import socket
import stat
import struct
from collections.abc import Callable, Collection, Iterator

from pytest_incident.sandbox.policy import SYSLOG_SOCKETS, UnixPeer
from pytest_incident.sandbox.unixdiag import (
    NETLINK_SOCK_DIAG,
    BoundSocket,
    DumpError,
    dump_request,
    parse_dump,
)

SUN_PATH_MAX = 108
SOCKADDR_UN_MAX = 2 + SUN_PATH_MAX
BLOCKING_WAIT_S = 1.0
DUMP_READ = 1 << 16


def _interrupt(signum: int, frame: object) -> None:
    """SIGALRM's handler while the tracer makes a call: the call returns EINTR."""


def _waited(err: int) -> int:
    """A call the timer interrupted failed as a timed-out socket call does: EAGAIN."""
    return errno.EAGAIN if err == errno.EINTR else err


def sockaddr_un(path: bytes) -> bytes:
    return struct.pack("=H", socket.AF_UNIX) + path + b"\0"


class Resolved:
    """A decided destination: what kind of peer it is, and the O_PATH descriptor (the
    tracer's) the call goes through, or the exact abstract address; closed by `close`."""

    def __init__(self, peer: UnixPeer, through: int | None = None, error: int = 0) -> None:
        self.peer = peer
        self.through = through  # an O_PATH descriptor of the tracer, owned here
        self.error = error  # for MISSING: what the kernel would have said

    def address(self, abstract: bytes) -> bytes:
        if self.through is not None:
            return sockaddr_un(f"/proc/self/fd/{self.through}".encode())
        return abstract

    def close(self) -> None:
        if self.through is not None:
            os.close(self.through)
            self.through = None


class UnixPeers:
    """Resolves, identifies and reaches unix-socket destinations for the tracer."""

    def __init__(
        self,
        allow: Collection[str],
        sink: str | None,
        traced: Callable[[], Collection[int]],
        outside: socket.socket | None = None,
    ) -> None:
        """`outside`: a sock_diag socket of the host's network namespace, when the tracer
        has joined the target's, so that a host daemon's socket is told from no socket."""
        self.libc = ctypes.CDLL(None, use_errno=True)
        self._traced = traced
        self._allowed: set[tuple[int, int]] = set()
        for path in allow:  # taken now: a file the target makes there later is not it
            with contextlib.suppress(OSError):
                info = os.stat(path)
                if stat.S_ISSOCK(info.st_mode):
                    self._allowed.add((info.st_dev, info.st_ino))
        self._syslog: set[tuple[int, int]] = set()
        for path in SYSLOG_SOCKETS:
            with contextlib.suppress(OSError):
                info = os.stat(path)
                self._syslog.add((info.st_dev, info.st_ino))
        self._sink = sink
        self._diag: socket.socket | None = None
        self._outside = outside

    # -- which socket --------------------------------------------------------------------

    def resolve(self, pid: int, raw: bytes) -> Resolved:
        """What the named address `raw` (a sockaddr_un with a name) reaches for thread pid."""
        name = raw[2:]
        if name.startswith(b"\0"):
            bound = self._bound(lambda s: s.name == name)
            if bound is not None and self._held(bound.inode):
                return Resolved(UnixPeer.OWN)
            if bound is None and not self._outside_has(lambda s: s.name == name):
                return Resolved(UnixPeer.MISSING, error=errno.ECONNREFUSED)
            return Resolved(UnixPeer.OTHER)
        path = name.split(b"\0", 1)[0]
        if self._sink is not None and path.decode("utf-8", "replace") in SYSLOG_SOCKETS:
            return self._to_sink()
        base = f"/proc/{pid}/root" if path.startswith(b"/") else f"/proc/{pid}/cwd/"
        try:
            through = os.open(base.encode() + path, os.O_PATH | os.O_CLOEXEC)
        except OSError as exc:
            return Resolved(UnixPeer.MISSING, error=exc.errno or errno.ENOENT)
        resolved = Resolved(UnixPeer.OTHER, through)
        try:
            info = os.fstat(through)
            identity = (info.st_dev, info.st_ino)
            if not stat.S_ISSOCK(info.st_mode):
                resolved.peer, resolved.error = UnixPeer.MISSING, errno.ECONNREFUSED
            elif identity in self._allowed:
                resolved.peer = UnixPeer.ALLOWED
            elif identity in self._syslog and self._sink is not None:
                resolved.close()
                return self._to_sink()
            else:
                bound = self._bound(lambda s: s.file == identity)
                if bound is not None and self._held(bound.inode):
                    resolved.peer = UnixPeer.OWN
                elif bound is None and not self._outside_has(lambda s: s.file == identity):
                    # nothing is bound to the file: the kernel would refuse
                    resolved.peer, resolved.error = UnixPeer.MISSING, errno.ECONNREFUSED
        except BaseException:
            resolved.close()
            raise
        return resolved

    def _to_sink(self) -> Resolved:
        assert self._sink is not None
        try:
            return Resolved(UnixPeer.SYSLOG, os.open(self._sink, os.O_PATH | os.O_CLOEXEC))
        except OSError as exc:
            return Resolved(UnixPeer.MISSING, error=exc.errno or errno.ENOENT)

    def _bound(self, match: Callable[[BoundSocket], bool]) -> BoundSocket | None:
        """The named socket of the tracer's network namespace (the target's, when it has one
        of its own) that `match`es."""
        for bound in self._dump():
            if match(bound):
                return bound
        return None

    def _outside_has(self, match: Callable[[BoundSocket], bool]) -> bool:
        """Whether a named socket of the host's namespace `match`es (a daemon's)."""
        if self._outside is None:
            return False
        return any(match(bound) for bound in self._dump(self._outside))

    def _dump(self, diag: socket.socket | None = None) -> list[BoundSocket]:
        """Every named unix socket of a namespace (the tracer's, unless `diag` is another's),
        read to the end of the dump."""
        if diag is None:
            if self._diag is None:
                self._diag = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
            diag = self._diag
        diag.send(dump_request())
        everything: list[BoundSocket] = []
        done = False
        while not done:
            try:
                found, done = parse_dump(diag.recv(DUMP_READ))
            except DumpError as exc:
                raise OSError(errno.EIO, str(exc)) from None
            everything.extend(found)
        return everything

    def _held(self, inode: int) -> bool:
        """Whether a traced process holds the socket `inode` open (its own descriptor
        table, or a thread's, when that thread has one apart)."""
        needle = f"socket:[{inode}]"
        for pid in list(self._traced()):
            try:
                numbers = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for number in numbers:
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{number}") == needle:
                        return True
        return False

    # -- the call, made here ---------------------------------------------------------------

    def connect(self, sock: int, address: bytes) -> int:
        """connect() the tracer's copy `sock` of the target's socket: 0 or -errno."""
        buf = ctypes.create_string_buffer(address, len(address))
        with self._bounded_wait():
            result = self.libc.connect(sock, buf, len(address))
        return 0 if result == 0 else -_waited(ctypes.get_errno())

    def sendto(self, sock: int, data: bytes, flags: int, address: bytes) -> int:
        """sendto() on the tracer's copy of the target's socket: bytes sent or -errno."""
        buf = ctypes.create_string_buffer(data, len(data))
        addr = ctypes.create_string_buffer(address, len(address))
        with self._bounded_wait():
            sent = self.libc.sendto(
                sock, buf, ctypes.c_size_t(len(data)), flags, addr, len(address)
            )
        return int(sent) if sent >= 0 else -_waited(ctypes.get_errno())

    @contextlib.contextmanager
    def _bounded_wait(self) -> Iterator[None]:
        """A blocking call waits here at most BLOCKING_WAIT_S (a full listener backlog, a
        full receive queue), whatever the target does to the socket meanwhile (its flags and
        timeouts are shared with it): a real-time timer interrupts the call with EINTR."""
        previous = signal.signal(signal.SIGALRM, _interrupt)
        signal.siginterrupt(signal.SIGALRM, True)
        signal.setitimer(signal.ITIMER_REAL, BLOCKING_WAIT_S)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)

    def close(self) -> None:
        for diag in (self._diag, self._outside):
            if diag is not None:
                diag.close()
        self._diag = self._outside = None
