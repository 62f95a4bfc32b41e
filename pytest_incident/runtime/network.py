# Where the replay's sockets live: the host's network, or the target's own namespace.
#
# Strategy: every socket the replay makes for the target's side -- the stubs' listeners, the
# taps' listeners, the connection that sends the recorded request -- comes from a `Network`.
# `HostNetwork` makes plain sockets (the ptrace-only sandbox, and bare benchmark runs).
# `NamespaceNetwork` starts the keeper (pytest_incident/sandbox/netns.py) and has it make each
# socket inside the target's network namespace, passed back as a descriptor; the tracer is
# handed the namespace's descriptors so the target joins it before it execs. What crosses
# between the namespace and the host is only what the replay itself relays (a database tap's
# upstream connection, a plugin's port stub through a bridge).
#
# Invariants: `socket()` is thread-safe (one request in flight on the control socket);
# close() ends the keeper and closes the namespace descriptors; a keeper that cannot make the
# namespace raises IsolationUnavailable with the kernel's reason.
from __future__ import annotations

import contextlib
import enum
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Protocol

from pytest_incident.model.errors import IsolationUnavailable
from pytest_incident.sandbox import netns

KEEPER = Path(netns.__file__)
KEEPER_START_S = 10.0


class Network(Protocol):
    """Makes the sockets of the target's side of a replay."""

    @property
    def isolated(self) -> bool:
        """True when those sockets are in a network namespace of the target's own."""
        ...

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """A new socket on the target's side."""
        ...

    def tracer_args(self) -> tuple[list[str], list[int]]:
        """The tracer's arguments to have the target join this network, and the
        descriptors they name (to pass to the tracer)."""
        ...

    @property
    def proc_net(self) -> Path:
        """The /proc directory of this network's socket tables (tcp, tcp6, ...)."""
        ...

    def close(self) -> None: ...


class HostNetwork:
    """The host's own network: the target shares it (isolation by the tracer alone)."""

    isolated = False

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
        return socket.socket(family, kind)

    def tracer_args(self) -> tuple[list[str], list[int]]:
        return [], []

    @property
    def proc_net(self) -> Path:
        return Path("/proc/self/net")

    def close(self) -> None:
        pass


class NamespaceNetwork:
    """A network namespace of the target's own, whose only link is its loopback."""

    isolated = True

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._lock = threading.Lock()
        self._control = ours
        self._fds: list[int] = []
        try:
            self._keeper = subprocess.Popen(
                [sys.executable, "-I", str(KEEPER), str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            ours.close()
            raise IsolationUnavailable(f"cannot start the namespace keeper: {exc}") from None
        finally:
            theirs.close()
        try:
            self._wait_ready()
            pid = self._keeper.pid
            self.netns_fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
            self._fds.append(self.netns_fd)
            self.userns_fd: int | None = None
            if os.stat(f"/proc/{pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino:
                self.userns_fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
                self._fds.append(self.userns_fd)
        except BaseException:
            self.close()
            raise

    def _wait_ready(self) -> None:
        self._control.settimeout(KEEPER_START_S)
        try:
            first = self._control.recv(512)
        except OSError as exc:
            raise IsolationUnavailable(f"the namespace keeper did not answer: {exc}") from None
        self._control.settimeout(None)
        if first == b"ready":
            return
        reason = first.decode(errors="replace").removeprefix("error ").strip()
        if not reason:
            stderr = self._keeper.stderr.read() if self._keeper.stderr else b""
            lines = stderr.decode(errors="replace").strip().splitlines()
            reason = lines[-1] if lines else "it exited"
        raise IsolationUnavailable(f"no network namespace here: {reason}")

    def socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
        with self._lock:
            self._control.send(f"{family} {kind}".encode())
            message, fds, _, _ = socket.recv_fds(self._control, 512, 1)
        if message != b"ok" or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            reason = message.decode(errors="replace").removeprefix("error ") or "keeper gone"
            raise OSError(f"no socket from the target's network namespace: {reason}")
        return socket.socket(fileno=fds[0])

    def tracer_args(self) -> tuple[list[str], list[int]]:
        args = ["--netns-fd", str(self.netns_fd)]
        if self.userns_fd is not None:
            args += ["--userns-fd", str(self.userns_fd)]
        return args, list(self._fds)

    @property
    def proc_net(self) -> Path:
        return Path(f"/proc/{self._keeper.pid}/net")  # the keeper lives in the namespace

    def close(self) -> None:
        self._control.close()
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
        keeper = self._keeper
        try:
            keeper.wait(2.0)
        except subprocess.TimeoutExpired:
            keeper.kill()
            keeper.wait()
        if keeper.stderr is not None:
            keeper.stderr.close()


class Isolation(enum.Enum):
    """`--incident-sandbox`: how the target is kept from the network."""

    AUTO = "auto"  # a network namespace where the kernel allows one, else the tracer alone
    STRICT = "strict"  # a network namespace, or the replay does not run
    PTRACE = "ptrace"  # the tracer alone, on the host's network


def open_network(isolation: Isolation) -> tuple[Network, str]:
    """The target's network, and why it is not a namespace of its own ("" when it is).
    STRICT raises IsolationUnavailable where AUTO falls back."""
    if isolation is Isolation.PTRACE:
        return HostNetwork(), "--incident-sandbox=ptrace"
    try:
        return NamespaceNetwork(), ""
    except IsolationUnavailable as exc:
        if isolation is Isolation.STRICT:
            raise IsolationUnavailable(
                f"{exc}; --incident-sandbox=strict refuses to replay without one"
            ) from None
        return HostNetwork(), str(exc)
