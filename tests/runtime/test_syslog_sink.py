"""The syslog sink's socket lives where a unix socket's path fits, whatever TMPDIR is."""

from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path

import pytest

from pytest_incident.model.errors import ReplayConfigError
from pytest_incident.runtime.stubs import sink
from pytest_incident.runtime.stubs.sink import SUN_PATH_MAX, SyslogSink


def test_a_long_temp_directory_still_gets_a_working_sink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    long = tmp_path / ("d" * 100)
    long.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long))
    syslog = SyslogSink()
    try:
        assert len(os.fsencode(syslog.path)) <= SUN_PATH_MAX
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
            client.sendto(b"<13>hello", syslog.path)
        received = 0
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            received = syslog.take_count()
            time.sleep(0.01)
        assert received == 1
    finally:
        syslog.close()


def test_a_short_temp_directory_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    short = tempfile.mkdtemp(prefix="s", dir="/tmp")
    monkeypatch.setattr(tempfile, "tempdir", short)
    try:
        made = sink.short_private_dir("incident-syslog-", 4)
        assert Path(made).parent == Path(short)
        os.rmdir(made)
    finally:
        os.rmdir(short)


def test_no_place_short_enough_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sink, "SUN_PATH_MAX", 10)
    with pytest.raises(ReplayConfigError, match="set TMPDIR to a shorter directory"):
        sink.short_private_dir("incident-syslog-", 4)
