# The tracer's command line. Run as its own process (the runtime and the tests do):
#
#     python -m pytest_incident.sandbox.tracer --policy P.json --events E.jsonl [--cwd D]
#         [--netns-fd N [--userns-fd U]] -- argv...
#
# With --netns-fd the target is isolated (sandbox/netns.py): the tracer makes a PID namespace
# (joining --userns-fd first), whose PID 1 is a small init forked from the tracer; it joins
# that network namespace, mounts a /proc of its own with kernel tunables read-only, and
# starts the target.
#
# Exit status: the target's (128 + signal when a signal killed it); 125 when the sandbox
# cannot run here or the parent is already gone.
#
# Invariants: PR_SET_PDEATHSIG ties the tracer's life to its parent's (and EXITKILL, set by
# the loop, the target's to the tracer's); the tracer is not dumpable, so no process of the
# same user reads or writes its memory; as a child subreaper it inherits the target's
# orphans. SIGTERM and SIGINT kill every tracee; so does leaving, whatever the reason.
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_incident.sandbox import netns, seccomp
from pytest_incident.sandbox.policy import SandboxPolicy
from pytest_incident.sandbox.tracer.loop import EventLog, Tracer
from pytest_incident.sandbox.unixdiag import NETLINK_SOCK_DIAG

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_CHILD_SUBREAPER = 36


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_incident.sandbox.tracer")
    parser.add_argument("--policy", required=True, type=Path, help="SandboxPolicy JSON file")
    parser.add_argument("--events", required=True, type=Path, help="events file (appended)")
    parser.add_argument("--cwd", default=None)
    parser.add_argument(
        "--netns-fd", type=int, default=None, help="join this network namespace (a descriptor)"
    )
    parser.add_argument(
        "--userns-fd", type=int, default=None, help="join this user namespace first"
    )
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    reason = seccomp.supported()
    if reason:
        print(f"pytest-incident sandbox: {reason}", file=sys.stderr)
        return 125
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no same-user access to this process's memory
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    if os.getppid() == 1:  # the parent is already gone
        return 125
    outside_diag = None
    if args.netns_fd is not None:
        # the target's own PID namespace (in the keeper's user namespace, if it made one):
        # the child forked next is its PID 1
        try:
            if args.userns_fd is not None:
                netns.enter_user(args.userns_fd)
            netns.unshare_pid()
            # the tracer too: it looks up the target's unix sockets in their namespace, and
            # the host's (a daemon's socket is refused and reported) through this one
            outside_diag = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
            netns.enter(args.netns_fd)
        except OSError as exc:
            print(f"pytest-incident sandbox: {exc}", file=sys.stderr)
            return 125
    policy = SandboxPolicy.from_json(args.policy.read_text())
    events = EventLog(args.events)
    tracer = Tracer(policy, events, outside_diag=outside_diag)

    def stop(signum: int, _frame: object) -> None:
        tracer.kill_all()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        tracer.spawn(args.command, dict(os.environ), args.cwd, args.netns_fd)
        return tracer.run()
    finally:
        tracer.kill_all()
        tracer.close()
        events.close()


if __name__ == "__main__":
    sys.exit(main())
