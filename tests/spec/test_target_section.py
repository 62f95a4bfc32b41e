"""`target:` asgi, server and python: what loads, and one precise `file:line:` error per
mistake."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from pytest_incident.model.spec import SERVERS, TARGET_PLACEHOLDER, Target

from .test_loader import END, START, error, load

HEAD = f"window: {START} .. {END}\nsource: x.jsonl\n"


def target(tmp_path: Path, body: str) -> Target:
    return load(tmp_path, HEAD + "target:\n" + body).target


def fake_venv(folder: Path) -> Path:
    """A folder laid out like a venv: pyvenv.cfg and bin/python (a symlink, as venv makes)."""
    (folder / "bin").mkdir(parents=True)
    (folder / "pyvenv.cfg").write_text(f"home = {Path(sys.executable).parent}\n")
    (folder / "bin" / "python").symlink_to(sys.executable)
    return folder


# --- asgi and server ---------------------------------------------------------------------------


def test_an_asgi_app_is_served_by_uvicorn_by_default(tmp_path: Path) -> None:
    loaded = target(tmp_path, "  asgi: quotes.app:app\n")
    assert (loaded.asgi, loaded.wsgi, loaded.command) == ("quotes.app:app", None, None)
    assert (loaded.interface, loaded.app, loaded.server) == ("asgi", "quotes.app:app", None)
    assert loaded.served_by == "uvicorn"


def test_a_wsgi_app_is_served_by_gunicorn_by_default(tmp_path: Path) -> None:
    loaded = target(tmp_path, "  wsgi: examples.signup.app:app\n")
    assert (loaded.interface, loaded.served_by) == ("wsgi", "gunicorn")
    command = target(tmp_path, "  command: run {port}\n")
    assert (command.interface, command.app, command.served_by) == (None, None, None)


@pytest.mark.parametrize(
    ("kind", "server"), [(kind, server) for kind in SERVERS for server in SERVERS[kind]]
)
def test_every_server_of_an_interface_can_be_chosen(tmp_path: Path, kind: str, server: str) -> None:
    loaded = target(tmp_path, f"  {kind}: a.b:app\n  server: {server}\n")
    assert (loaded.interface, loaded.server, loaded.served_by) == (kind, server, server)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            "  wsgi: a:app\n  server: uvicorn\n",
            "target.server: 'uvicorn' serves asgi apps, not wsgi; "
            "allowed with target.wsgi: gunicorn, waitress, wsgiref",
        ),
        (
            "  asgi: a:app\n  server: gunicorn\n",
            "target.server: 'gunicorn' serves wsgi apps, not asgi; "
            "allowed with target.asgi: uvicorn, hypercorn",
        ),
        (
            "  wsgi: a:app\n  server: apache\n",
            "target.server: 'apache' is not a server; "
            "allowed with target.wsgi: gunicorn, waitress, wsgiref",
        ),
        (
            "  command: run {port}\n  server: gunicorn\n",
            "target.server: only with target.wsgi or target.asgi (a command starts its own "
            "server); with wsgi: gunicorn, waitress, wsgiref; with asgi: uvicorn, hypercorn",
        ),
    ],
)
def test_a_server_that_does_not_fit_names_what_is_allowed(
    tmp_path: Path, body: str, message: str
) -> None:
    err = error(tmp_path, HEAD + "target:\n" + body)
    assert (err.line, err.message) == (5, message)
    assert "  >  5 |   server:" in str(err)


def test_the_harness_serves_every_server_the_file_allows() -> None:
    from pytest_incident.target import harness

    assert dict(SERVERS) == harness.SERVERS
    assert set(harness.SERVE) == {name for names in SERVERS.values() for name in names}


def test_wsgi_and_asgi_together_is_an_error(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "target:\n  wsgi: a:app\n  asgi: b:app\n")
    assert (err.line, err.message) == (
        5,
        "target needs exactly one of: wsgi, asgi, command; got wsgi and asgi",
    )


def test_a_bad_asgi_reference(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "target: {asgi: 'app'}\n")
    assert (err.line, err.message) == (3, "target.asgi: 'app' is not 'package.module:attribute'")


# --- python ------------------------------------------------------------------------------------


def test_without_python_the_target_runs_in_pytests_interpreter(tmp_path: Path) -> None:
    assert target(tmp_path, "  wsgi: a:app\n").python is None


def test_a_venv_folder_means_its_bin_python_relative_to_the_incident_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    venv = fake_venv(tmp_path / "envs" / "app")
    monkeypatch.chdir(tmp_path / "envs")  # relative to the file's folder, not the cwd
    loaded = target(tmp_path, "  asgi: a:app\n  python: envs/app\n")
    assert loaded.python == venv / "bin" / "python"  # the venv's own path, not resolved
    assert loaded.python.is_symlink()


def test_an_interpreter_file_may_be_named_directly(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path / "venv")
    (tmp_path / "sub").mkdir()
    assert target(tmp_path, "  wsgi: a:app\n  python: sub/../venv/bin/python\n").python == (
        venv / "bin" / "python"
    )
    assert target(tmp_path, f"  wsgi: a:app\n  python: {sys.executable}\n").python == Path(
        sys.executable
    )


def test_python_is_the_interpreter_of_python_in_a_command(tmp_path: Path) -> None:
    venv = fake_venv(tmp_path / "venv")
    loaded = target(tmp_path, "  command: ['{python}', -m, app, '{port}']\n  python: venv\n")
    assert loaded.python == venv / "bin" / "python"
    err = error(tmp_path, HEAD + "target:\n  command: serve {port}\n  python: venv\n")
    assert (err.line, err.message) == (
        5,
        "target.python: the command does not use {python}; target.python is the interpreter "
        "of wsgi/asgi targets and of {python} in a command",
    )


def test_a_missing_interpreter_is_an_error_at_its_line(tmp_path: Path) -> None:
    err = error(tmp_path, HEAD + "target:\n  wsgi: a:app\n  python: .venv-app/bin/python\n")
    assert err.line == 5
    assert err.message == f"target.python: interpreter not found: {tmp_path}/.venv-app/bin/python"
    assert str(err).startswith(f"{tmp_path / 'incident.yaml'}:5: target.python:")


def test_a_folder_that_is_no_venv_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "notavenv").mkdir()
    err = error(tmp_path, HEAD + "target:\n  wsgi: a:app\n  python: notavenv\n")
    assert (err.line, err.message) == (
        5,
        f"target.python: {tmp_path}/notavenv is a folder without bin/python (not a venv)",
    )


def test_a_file_that_is_not_executable_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "python").write_text("#!/bin/sh\n")
    os.chmod(tmp_path / "python", 0o644)
    err = error(tmp_path, HEAD + "target:\n  wsgi: a:app\n  python: ./python\n")
    assert (err.line, err.message) == (
        5,
        f"target.python: not an executable file: {tmp_path}/python",
    )


# --- the placeholder `pytest-incident freeze` writes ---------------------------------------------


@pytest.mark.parametrize("kind", ["wsgi", "asgi"])
def test_the_freeze_placeholder_says_what_to_fill_in(tmp_path: Path, kind: str) -> None:
    found = error(tmp_path, HEAD + f"target:\n  # fill in\n  {kind}: {TARGET_PLACEHOLDER}\n")
    assert found.line == 5
    assert found.message.startswith(f"target.{kind}: fill in how to start the current code")
    assert "'package.module:attribute'" in found.message and "command:" in found.message


def test_a_filled_in_target_loads(tmp_path: Path) -> None:
    """The twin: the same file with the app filled in."""
    assert target(tmp_path, "  # fill in\n  wsgi: myservice.app:app\n").wsgi == "myservice.app:app"
