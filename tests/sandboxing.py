"""Helpers shared by the tests that run real children under the tracer.

Everything here is loopback only; a test of blocking uses a loopback listener its policy
treats as external, which must see nothing.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from pytest_incident.sandbox.policy import SandboxPolicy


def port_of(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def assert_no_connection(sock: socket.socket) -> None:
    with pytest.raises(TimeoutError):
        sock.accept()


def tracer_argv(tmp_path: Path, policy: SandboxPolicy, code: str) -> list[str]:
    """The tracer running `python -c code` under `policy`, logging to tmp_path/events.jsonl."""
    (tmp_path / "policy.json").write_text(policy.to_json())
    return [
        sys.executable, "-m", "pytest_incident.sandbox.tracer",
        "--policy", str(tmp_path / "policy.json"),
        "--events", str(tmp_path / "events.jsonl"),
        "--", sys.executable, "-c", textwrap.dedent(code),
    ]  # fmt: skip


def run_traced(
    tmp_path: Path,
    policy: SandboxPolicy,
    code: str,
    timeout: float = 30,
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
    """Run `python -c code` under the tracer; its output and the tracer's events."""
    argv = tracer_argv(tmp_path, policy, code)
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout, env=None if env is None else {**env}
    )
    events = tmp_path / "events.jsonl"
    lines = events.read_text().splitlines() if events.exists() else []
    return proc, [json.loads(line) for line in lines]


def net_events(events: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in events if e["event"] == "net"]


def namespaces_missing() -> str:
    """Why this machine cannot make the namespaces the isolation tests use ("" if it can)."""
    if sys.platform != "linux":
        return "the sandbox needs Linux"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare(1) and ip(8)"
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"network namespaces are not available here: {probe.stderr.strip()}"
    return ""


def run_isolated(
    tmp_path: Path,
    code: str,
    isolated: bool = True,
    policy: SandboxPolicy | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -c code` under the tracer as a replay starts it: in namespaces of its own (or
    the tracer alone), in tmp_path; events go to tmp_path/events.jsonl."""
    from pytest_incident.runtime.network import HostNetwork, NamespaceNetwork, Network
    from pytest_incident.runtime.process import tracer_command

    network: Network = NamespaceNetwork() if isolated else HostNetwork()
    try:
        argv, fds = tracer_command(
            [sys.executable, "-c", textwrap.dedent(code)],
            policy or SandboxPolicy(),
            network,
            tmp_path,
            tmp_path / "events.jsonl",
        )
        return subprocess.run(
            argv, pass_fds=fds, capture_output=True, text=True, timeout=120, cwd=tmp_path
        )
    finally:
        network.close()


def read_events(tmp_path: Path) -> list[dict[str, object]]:
    events = tmp_path / "events.jsonl"
    lines = events.read_text().splitlines() if events.exists() else []
    return [json.loads(line) for line in lines]
