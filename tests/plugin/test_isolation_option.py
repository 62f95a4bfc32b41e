"""--incident-sandbox: the target in a network namespace of its own by default, the fallback
said at the end of the run, and strict refusing where no namespace can be made."""

from __future__ import annotations

import os

import pytest

from ..conftest import write_incident
from ..sandboxing import namespaces_missing

NAMESPACE_APP = """
import os

def app(environ, start_response):
    own = os.stat("/proc/self/ns/net").st_ino != int(os.environ["PYTEST_NETNS"])
    status = "200 OK" if own else "503 Service Unavailable"
    start_response(status, [("content-type", "text/plain")])
    return [status.encode()]
"""


needs_namespaces = pytest.mark.skipif(bool(namespaces_missing()), reason=namespaces_missing())


def namespace_incident(demo: pytest.Pytester) -> None:
    demo.makepyfile(nsapp=NAMESPACE_APP)
    netns = os.stat("/proc/self/ns/net").st_ino
    write_incident(
        demo,
        "ns",
        f"""
select: {{routes: ["GET /health"]}}
target:
  wsgi: nsapp:app
  env: {{PYTEST_NETNS: "{netns}"}}
expect: {{status: "<500"}}
""",
    )


@needs_namespaces
def test_the_target_runs_in_a_network_namespace_of_its_own(demo: pytest.Pytester) -> None:
    namespace_incident(demo)
    result = demo.runpytest("--incident=ns")
    result.assert_outcomes(passed=2)
    assert "shared the host's network" not in result.stdout.str()


def test_the_tracer_alone_is_said_at_the_end_of_the_run(demo: pytest.Pytester) -> None:
    """The twin: with --incident-sandbox=ptrace the target shares pytest's namespace (the
    app sees it and answers 503), and the run says so."""
    namespace_incident(demo)
    result = demo.runpytest("--incident=ns", "--incident-sandbox=ptrace")
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        ["sandbox: targets shared the host's network, kept off it by the tracer alone "
         "(--incident-sandbox=ptrace); --incident-sandbox=strict refuses to replay that way"]
    )  # fmt: skip


def test_strict_refuses_where_no_namespace_can_be_made(
    demo: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_incident.model.errors import IsolationUnavailable
    from pytest_incident.runtime import network

    def unavailable() -> network.NamespaceNetwork:
        raise IsolationUnavailable("no network namespace here: unshare: Operation not permitted")

    monkeypatch.setattr(network, "NamespaceNetwork", unavailable)
    namespace_incident(demo)
    strict = demo.runpytest("--incident=ns", "--incident-sandbox=strict")
    strict.assert_outcomes(failed=2)
    strict.stdout.fnmatch_lines(
        ["*ns.yaml:*: no network namespace here: unshare: Operation not permitted; "
         "--incident-sandbox=strict refuses to replay without one"]
    )  # fmt: skip
    auto = demo.runpytest("--incident=ns")
    auto.assert_outcomes(failed=2)  # ran, sharing the host's network (the app says 503)
    auto.stdout.fnmatch_lines(["sandbox: targets shared the host's network*Operation not*"])


def test_a_bad_sandbox_mode_is_a_usage_error(demo: pytest.Pytester) -> None:
    result = demo.runpytest("--incident-sandbox=none")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--incident-sandbox: invalid choice: 'none'*"])


SECRET_APP = """
import os

def app(environ, start_response):
    leaked = "CI_DEPLOY_TOKEN" in os.environ
    passed = os.environ.get("PASSED_ON") == "yes"
    status = "503 Service Unavailable" if leaked or not passed else "200 OK"
    start_response(status, [("content-type", "text/plain")])
    return [status.encode()]
"""


def test_the_target_gets_its_own_environment_not_pytests(
    demo: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI_DEPLOY_TOKEN", "do-not-leak")
    monkeypatch.setenv("PASSED_ON", "yes")
    demo.makepyfile(secretapp=SECRET_APP)
    write_incident(
        demo,
        "env",
        'select: {routes: ["GET /health"]}\n'
        "target: {wsgi: 'secretapp:app', pass_env: [PASSED_ON]}\n"
        'expect: {status: "<500"}\n',
    )
    demo.runpytest("--incident=env").assert_outcomes(passed=2)
    # the twin: named in pass_env, the variable does reach the target (which then says 503)
    write_incident(
        demo,
        "env",
        'select: {routes: ["GET /health"]}\n'
        "target: {wsgi: 'secretapp:app', pass_env: [PASSED_ON, CI_DEPLOY_TOKEN]}\n"
        'expect: {status: "<500"}\n',
    )
    demo.runpytest("--incident=env").assert_outcomes(failed=2)
