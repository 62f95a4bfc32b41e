# SMTP stub: the sandbox redirects the target's connects to a mail server here. Every message
# is accepted, parsed and recorded as an EMAIL effect in the replay book; nothing is relayed,
# and the stub never opens a connection of its own.
#
# Thin adapter: aiosmtpd speaks the protocol (EHLO/HELO, STARTTLS, AUTH PLAIN/LOGIN, MAIL,
# RCPT, DATA), `email` parses, `describe` renders. We run aiosmtpd's SMTP protocol on our own
# event loop in one thread rather than through its Controller: the Controller cannot listen on
# port 0 (its start-up probe connects to the configured port), and its stop() can leave client
# connections open. Here the listener is bound before the thread starts and connections are
# accepted one by one (so those still in a TLS handshake are known too); close() ends every
# connection, closes the listener, stops the loop and joins the thread.
#
# Any credentials are accepted, with or without TLS (a target's login must not fail because
# the stub has no password); passwords are never kept. With `implicit_tls` the whole
# connection is TLS (SMTPS, port 465 style); with `tls` alone, STARTTLS is offered.
from __future__ import annotations

import asyncio
import contextlib
import email.parser
import email.policy
import logging
import socket
import ssl
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from pytest_incident.core.book import ReplayBook
from pytest_incident.model.effects import Effect, Outcome
from pytest_incident.runtime.servers import SocketMaker

HOSTNAME = "pytest-incident.smtp.invalid"  # given so aiosmtpd does not call getfqdn()
ACCEPTED = "250 OK: accepted by pytest-incident, not delivered"


class _QuietLoginData(logging.Filter):
    """aiosmtpd 1.4 warns that Session.login_data is deprecated on every AUTH, from its own
    code; only that message is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


_QUIET_LOGIN_DATA = _QuietLoginData()
TIMEOUT_S = 5.0


@dataclass(frozen=True)
class SentMessage:
    sender: str  # the envelope sender (MAIL FROM), "" for a null sender
    recipients: tuple[str, ...]  # the envelope recipients (RCPT TO), in order
    subject: str
    body: str  # the text/plain part (else the HTML one), newlines normalised to \n
    size: int = 0  # bytes of DATA as received
    login: str = ""  # the AUTH user name, if the client logged in
    tls: bool = False  # whether the message came over TLS (STARTTLS or implicit)


def parse(
    sender: str, recipients: tuple[str, ...], data: bytes, login: str = "", tls: bool = False
) -> SentMessage:
    """The message a client sent, from its envelope and DATA bytes."""
    message = email.parser.BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return SentMessage(
        sender=sender,
        recipients=recipients,
        subject=str(message.get("subject", "")),
        body=_body_text(message),
        size=len(data),
        login=login,
        tls=tls,
    )


def _body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # unknown charset, broken encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    return content.replace("\r\n", "\n")


def describe(message: SentMessage) -> Effect:
    what = f"mail from {message.sender or '<>'} to {', '.join(message.recipients)}"
    subject = f"subject: {message.subject}" if message.subject else "no subject"
    return Effect(Outcome.EMAIL, what, f"{subject}  ({message.size} bytes, not delivered)")


def _accept_any(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    login = auth_data.login if isinstance(auth_data, LoginPassword) else b""
    # keep the user name only (it becomes session.auth_data); the password is dropped here
    return AuthResult(success=True, handled=False, auth_data=login)


class _Session(SMTP):
    """aiosmtpd's protocol, remembering its raw transport so close() can abort it."""

    def __init__(self, stub: SmtpStub, **kwargs: Any) -> None:
        super().__init__(stub, **kwargs)
        self._stub = stub
        self._raw: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._raw is None:  # the second call is STARTTLS's TLS transport
            self._raw = transport
            self._stub._opened(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._stub._lost(self)  # called once: after STARTTLS, by the TLS layer
        super().connection_lost(error)

    def drop(self) -> None:
        if isinstance(self._raw, asyncio.Transport):
            self._raw.abort()


class SmtpStub:
    """Accepts mail on 127.0.0.1 (free port) until closed; records it, delivers nothing."""

    def __init__(
        self,
        book: ReplayBook,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        *,
        sockets: SocketMaker = socket.socket,
    ) -> None:
        logger = logging.getLogger("mail.log")
        if _QUIET_LOGIN_DATA not in logger.filters:
            logger.addFilter(_QUIET_LOGIN_DATA)
        if implicit_tls and tls is None:
            raise ValueError("implicit_tls needs a server SSL context (tls=...)")
        self.book = book
        self.tls = tls
        self.implicit_tls = implicit_tls
        self.messages: list[SentMessage] = []
        self._lock = threading.Lock()
        self._sessions: set[_Session] = set()
        self._listener = sockets(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.address: tuple[str, int] = self._listener.getsockname()
        self._loop = asyncio.new_event_loop()
        self._conns: set[socket.socket] = set()  # accepted, until their transport closes them
        self._unowned: set[socket.socket] = set()  # accepted, not yet handed to a transport
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="incident-smtp", daemon=True
        )
        self._thread.start()
        try:
            self._call(self._start())
        except BaseException:
            self.close()
            raise

    # --- the handler aiosmtpd calls --------------------------------------------------------

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        login = session.auth_data if isinstance(session.auth_data, bytes) else b""
        sender = envelope.mail_from or ""
        message = parse(
            "" if sender == "<>" else sender,  # aiosmtpd keeps a null sender as "<>"
            tuple(envelope.rcpt_tos),
            envelope.original_content or b"",
            login=login.decode("utf-8", "replace"),
            tls=tls,
        )
        with self._lock:
            self.messages.append(message)
        self.book.add(describe(message))
        return ACCEPTED

    # --- recorded messages -----------------------------------------------------------------

    def take_messages(self) -> list[SentMessage]:
        with self._lock:
            taken, self.messages = self.messages, []
        return taken

    # --- the loop thread -------------------------------------------------------------------

    def _session(self) -> _Session:
        starttls = self.tls if not self.implicit_tls else None
        return _Session(
            self,
            hostname=HOSTNAME,
            tls_context=starttls,
            auth_require_tls=False,
            authenticator=_accept_any,
            enable_SMTPUTF8=True,
            loop=self._loop,
        )

    def _opened(self, session: _Session) -> None:
        self._sessions.add(session)  # the set is only touched on the loop thread

    def _lost(self, session: _Session) -> None:
        self._sessions.discard(session)

    async def _start(self) -> None:
        self._loop.add_reader(self._listener, self._accept)

    def _accept(self) -> None:
        # A reader callback rather than `await sock_accept()`: cancelling that await can lose
        # a connection it has just accepted.
        try:
            conn, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # ~90 ms per mail without
        self._conns = {c for c in self._conns if c.fileno() != -1}
        self._conns.add(conn)
        self._unowned.add(conn)
        self._loop.create_task(self._connect(conn))

    async def _connect(self, conn: socket.socket) -> None:
        # From here the transport owns `conn` and closes it when the connection ends (a
        # failed TLS handshake included); it is created before the first await.
        self._unowned.discard(conn)
        with contextlib.suppress(OSError):
            await self._loop.connect_accepted_socket(
                self._session, conn, ssl=self.tls if self.implicit_tls else None
            )

    async def _stop(self) -> None:
        self._loop.remove_reader(self._listener)
        for session in list(self._sessions):
            session.drop()
        # Cancelling the rest ends the connections still in a TLS handshake.
        current = asyncio.current_task()
        tasks = [t for t in asyncio.all_tasks(self._loop) if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in self._unowned:  # their task was cancelled before it started
            conn.close()
        deadline = self._loop.time() + TIMEOUT_S
        while any(c.fileno() != -1 for c in self._conns) and self._loop.time() < deadline:
            await asyncio.sleep(0.01)  # transports close their sockets on the next loop pass

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(2 * TIMEOUT_S)

    def close(self) -> None:
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._call(self._stop())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=TIMEOUT_S)
        self._listener.close()
        if not self._thread.is_alive():
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()
