# The `wsgi` target harness: serves one WSGI application on a loopback port, one thread per
# request. Runs INSIDE the sandbox, so it imports only the standard library and the app:
#
#     python pytest_incident/target/harness.py package.module:app --port 8000
from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


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
        return environ


def load_app(ref: str) -> Callable[..., Any]:
    module_name, _, attribute = ref.partition(":")
    module = importlib.import_module(module_name)
    app: Any = module
    for part in (attribute or "app").split("."):
        app = getattr(app, part)
    if not callable(app):
        raise TypeError(f"{ref} is not a WSGI application (not callable)")
    return app  # type: ignore[no-any-return]


def report_load_error(ref: str, exc: BaseException) -> None:
    """Print why the app did not load, with the user's frames only (no harness/importlib)."""
    summary = traceback.TracebackException.from_exception(exc)
    summary.stack = traceback.StackSummary.from_list(
        [f for f in summary.stack if f.filename != __file__ and "importlib" not in f.filename]
    )
    sys.stderr.write(f"harness: cannot load the WSGI app {ref}\n")
    sys.stderr.write("".join(summary.format()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="harness.py")
    parser.add_argument("app", help="module:attribute of the WSGI application")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    try:
        app = load_app(args.app)
    except Exception as exc:
        report_load_error(args.app, exc)
        return 1
    with make_server("127.0.0.1", args.port, app, ThreadingWSGIServer, Handler) as server:
        sys.stderr.write(f"harness: serving {args.app} on 127.0.0.1:{args.port}\n")
        sys.stderr.flush()
        server.serve_forever()
    return 0


if __name__ == "__main__":
    # run as a script: its own folder is not the application's import path
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        del sys.path[0]
    sys.exit(main())
