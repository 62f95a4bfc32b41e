"""Run inside a network namespace the test made (`unshare -n`): put documentation-range
addresses on its `lo` as "the outside", listen there (TCP and UDP, v4 and v6) and on a
loopback port standing for a host service, run a hostile program under the sandbox, and print
as JSON what reached any of those listeners. Never any other address.

    python escape_harness.py MODE PROGRAM_FILE ALLOW_HOST_SERVICE

MODE: netns (the target in a network namespace of its own), ptrace (the tracer alone) or bare
(no sandbox at all: proves the program really tries to get out).
The program gets the outside addresses in the environment: OUT4, OUT6, OUT_PORT, HOST_PORT,
and UNIX_DAEMON, UNIX_DGRAM: a host daemon's stream and datagram socket files (hits "unix").
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from pytest_incident.runtime.network import HostNetwork, NamespaceNetwork, Network
from pytest_incident.runtime.process import tracer_command
from pytest_incident.sandbox.policy import SandboxPolicy

OUT4 = "198.51.100.7"
OUT6 = "2001:db8::7"


def setup_outside() -> None:
    for argv in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "addr", "add", f"{OUT4}/32", "dev", "lo"],
        ["ip", "-6", "addr", "add", f"{OUT6}/128", "dev", "lo", "nodad"],
    ):
        subprocess.run(argv, check=True)


def main() -> int:
    mode, program, allow_host = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"
    setup_outside()
    hits: list[str] = []
    lock = threading.Lock()
    listeners: list[socket.socket] = []

    def tcp(family: int, host: str, port: int) -> int:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
        listeners.append(sock)

        def accept() -> None:
            while True:
                try:
                    conn, _ = sock.accept()
                except OSError:
                    return
                with lock:
                    hits.append(f"tcp {host}")
                conn.close()

        threading.Thread(target=accept, daemon=True).start()
        return int(sock.getsockname()[1])

    def udp(family: int, host: str, port: int) -> None:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind((host, port))
        listeners.append(sock)

        def read() -> None:
            while True:
                try:
                    sock.recvfrom(65536)
                except OSError:
                    return
                with lock:
                    hits.append(f"udp {host}")

        threading.Thread(target=read, daemon=True).start()

    out_port = tcp(socket.AF_INET, OUT4, 0)
    tcp(socket.AF_INET6, OUT6, out_port)
    udp(socket.AF_INET, OUT4, out_port)
    udp(socket.AF_INET6, OUT6, out_port)
    host_port = tcp(socket.AF_INET, "127.0.0.1", 0)  # a host service on loopback
    daemons = tempfile.TemporaryDirectory()  # a host daemon's sockets (docker.sock, syslog)
    unix_daemon, unix_dgram = f"{daemons.name}/daemon.sock", f"{daemons.name}/dgram.sock"
    stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stream.bind(unix_daemon)
    stream.listen(512)
    listeners.append(stream)
    dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    dgram.bind(unix_dgram)
    listeners.append(dgram)

    def unix_accept() -> None:
        while True:
            try:
                conn, _ = stream.accept()
            except OSError:
                return
            with lock:
                hits.append("unix stream")
            conn.close()

    def unix_read() -> None:
        while True:
            try:
                dgram.recv(65536)
            except OSError:
                return
            with lock:
                hits.append("unix dgram")

    threading.Thread(target=unix_accept, daemon=True).start()
    threading.Thread(target=unix_read, daemon=True).start()

    network: Network = NamespaceNetwork() if mode == "netns" else HostNetwork()
    allow = frozenset({("127.0.0.1", host_port)}) if allow_host else frozenset()
    with tempfile.TemporaryDirectory() as work:
        argv, fds = tracer_command(
            [sys.executable, str(program)],
            SandboxPolicy(allow=allow),
            network,
            Path(work),
            Path(work) / "events.jsonl",
        )
        if mode == "bare":
            argv, fds = [sys.executable, str(program)], []
        env = {**os.environ, "OUT4": OUT4, "OUT6": OUT6}
        env.update(OUT_PORT=str(out_port), HOST_PORT=str(host_port))
        env.update(UNIX_DAEMON=unix_daemon, UNIX_DGRAM=unix_dgram)
        proc = subprocess.run(
            argv, env=env, pass_fds=fds, capture_output=True, text=True, timeout=120
        )
    time.sleep(0.2)  # let the listeners' threads count the last arrivals
    network.close()
    daemons.cleanup()
    with lock:
        found = sorted(set(hits))
        count = len(hits)
    print(
        json.dumps(
            {"hits": found, "count": count, "rc": proc.returncode, "stdout": proc.stdout,
             "stderr": proc.stderr[-2000:]}
        )
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
