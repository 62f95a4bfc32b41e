"""`pytest-incident sandbox -- COMMAND`: a real command in the replay sandbox, and the list of
what it tried to reach. Destinations are loopback listeners of this test (one the sandbox must
keep the command from, one it allows) and hostnames that do not resolve here."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")

PROBE = """
import os, smtplib, socket, sys, urllib.request
port = int(os.environ["LISTENER_PORT"])
try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    print("reached the listener")
except OSError as exc:
    print("listener:", exc.errno)
try:
    urllib.request.urlopen("http://api.payments.example/v1/charges?amount=5", timeout=5)
except Exception as exc:
    print("http:", exc)
with smtplib.SMTP("smtp.mail.example", 587, timeout=5) as smtp:
    smtp.sendmail("shop@example.com", ["ada@example.com"], "Subject: welcome\\n\\nhi")
sys.exit(3)
"""


def sandbox(
    tmp_path: Path, *args: str, code: str = PROBE, **env: str
) -> subprocess.CompletedProcess[str]:
    program = tmp_path / "probe.py"
    program.write_text(textwrap.dedent(code))
    argv = [sys.executable, "-m", "pytest_incident.cli", "sandbox", *args, "--",
            sys.executable, str(program)]  # fmt: skip
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, env={**os.environ, **env}
    )


def test_lists_what_the_command_tried_to_reach_and_keeps_it_in(
    tmp_path: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    proc = sandbox(
        tmp_path,
        "--record-hosts", "api.payments.example",
        "--pass-env", "LISTENER_PORT",
        LISTENER_PORT=str(port),
    )  # fmt: skip
    assert proc.returncode == 3, proc.stderr  # the command's own status
    assert "listener: 111" in proc.stdout
    assert "http: HTTP Error 502" in proc.stdout
    report = proc.stderr.splitlines()
    assert report[0] == "pytest-incident sandbox: exit status 3; what it tried to reach:"
    assert f"  blocked   connect 127.0.0.1:{port}  not in sandbox.allow" in report
    assert any(
        line.startswith("  unmatched GET http://api.payments.example/v1/charges?amount=5")
        for line in report
    ), report
    assert any("email     mail from shop@example.com to ada@example.com" in line for line in report)
    with pytest.raises(TimeoutError):
        listener.accept()  # nothing arrived


def test_an_allowed_destination_is_reached(tmp_path: Path, listener: socket.socket) -> None:
    """The twin: with --allow the same connect arrives (through the tap)."""
    port = listener.getsockname()[1]
    proc = sandbox(
        tmp_path,
        "--allow", f"127.0.0.1:{port}",
        "--record-hosts", "api.payments.example",
        "--env", f"LISTENER_PORT={port}",
    )  # fmt: skip
    assert "reached the listener" in proc.stdout, proc.stderr
    assert f"  allowed   connect 127.0.0.1:{port}" in proc.stderr
    conn, _ = listener.accept()
    conn.close()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "a command to run is needed after --"),
        (["--allow", "db.example:5432"], "db.example"),
        (["--allow", "localhost:6379"], "add --jobs block to reach it live"),
        (["--record-hosts", "ftp://files.example"], "the scheme must be http or https"),
        (["--env", "NOVALUE"], "--env 'NOVALUE': expected NAME=VALUE"),
    ],
)
def test_usage_mistakes_exit_2_with_a_message(args: list[str], message: str) -> None:
    argv = [sys.executable, "-m", "pytest_incident.cli", "sandbox", *args]
    if args:
        argv += ["--", "true"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_documents_the_exit_status() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pytest_incident.cli", "sandbox", "--help"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0
    assert "125 when the sandbox cannot run here" in " ".join(proc.stdout.split())


UNIX_PROBE = """
import logging, logging.handlers, os, socket
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(os.environ["DAEMON"])
    print("reached the daemon")
except OSError as exc:
    print("daemon:", exc.errno)
logging.getLogger().addHandler(logging.handlers.SysLogHandler(address="/dev/log"))
logging.getLogger().warning("to syslog")
"""


@pytest.mark.parametrize("allowed", [False, True])
def test_a_daemons_unix_socket_only_with_allow(tmp_path: Path, allowed: bool) -> None:
    """A host daemon's socket file is refused and listed; `--allow unix:PATH` lets it by.
    Syslog goes to the sandbox's sink either way."""
    path = str(tmp_path / "daemon.sock")
    daemon = socket.socket(socket.AF_UNIX)
    daemon.bind(path)
    daemon.listen()
    daemon.settimeout(0.5)
    try:
        args = ["--allow", f"unix:{path}"] if allowed else []
        proc = sandbox(tmp_path, *args, "--env", f"DAEMON={path}", code=UNIX_PROBE)
        assert proc.returncode == 0, proc.stderr
        report = proc.stderr.splitlines()
        assert "  blocked   1 syslog message(s)  dropped by the sandbox's syslog sink" in report
        if allowed:
            assert proc.stdout.startswith("reached the daemon")
            assert f"  allowed   connect {path}  in sandbox.allow (live)" in report
            daemon.accept()[0].close()
        else:
            assert proc.stdout.startswith("daemon: 111")
            assert any(line.startswith(f"  blocked   connect {path}  another program's socket")
                       for line in report), report  # fmt: skip
            with pytest.raises(TimeoutError):
                daemon.accept()
    finally:
        daemon.close()


def test_a_relative_unix_allow_is_a_usage_error(tmp_path: Path) -> None:
    proc = sandbox(tmp_path, "--allow", "unix:run/app.sock", code="pass")
    assert proc.returncode == 2
    assert "unix:run/app.sock: expected the absolute path of a socket file" in proc.stderr
