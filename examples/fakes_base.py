# Scaffolding shared by the scripted fake APIs the demo recorders run (used only to RECORD):
# examples/signup/slow_payments.py (the payments API) and examples/receipts/fakes.py (Stripe,
# the tax API).
#
# FakeApi is an HTTP/1.1 JSON server on 127.0.0.1 (port 0 = any free port), served from a
# background thread; a subclass implements `handle` and answers (status, extra headers, JSON).
# Answers carry no Server/Date headers, so a scripted run gives the same answers every time.
# Nothing here binds anything but loopback.
from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

LOOPBACK = "127.0.0.1"

Answer = tuple[int, dict[str, str], Any]  # status, extra headers, JSON body


def error(kind: str, message: str) -> dict[str, Any]:
    """The Stripe-style error body: {"error": {"type": kind, "message": message}}."""
    return {"error": {"type": kind, "message": message}}


class FakeApi:
    """A JSON API on 127.0.0.1; subclasses implement `handle`. A context manager, or call
    start()/stop()."""

    name = "fake-api"  # the serving thread's name

    def __init__(self, port: int = 0) -> None:
        self.lock = threading.Lock()
        self.stopping = threading.Event()  # set by stop(): a scripted delay waits on it
        self._server = _Server((LOOPBACK, port), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=self.name, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, cut short any scripted delay, and join every handler thread."""
        self.stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def handle(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Answer:
        """Answer one request; `headers` have lower-case names, `body` is the raw bytes."""
        raise NotImplementedError


def wait_for_ctrl_c() -> None:
    """Block until Ctrl-C (for running the fakes by hand)."""
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads: a clean stop
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], fake: FakeApi) -> None:
        self.fake = fake
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5.0  # an idle keep-alive connection does not hold up stop() for long
    server: _Server

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        path, _, query = self.path.partition("?")
        status, extra, answer = self.server.fake.handle(self.command, path, query, headers, body)
        payload = json.dumps(answer).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up waiting (e.g. a timed-out call)

    def send_response(self, code: int, message: str | None = None) -> None:
        # No Server/Date headers: they would leak the recording machine's clock and version.
        self.log_request(code)
        self.send_response_only(code, message)

    def log_message(self, format: str, *args: Any) -> None:
        pass
