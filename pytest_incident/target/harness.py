# The `wsgi`/`asgi` target harness: serves one application on a loopback port with the server
# `target.server` names, the way production runs it. It runs INSIDE the sandbox, in the
# target's own interpreter (`target.python`), so it imports only the standard library, the
# chosen server and the app, and keeps to what Python 3.8 runs (an older app venv may):
#
#     python pytest_incident/target/harness.py wsgi package.module:app --server gunicorn \
#         --port 8000 [--status FILE]
#
# Servers: wsgiref (standard library, one thread per request), gunicorn (one gthread worker,
# so in-process state is one process's as with wsgiref; no control socket), waitress (one
# process, threads); uvicorn and hypercorn for ASGI. Each binds 127.0.0.1:PORT only.
#
# The status file tells the runtime how starting went: `ready` once the app is loaded in the
# process that serves it (for gunicorn, in its worker), or one line `error: ...` before the
# harness exits with status 3 (the server is not installed in this interpreter, the app does
# not load). The runtime still waits for the port itself.
#
# Nothing is added to the request the client sent: what wsgiref invents for a request without
# them (`CONTENT_TYPE: text/plain`, an empty `CONTENT_LENGTH`) is taken out; the other servers
# add no request header.
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

HOST = "127.0.0.1"
THREADS = 8  # request threads of gunicorn's worker and of waitress
SERVERS = {  # as pytest_incident.model.spec.SERVERS says (a test checks they agree)
    "wsgi": ("gunicorn", "waitress", "wsgiref"),
    "asgi": ("uvicorn", "hypercorn"),
}
SETUP_FAILED = 3  # exit status when the status file says why


class SetupError(Exception):
    """Why the app cannot be served: one line for the status file."""


class Status:
    """The status file, if the runtime asked for one."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None

    def _write(self, line: str) -> None:
        if self.path is not None:
            partial = self.path.with_name(self.path.name + ".partial")
            partial.write_text(line + "\n")
            partial.replace(self.path)

    def ready(self) -> None:
        self._write("ready")

    def error(self, message: str) -> None:
        self._write("error: " + message)


# -- the app ------------------------------------------------------------------------------


def load_app(ref: str, kind: str = "wsgi") -> Callable[..., Any]:
    """The object `package.module:attribute` names (attribute defaults to `app`)."""
    module_name, _, attribute = ref.partition(":")
    module = importlib.import_module(module_name)
    app: Any = module
    for part in (attribute or "app").split("."):
        app = getattr(app, part)
    if not callable(app):
        raise TypeError(f"{ref} is not a{'n' if kind == 'asgi' else ''} {kind.upper()} app")
    return app  # type: ignore[no-any-return]


def report_load_error(ref: str, exc: BaseException, kind: str = "wsgi") -> str:
    """Print why the app did not load, with the user's frames only (no harness/importlib);
    the one-line summary."""
    summary = traceback.TracebackException.from_exception(exc)
    summary.stack = traceback.StackSummary.from_list(
        [f for f in summary.stack if f.filename != __file__ and "importlib" not in f.filename]
    )
    sys.stderr.write(f"harness: cannot load the {kind.upper()} app {ref}\n")
    sys.stderr.write("".join(summary.format()))
    sys.stderr.flush()
    last = "".join(summary.format_exception_only()).strip().splitlines()
    return f"cannot load the {kind.upper()} app {ref}: {last[-1] if last else type(exc).__name__}"


def loaded(ref: str, kind: str) -> Callable[..., Any]:
    """The app, or a SetupError saying why it did not load (its traceback printed)."""
    try:
        return load_app(ref, kind)
    except Exception as exc:
        raise SetupError(report_load_error(ref, exc, kind)) from exc


def require(server: str, kind: str) -> None:
    """A SetupError unless `server` can be imported in this interpreter."""
    if server == "wsgiref":
        return
    if importlib.util.find_spec(server) is None:
        raise SetupError(
            f"target.{kind} needs {server} in {sys.executable}: pip install {server}"
            + (" (or target.server: wsgiref, from the standard library)" if kind == "wsgi" else "")
        )


# -- the servers --------------------------------------------------------------------------


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True


class Handler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        sys.stderr.write(f"harness: {format % args}\n")

    def get_environ(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environ()
        if self.headers.get("content-type") is None:  # wsgiref would invent text/plain
            environ.pop("CONTENT_TYPE", None)
        if self.headers.get("content-length") is None:  # ... and an empty length
            environ.pop("CONTENT_LENGTH", None)
        return environ


def serve_wsgiref(ref: str, port: int, status: Status) -> None:
    app = loaded(ref, "wsgi")
    with make_server(HOST, port, app, ThreadingWSGIServer, Handler) as server:
        status.ready()
        sys.stderr.write(f"harness: serving {ref} with wsgiref on {HOST}:{port}\n")
        sys.stderr.flush()
        server.serve_forever()


def serve_gunicorn(ref: str, port: int, status: Status) -> None:
    """The arbiter and one gthread worker; the worker loads the app (no preload), as
    gunicorn does by default, and the harness is ready when it has."""
    from gunicorn.app.base import BaseApplication

    def post_worker_init(worker: Any) -> None:
        status.ready()

    class Harness(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            settings: dict[str, Any] = {
                "bind": [f"{HOST}:{port}"],
                "workers": 1,
                "worker_class": "gthread",
                "threads": THREADS,
                "post_worker_init": post_worker_init,
                "errorlog": "-",
                "loglevel": "info",
                "control_socket_disable": True,  # gunicorn >= 25.1 makes one in $HOME
            }
            for name, value in settings.items():
                if name in self.cfg.settings:
                    self.cfg.set(name, value)

        def load(self) -> Callable[..., Any]:  # in the worker
            try:
                return loaded(ref, "wsgi")
            except SetupError as exc:
                status.error(str(exc))
                sys.exit(SETUP_FAILED)  # the worker's boot error, which stops the arbiter

    Harness().run()


def serve_waitress(ref: str, port: int, status: Status) -> None:
    from waitress import create_server

    app = loaded(ref, "wsgi")
    server = create_server(app, host=HOST, port=port, threads=THREADS)
    status.ready()
    server.print_listen("harness: waitress serving on http://{}:{}")
    server.run()


def serve_uvicorn(ref: str, port: int, status: Status) -> None:
    import uvicorn

    app = loaded(ref, "asgi")
    server = uvicorn.Server(uvicorn.Config(app, host=HOST, port=port, log_level="info"))
    status.ready()  # the runtime waits for the port: uvicorn binds after lifespan startup
    server.run()
    if not server.started:  # a failed lifespan startup or bind; uvicorn said why
        sys.exit(1)


def serve_hypercorn(ref: str, port: int, status: Status) -> None:
    import asyncio

    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    app = loaded(ref, "asgi")
    config = Config()
    config.bind = [f"{HOST}:{port}"]
    config.errorlog = "-"
    status.ready()  # the runtime waits for the port: hypercorn binds after lifespan startup
    asyncio.run(serve(app, config))


SERVE: dict[str, Callable[[str, int, Status], None]] = {
    "wsgiref": serve_wsgiref,
    "gunicorn": serve_gunicorn,
    "waitress": serve_waitress,
    "uvicorn": serve_uvicorn,
    "hypercorn": serve_hypercorn,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness.py")
    parser.add_argument("kind", choices=sorted(SERVERS), help="the app's interface")
    parser.add_argument("app", help="package.module:attribute of the application")
    parser.add_argument("--server", required=True, choices=sorted(SERVE))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--status", default=None, help="file to write ready / error: ... to")
    args = parser.parse_args(argv)
    status = Status(args.status)
    if args.server not in SERVERS[args.kind]:
        parser.error(f"{args.server} does not serve {args.kind} apps")
    try:
        require(args.server, args.kind)
        SERVE[args.server](args.app, args.port, status)
    except SetupError as exc:
        status.error(str(exc))
        sys.stderr.write(f"harness: {exc}\n")
        return SETUP_FAILED
    return 0


if __name__ == "__main__":
    # run as a script: its own folder is not the application's import path
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    sys.exit(main())
