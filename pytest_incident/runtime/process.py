# The target process: the current code, started inside the sandbox (or bare, for benchmarks)
# and watched from pytest. Adapter only; the tracer process does the tracing.
#
# Invariants: the process is started in its own session so that `stop()` can always kill
# whatever is left; its output goes to a bounded ring (runtime/output.py) whose tail is shown
# when the target crashes; it is ready only once it listens on its port itself (the port
# chosen free may have been taken meanwhile: runtime/listeners.py); the tracer's events file
# is read incrementally, and everything the tracer logged before the target answered is
# already in it.
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pytest_incident.model.errors import TargetError
from pytest_incident.runtime.listeners import PortListeners, port_listeners
from pytest_incident.runtime.network import HostNetwork, Network
from pytest_incident.runtime.output import OutputRing
from pytest_incident.sandbox.events import SandboxEvent, parse_event
from pytest_incident.sandbox.policy import SandboxPolicy


def free_port(network: Network | None = None) -> int:
    """A TCP port free on 127.0.0.1 of `network` (the host's by default)."""
    network = network or HostNetwork()
    with network.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Launch:
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    port: int
    ready_timeout_s: float = 30.0
    # written by the harness: "ready" once the app is loaded where it is served, or
    # "error: <why>" before it exits (None: the port alone says the target is ready)
    status_file: Path | None = None


def describe_exit(code: int | None) -> str:
    if code is None:
        return "is running"
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    if code > 128 and code - 128 in signal.valid_signals():
        return f"was killed by {signal.Signals(code - 128).name}"
    return f"exited with status {code}"


def tracer_command(
    argv: Sequence[str], policy: SandboxPolicy, network: Network, workdir: Path, events: Path
) -> tuple[list[str], list[int]]:
    """The tracer's command line running `argv` under `policy` in `network`, and the
    descriptors to pass it (the namespace's)."""
    join, pass_fds = network.tracer_args()
    policy_path = workdir / "policy.json"
    policy_path.write_text(policy.to_json())
    command = [
        sys.executable, "-m", "pytest_incident.sandbox.tracer",
        "--policy", str(policy_path), "--events", str(events), *join, "--", *argv,
    ]  # fmt: skip
    return command, pass_fds


def run_sandboxed(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    policy: SandboxPolicy,
    network: Network,
    workdir: Path,
) -> tuple[int, list[SandboxEvent]]:
    """Run `argv` to its end in the sandbox, its stdio the caller's: its exit status (the
    tracer's: 128 + signal when a signal killed it, 125 when the sandbox cannot run here)
    and everything the sandbox reported."""
    events = workdir / "command-events.jsonl"
    events.write_bytes(b"")
    command, pass_fds = tracer_command(argv, policy, network, workdir, events)
    status = subprocess.run(command, cwd=cwd, env=dict(env), pass_fds=pass_fds).returncode
    lines = events.read_bytes().splitlines()
    return status, [parse_event(line) for line in lines if line.strip()]


class TargetProcess:
    def __init__(
        self,
        launch: Launch,
        policy: SandboxPolicy | None,
        workdir: Path,
        network: Network | None = None,
    ) -> None:
        self.launch = launch
        self.policy = policy
        self.network = network or HostNetwork()  # where the target listens
        self.workdir = workdir
        self.output = OutputRing()
        self.events_path = workdir / "events.jsonl"
        self._events_offset = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def sandboxed(self) -> bool:
        return self.policy is not None

    def start(self) -> None:
        self.starts += 1
        argv: Sequence[str] = self.launch.argv
        pass_fds: list[int] = []
        if self.policy is not None:
            argv, pass_fds = tracer_command(
                self.launch.argv, self.policy, self.network, self.workdir, self.events_path
            )
        self.events_path.touch()
        if self.launch.status_file is not None:
            self.launch.status_file.unlink(missing_ok=True)  # a previous start's
        output = self.output.pipe(f"--- start #{self.starts}: {' '.join(self.launch.argv)}\n")
        try:
            self._proc = subprocess.Popen(
                argv,
                cwd=self.launch.cwd,
                env=dict(self.launch.env),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                pass_fds=pass_fds,
            )
        finally:
            os.close(output)  # the target's now: the pipe ends when the target's copies do
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.launch.ready_timeout_s
        listeners: PortListeners | None = None
        while time.monotonic() < deadline:
            exited = self.exit_code() is not None
            status = self._status()  # read after: all it wrote before it exited
            if status.startswith("error: "):  # the harness says why it cannot serve
                self.stop()
                raise TargetError(status.removeprefix("error: "))
            if exited:
                raise TargetError(
                    f"target {describe_exit(self.exit_code())} before it "
                    f"listened on 127.0.0.1:{self.launch.port}"
                )
            if self.launch.status_file is not None and status != "ready":
                time.sleep(0.02)
                continue
            if self._answers():
                listeners = self.listeners()
                if listeners.owned:
                    return
            time.sleep(0.02)
        self.stop()
        why = f" ({listeners.describe()})" if listeners and listeners.foreign else ""
        raise TargetError(
            f"target did not listen on 127.0.0.1:{self.launch.port} within "
            f"{self.launch.ready_timeout_s:g}s{why}"
        )

    def _answers(self) -> bool:
        """Something accepts connections on the target's port."""
        try:
            with self.network.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.settimeout(0.5)
                probe.connect(("127.0.0.1", self.launch.port))
                return True
        except OSError:
            return False

    def listeners(self) -> PortListeners:
        """Who listens on the target's port: the target's processes, or others."""
        assert self._proc is not None
        return port_listeners(self.launch.port, self._proc.pid, self.network.proc_net)

    def _status(self) -> str:
        """The harness's status line ("" before it wrote one, or without a status file)."""
        if self.launch.status_file is None:
            return ""
        try:
            return self.launch.status_file.read_text(errors="replace").strip()
        except FileNotFoundError:
            return ""

    def exit_code(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def wait_exit(self, timeout: float) -> int | None:
        if self._proc is None:
            return None
        try:
            return self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def output_tail(self, lines: int = 15) -> str:
        return self.output.tail(lines)

    def read_events(self) -> list[SandboxEvent]:
        with open(self.events_path, "rb") as stream:
            stream.seek(self._events_offset)
            data = stream.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._events_offset += len(complete)
        return [parse_event(line) for line in complete.splitlines() if line.strip()]

    def stop(self, grace_s: float = 5.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace_s)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever is left in its session
        proc.wait()

    def close(self) -> None:
        """Stop the target for good (its output's tail is gone with it)."""
        self.stop()
        self.output.close()
