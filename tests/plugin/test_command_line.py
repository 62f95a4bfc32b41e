"""The command line and the ini: every bad value is a usage error saying what is allowed
(exit 4), never an INTERNALERROR, a traceback or a hang; and one bad incident file, beside
the selected one, does not stop the run."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from ..conftest import DEMO_YAML, ROOT

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")

SPEEDS = "allowed: a number from 0.01 to 1000, or inf (no latency)"
REQUESTS = "allowed: 4 to 32 hex digits (0-9, a-f) of a request's trace id*"
DIRS = "allowed: directories (relative to the rootdir) that hold incident YAML files"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """A project with the demo incident file (no recording: nothing here gets that far)."""
    (pytester.path / "incidents").mkdir()
    shutil.copy(ROOT / DEMO_YAML, pytester.path / DEMO_YAML)
    return pytester


def check_usage_error(result: pytest.RunResult, message: str) -> None:
    output = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR, output
    assert "INTERNALERROR" not in output
    assert "Traceback" not in output
    result.stderr.fnmatch_lines([message])


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("--incident-speed=0", f"*--incident-speed 0 is out of range; {SPEEDS}"),
        ("--incident-speed=1e-300", f"*--incident-speed 1e-300 is out of range; {SPEEDS}"),
        ("--incident-speed=1e300", f"*--incident-speed 1e300 is out of range; {SPEEDS}"),
        ("--incident-speed=0.001", f"*--incident-speed 0.001 is out of range; {SPEEDS}"),
        ("--incident-speed=-1", f"*--incident-speed '-1' is not a number; {SPEEDS}"),
        ("--incident-speed=nan", f"*--incident-speed 'nan' is not a number; {SPEEDS}"),
        ("--incident-speed=fast", f"*--incident-speed 'fast' is not a number; {SPEEDS}"),
        ("--incident-speed=", f"*--incident-speed '' is not a number; {SPEEDS}"),
        ("--incident-speed=\u0661", f"*--incident-speed '\u0661' is not a number; {SPEEDS}"),
        ("--incident-speed=1_000", f"*--incident-speed '1_000' is not a number; {SPEEDS}"),
        ("--incident-speed=0x10", f"*--incident-speed '0x10' is not a number; {SPEEDS}"),
        ("--incident-request=", f"*--incident-request '': {REQUESTS}"),
        ("--incident-request=xyz", f"*--incident-request 'xyz': {REQUESTS}"),
        ("--incident-request=abc", f"*--incident-request 'abc': {REQUESTS}"),
        ("--incident-request=abcg", f"*--incident-request 'abcg': {REQUESTS}"),
        ("--incident-request=" + "a" * 33, f"*--incident-request 'aaaa*': {REQUESTS}"),
        (
            "--incident-request=\u0661\u0662\u0663\u0664",
            f"*--incident-request '\u0661*': {REQUESTS}",
        ),
        (
            "--incident-request=\uff21\uff22\uff23\uff24",
            f"*--incident-request '\uff21*': {REQUESTS}",
        ),
        ("--incident=", "*--incident '': expected an incident name (a file's stem or its*"),
        ("--incident=incidents/2024-05-signup", "*--incident 'incidents/2024-05-signup': exp*"),
        ("--incident=2099-nothing", "*--incident 2099-nothing: no such incident in incidents*"),
        ("--incident=ünïcødé", "*--incident ünïcødé: no such incident in incidents; known: 2024*"),
        ("--incident-sandbox=nope", "*argument --incident-sandbox: invalid choice: 'nope'*"),
        ("--incident-sandbox=", "*argument --incident-sandbox: invalid choice: ''*"),
        ("--incident-repeat=2", "*unrecognized arguments: --incident-repeat=2*"),
        ("--incident-inject=x", "*unrecognized arguments: --incident-inject=x*"),
    ],
)
def test_bad_option_values_are_usage_errors(
    project: pytest.Pytester, option: str, message: str
) -> None:
    check_usage_error(project.runpytest(option), message)


@pytest.mark.parametrize(
    ("dirs", "message"),
    [
        ("missing", f"*ini incident_dirs: missing does not exist; {DIRS}"),
        ("incidents missing", f"*ini incident_dirs: missing does not exist; {DIRS}"),
        ("tox.ini", f"*ini incident_dirs: tox.ini is a file, not a directory; {DIRS}"),
        ("{fifo}", f"*ini incident_dirs: pipe is a FIFO (named pipe), not a directory; {DIRS}"),
        ("/dev/null", f"*ini incident_dirs: /dev/null is a character device, not a dire*; {DIRS}"),
        ("''", f"*ini incident_dirs: an empty entry; {DIRS}"),
        ("a" * 300, f"*ini incident_dirs: aaa* cannot be looked at (File name too long); {DIRS}"),
    ],
    ids=["missing", "one of two missing", "a file", "a FIFO", "a device", "empty", "too long"],
)
def test_bad_incident_dirs_are_usage_errors(
    project: pytest.Pytester, dirs: str, message: str
) -> None:
    if dirs == "{fifo}":
        os.mkfifo(project.path / "pipe")
        dirs = "pipe"
    project.makeini(f"[pytest]\nincident_dirs = {dirs}\n")
    check_usage_error(project.runpytest(), message)


def test_incident_dirs_in_proc_are_walked_without_an_internal_error(
    project: pytest.Pytester,
) -> None:
    """Entries that vanish or cannot be listed while the walk goes are passed over."""
    project.makeini("[pytest]\nincident_dirs = /proc/self\n")
    result = project.runpytest("--incident=2024-05-signup")
    check_usage_error(
        result, "*--incident 2024-05-signup: no such incident in /proc/self; known: *"
    )


def test_the_default_incident_dir_may_be_absent(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_a="def test_a(): pass\n")
    pytester.runpytest().assert_outcomes(passed=1)


@pytest.mark.parametrize(
    "option",
    [
        "--incident-speed=inf",
        "--incident-speed=INF",
        "--incident-speed=0.01",
        "--incident-speed=1000",
        "--incident-speed= 2.5 ",
        "--incident-speed=1e2",
        "--incident-request=ABCD",
        "--incident-request=" + "0" * 32,
        "--incident-sandbox=strict",
    ],
)
def test_the_twin_good_option_values_pass(pytester: pytest.Pytester, option: str) -> None:
    pytester.makepyfile(test_a="def test_a(): pass\n")
    pytester.runpytest(option).assert_outcomes(passed=1)


# --- one bad file among the incident files -----------------------------------------------------

HOSTILE = {
    "not UTF-8": (b"incident: x\ntitle: \xff\xfe\n", 2, "the file is not UTF-8 text"),
    "deep": (b"title: " + b"[" * 3000 + b"]" * 3000 + b"\n", 1, "nested deeper than 64 levels"),
    "bad tag": (b"incident: !!int abc\n", 1, "invalid value 'abc': not an integer"),
    "FIFO": (b"", 0, ""),
}


def write_hostile(project: pytest.Pytester, kind: str) -> Path:
    """`incidents/0-hostile.yaml`: sorted before every other incident file."""
    path = project.path / "incidents" / "0-hostile.yaml"
    if kind == "FIFO":
        os.mkfifo(path)
    else:
        path.write_bytes(HOSTILE[kind][0])
    return path


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_a_hostile_sibling_does_not_stop_another_incident(demo: pytest.Pytester, kind: str) -> None:
    write_hostile(demo, kind)
    # a subprocess, so that a hang would end in a timeout, not hang the suite
    result = demo.runpytest_subprocess("--incident=2024-05-signup", "--collect-only", timeout=120)
    output = result.stdout.str() + result.stderr.str()
    assert "12 tests collected" in output
    assert "0-hostile" not in output
    assert "INTERNALERROR" not in output and "Traceback" not in output


def test_a_hostile_sibling_does_not_fail_a_replay(demo: pytest.Pytester) -> None:
    write_hostile(demo, "FIFO")
    (demo.path / "incidents" / "1-hostile.yaml").write_bytes(HOSTILE["not UTF-8"][0])
    listing = demo.runpytest("--incident=2024-05-signup", "--collect-only", "-q")
    first = next(line for line in listing.stdout.lines if "::" in line)
    request_id = first.split("[")[1].rstrip("]")
    result = demo.runpytest_subprocess(
        "--incident=2024-05-signup", f"--incident-request={request_id}", timeout=300
    )
    result.assert_outcomes(passed=1, deselected=11)


@pytest.mark.parametrize("kind", [kind for kind in HOSTILE if kind != "FIFO"])
def test_the_twin_a_hostile_file_selected_is_an_error_at_its_line(
    demo: pytest.Pytester, kind: str
) -> None:
    write_hostile(demo, kind)
    _, line, message = HOSTILE[kind]
    for selected in (["--incident=0-hostile"], ["incidents/0-hostile.yaml"]):
        result = demo.runpytest_subprocess(*selected, timeout=120)
        result.stdout.fnmatch_lines([f"incidents/0-hostile.yaml:{line}: {message}*"])
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        result.assert_outcomes(errors=1)
        assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
        assert "Traceback" not in result.stdout.str()


def test_the_twin_a_fifo_selected_is_refused_by_name(demo: pytest.Pytester) -> None:
    write_hostile(demo, "FIFO")
    result = demo.runpytest_subprocess("--incident=0-hostile", timeout=120)
    check_usage_error(
        result,
        "*--incident 0-hostile: incidents/0-hostile.yaml is a FIFO (named pipe), not a "
        "regular file; an incident file is a YAML file",
    )


def test_an_unknown_name_lists_the_files_whose_names_could_not_be_read(
    demo: pytest.Pytester,
) -> None:
    write_hostile(demo, "not UTF-8")
    result = demo.runpytest("--incident=2099-nothing")
    check_usage_error(
        result,
        "*--incident 2099-nothing: no such incident in incidents; known: 2024-05-signup, *; "
        "names not read from: incidents/0-hostile.yaml (line 2: the file is not UTF-8 text)",
    )


def test_an_incident_is_found_by_its_declared_name_past_a_hostile_file(
    demo: pytest.Pytester,
) -> None:
    write_hostile(demo, "deep")
    signup = demo.path / DEMO_YAML
    signup.rename(demo.path / "incidents" / "signup-renamed.yaml")
    (demo.path / "incidents" / "__snapshots__" / "2024-05-signup.ambr").rename(
        demo.path / "incidents" / "__snapshots__" / "signup-renamed.ambr"
    )
    result = demo.runpytest_subprocess("--incident=2024-05-signup", "--collect-only", timeout=120)
    result.stdout.fnmatch_lines(["*12 tests collected*"])


# --- --incident with test paths ------------------------------------------------------------------


def test_an_incident_file_given_as_a_path_runs_beside_the_named_one(
    demo: pytest.Pytester,
) -> None:
    result = demo.runpytest(
        "--incident=2024-06-receipts", "incidents/2024-05-signup.yaml", "--collect-only", "-q"
    )
    items = [line for line in result.stdout.lines if "::" in line]
    assert sum(line.startswith("incidents/2024-05-signup.yaml::") for line in items) == 12
    assert sum(line.startswith("incidents/2024-06-receipts.yaml::") for line in items) > 0
    assert len(items) == len({*items})  # each once


def test_test_paths_run_beside_the_named_incident(demo: pytest.Pytester) -> None:
    demo.makepyfile(test_plain="def test_plain(): pass\n")
    result = demo.runpytest("--incident=2024-05-signup", "test_plain.py", "--collect-only", "-q")
    items = [line for line in result.stdout.lines if "::" in line]
    assert "test_plain.py::test_plain" in items
    assert sum(line.startswith("incidents/2024-05-signup.yaml::") for line in items) == 12


def test_a_directory_given_holds_only_the_named_incidents(demo: pytest.Pytester) -> None:
    result = demo.runpytest("--incident=2024-05-signup", "incidents", "--collect-only", "-q")
    items = [line for line in result.stdout.lines if "::" in line]
    assert len(items) == 12
    assert all(line.startswith("incidents/2024-05-signup.yaml::") for line in items)


def test_a_recording_that_cannot_be_read_is_an_error_at_the_source_line(
    demo: pytest.Pytester,
) -> None:
    """An OSError while reading the recording (here EIO: /proc/self/mem at offset 0)."""
    (demo.path / "incidents" / "mem.events.jsonl").symlink_to("/proc/self/mem")
    yaml = demo.path / DEMO_YAML
    text = yaml.read_text()
    yaml.write_text(
        "\n".join(
            "source: mem.events.jsonl" if row.startswith("source:") else row
            for row in text.splitlines()
        )
        + "\n"
    )
    result = demo.runpytest("--incident=2024-05-signup")
    result.stdout.fnmatch_lines(
        ["incidents/mem.events.jsonl:1: cannot read the recording: Input/output error"]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.assert_outcomes(errors=1)
    assert "Traceback" not in result.stdout.str()


def test_a_request_id_that_matches_nothing_is_a_usage_error(demo: pytest.Pytester) -> None:
    listing = demo.runpytest("--incident=2024-05-signup", "--collect-only", "-q")
    first = next(line for line in listing.stdout.lines if "::" in line)
    request_id = first.split("[")[1].rstrip("]")
    result = demo.runpytest(
        "--incident=2024-05-signup",
        f"--incident-request={request_id}",
        "--incident-request=abcdef",
        "--collect-only",
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: --incident-request 'abcdef': no collected request's id starts with it; "
            f"the collected requests: *{request_id}*"
        ]
    )
    # the twin: the id that exists alone selects its request
    result = demo.runpytest(
        "--incident=2024-05-signup", f"--incident-request={request_id}", "--collect-only"
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*1/12 tests collected (11 deselected)*"])
