# Who listens on a port: the target, or someone else.
#
# Strategy: a port chosen free can be taken by anyone before the target binds it; a probe that
# connects proves only that *something* listens. So readiness also asks the kernel: the
# listening sockets on that port in the target's network (its /proc/<pid>/net/tcp and tcp6
# tables, by inode) must all be held by the target's processes (the descriptors under
# /proc/<pid>/fd of the process tree the runtime started; the tracer is a subreaper, so
# daemons that double-forked are still in it). Anything else -- another process holding the
# port, or sharing it through SO_REUSEPORT -- is a foreign listener, and the replay must not
# send the recorded requests to it. Only the sockets a connection to 127.0.0.1 can reach
# count (the replay connects nowhere else): those bound to 127.0.0.1, ::ffff:127.0.0.1 or a
# wildcard (an IPv6 one may be dual-stack; the tables do not say), not one on ::1 or 127.0.0.2.
from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

TCP_LISTEN = "0A"  # the state column of a listening socket in /proc/net/tcp
PROC = Path("/proc")
LOOPBACK = ipaddress.IPv4Address("127.0.0.1")  # where the replay connects to the target


@dataclass(frozen=True)
class PortListeners:
    """The listening sockets on one port, split by who holds them."""

    port: int
    ours: frozenset[int]  # socket inodes held by the target's processes
    foreign: frozenset[int]  # the others
    unreadable: tuple[int, ...] = ()  # processes of the target whose descriptors we cannot see

    @property
    def owned(self) -> bool:
        """The target listens on the port and nobody else does."""
        return bool(self.ours) and not self.foreign

    def describe(self) -> str:
        if self.owned:
            return f"the target listens on port {self.port}"
        if self.foreign and self.unreadable:  # it may be one of those: say so, not "another"
            pids = ", ".join(map(str, self.unreadable))
            return (
                f"a process not known to be the target's listens on 127.0.0.1:{self.port} (the "
                f"descriptors of the target's process {pids} cannot be read in /proc/<pid>/fd: "
                "a process that made itself non-dumpable, or runs as another user); the "
                "recorded requests are not sent to it"
            )
        if self.foreign:
            return (
                f"another process (not the target's) listens on 127.0.0.1:{self.port}; "
                "the recorded requests are not sent to it"
            )
        return f"nothing listens on port {self.port}"


def table_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address as /proc/net/tcp{,6} prints it: 32-bit words in hex, each in host order."""
    words = [int(text[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(text), 8)]
    return ipaddress.ip_address(b"".join(words))


def reaches_loopback(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a socket listening on `address` can get a connection made to 127.0.0.1."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address == LOOPBACK or address.is_unspecified


def listening_inodes(table: str, port: int) -> set[int]:
    """The inodes of the sockets listening on `port` in a /proc/net/tcp or tcp6 table that a
    connection to 127.0.0.1:`port` can reach (not those on ::1 or 127.0.0.2, say)."""
    found: set[int] = set()
    for row in table.splitlines()[1:]:
        fields = row.split()
        if len(fields) < 10 or fields[3] != TCP_LISTEN:
            continue
        local_address, _, local_port = fields[1].rpartition(":")
        try:
            if int(local_port, 16) == port and reaches_loopback(table_address(local_address)):
                found.add(int(fields[9]))
        except ValueError:
            continue
    return found


def process_tree(root: int, proc: Path = PROC) -> set[int]:
    """`root` and every process descending from it, or in its session (a process the runtime
    starts leads a session of its own)."""
    children: dict[int, list[int]] = {}
    in_session: set[int] = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid pgrp session ...; comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) < 4:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        if int(fields[3]) == root:
            in_session.add(pid)
    tree = {root}
    todo = [root, *in_session]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo.extend(child for child in children.get(pid, ()) if child not in tree)
    return tree


def socket_inodes(pids: Iterable[int], proc: Path = PROC) -> tuple[set[int], list[int]]:
    """The socket inodes the processes `pids` hold, and the processes whose descriptors
    could not be read (gone processes are neither)."""
    found: set[int] = set()
    unreadable: list[int] = []
    for pid in pids:
        fd_dir = proc / str(pid) / "fd"
        try:
            names = os.listdir(fd_dir)
        except FileNotFoundError:
            continue
        except OSError:
            unreadable.append(pid)
            continue
        for name in names:
            try:
                link = os.readlink(fd_dir / name)
            except OSError:
                continue
            if link.startswith("socket:["):
                found.add(int(link[8:-1]))
    return found, unreadable


def port_listeners(port: int, root: int, proc_net: Path, proc: Path = PROC) -> PortListeners:
    """Who listens on `port` in the network whose tables are under `proc_net`, against the
    process tree the runtime started at `root`."""
    listening: set[int] = set()
    for table in ("tcp", "tcp6"):
        try:
            listening |= listening_inodes((proc_net / table).read_text(), port)
        except OSError:
            continue  # no IPv6 here
    held, unreadable = socket_inodes(process_tree(root, proc), proc)
    return PortListeners(
        port, frozenset(listening & held), frozenset(listening - held), tuple(unreadable)
    )
