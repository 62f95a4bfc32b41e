"""The SMTP stub: mail is accepted, recorded in the side-effect log, and never delivered.

Every endpoint here is loopback. In the sandbox test a listener on 127.0.0.1 stands in for a
real mail server; the policy redirects it to the stub, and the stand-in must see nothing.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import trustme

from pytest_incident.core.book import ReplayBook
from pytest_incident.model.effects import Effect, Outcome
from pytest_incident.runtime.stubs.smtp import SentMessage, SmtpStub, parse
from pytest_incident.sandbox.policy import SandboxPolicy

from ..sandboxing import run_traced

WELCOME = "Subject: Welcome!\r\nFrom: a@x\r\nTo: b@y\r\n\r\nHello there.\r\nSecond line.\r\n"


@pytest.fixture
def book() -> ReplayBook:
    book = ReplayBook()
    book.begin([])
    return book


@pytest.fixture
def stub(book: ReplayBook) -> Iterator[SmtpStub]:
    stub = SmtpStub(book)
    yield stub
    stub.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()  # verifies the certificate and the host name
    ca.configure_trust(context)
    return context


def email_effects(book: ReplayBook) -> list[Effect]:
    return [e for e in book.end() if e.outcome is Outcome.EMAIL]


def test_plain_message_is_recorded_and_not_delivered(stub: SmtpStub, book: ReplayBook) -> None:
    with smtplib.SMTP(*stub.address, local_hostname="client.test", timeout=5) as client:
        code, _ = client.ehlo()
        assert code == 250
        refused = client.sendmail("a@x", ["b@y"], WELCOME)
        assert refused == {}
    assert email_effects(book) == [
        Effect(
            Outcome.EMAIL,
            "mail from a@x to b@y",
            f"subject: Welcome!  ({len(WELCOME)} bytes, not delivered)",
        )
    ]
    [message] = stub.take_messages()
    assert message == SentMessage(
        sender="a@x",
        recipients=("b@y",),
        subject="Welcome!",
        body="Hello there.\nSecond line.\n",
        size=len(WELCOME),
    )
    assert stub.take_messages() == []  # taken means cleared


def test_helo_client_is_accepted(stub: SmtpStub, book: ReplayBook) -> None:
    with smtplib.SMTP(*stub.address, local_hostname="client.test", timeout=5) as client:
        assert client.helo()[0] == 250
        client.sendmail("a@x", ["b@y"], WELCOME)
    [effect] = email_effects(book)
    assert effect.what == "mail from a@x to b@y"


def test_starttls_is_offered_and_the_message_arrives_encrypted(
    book: ReplayBook, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    stub = SmtpStub(book, tls=server_tls)
    try:
        with smtplib.SMTP(*stub.address, local_hostname="client.test", timeout=5) as client:
            client.ehlo()
            assert client.has_extn("starttls")
            assert client.starttls(context=client_tls)[0] == 220
            assert isinstance(client.sock, ssl.SSLSocket)
            client.sendmail("a@x", ["b@y"], WELCOME)
        [message] = stub.take_messages()
    finally:
        stub.close()
    assert message.tls
    assert message.subject == "Welcome!"
    assert [e.what for e in email_effects(book)] == ["mail from a@x to b@y"]


def test_implicit_tls_smtps(
    book: ReplayBook, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    stub = SmtpStub(book, tls=server_tls, implicit_tls=True)
    try:
        host, port = stub.address
        with smtplib.SMTP_SSL(
            host, port, local_hostname="client.test", context=client_tls, timeout=5
        ) as client:
            client.ehlo()
            assert not client.has_extn("starttls")  # already TLS
            client.login("mailer", "secret")
            client.sendmail("noreply@shop.example", ["c@z"], WELCOME)
        [message] = stub.take_messages()
    finally:
        stub.close()
    assert (message.tls, message.login, message.recipients) == (True, "mailer", ("c@z",))
    [effect] = email_effects(book)
    assert effect.what == "mail from noreply@shop.example to c@z"
    assert effect.detail == f"subject: Welcome!  ({len(WELCOME)} bytes, not delivered)"


def test_smtps_waits_for_a_tls_handshake_and_close_ends_it(
    book: ReplayBook, server_tls: ssl.SSLContext
) -> None:
    stub = SmtpStub(book, tls=server_tls, implicit_tls=True)
    try:
        with socket.create_connection(stub.address, timeout=0.3) as raw:
            with pytest.raises(TimeoutError):
                raw.recv(100)  # no plain-text greeting: the server expects a TLS hello
            stub.close()  # with the handshake still pending
            raw.settimeout(2)
            assert raw.recv(100) == b""  # the server ended the connection
    finally:
        stub.close()
    assert not any(t.name == "incident-smtp" for t in threading.enumerate())
    assert email_effects(book) == []


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_any_credentials_log_in_without_tls(
    stub: SmtpStub, book: ReplayBook, mechanism: str
) -> None:
    with smtplib.SMTP(*stub.address, local_hostname="client.test", timeout=5) as client:
        client.ehlo()
        assert mechanism in client.esmtp_features["auth"].split()
        client.user, client.password = "app@shop.example", "wrong-but-accepted"
        authobject = getattr(client, f"auth_{mechanism.lower()}")
        # LOGIN without an initial response: the stub's username and password challenges
        code, _ = client.auth(mechanism, authobject, initial_response_ok=mechanism == "PLAIN")
        assert code == 235
        client.sendmail("app@shop.example", ["b@y"], WELCOME)
    [message] = stub.take_messages()
    assert message.login == "app@shop.example"
    assert "wrong-but-accepted" not in repr(message)
    [effect] = email_effects(book)
    assert effect.what == "mail from app@shop.example to b@y"


def test_multiple_recipients(stub: SmtpStub, book: ReplayBook) -> None:
    with smtplib.SMTP(*stub.address, local_hostname="client.test", timeout=5) as client:
        refused = client.sendmail("a@x", ["b@y", "c@z", "d@w"], WELCOME)
    assert refused == {}
    [effect] = email_effects(book)
    assert effect.what == "mail from a@x to b@y, c@z, d@w"
    [message] = stub.take_messages()
    assert message.recipients == ("b@y", "c@z", "d@w")


def test_multiple_messages_in_one_session(stub: SmtpStub, book: ReplayBook) -> None:
    with smtplib.SMTP(*stub.address, local_hostname="client.test", timeout=5) as client:
        for n in range(3):
            msg = EmailMessage()
            msg["Subject"] = f"Receipt #{n}"
            msg["From"] = "shop@x"
            msg["To"] = f"buyer{n}@y"
            msg.set_content(f"Thanks for order {n}.")
            client.send_message(msg)
        client.sendmail("<>", ["postmaster@y"], "\r\nno headers at all\r\n")
    effects = email_effects(book)
    assert [e.what for e in effects] == [
        "mail from shop@x to buyer0@y",
        "mail from shop@x to buyer1@y",
        "mail from shop@x to buyer2@y",
        "mail from <> to postmaster@y",
    ]
    assert effects[1].detail.startswith("subject: Receipt #1  (")
    assert effects[3].detail.startswith("no subject  (")
    messages = stub.take_messages()
    assert [m.body for m in messages] == [
        "Thanks for order 0.\n",
        "Thanks for order 1.\n",
        "Thanks for order 2.\n",
        "no headers at all\n",
    ]
    assert messages[3].sender == ""


def test_body_prefers_the_plain_text_part() -> None:
    msg = EmailMessage()
    msg["Subject"] = "=?utf-8?q?Bienvenue_=C3=A0_bord?="
    msg.set_content("Bonjour, café.\n")
    msg.add_alternative("<p>Bonjour</p>", subtype="html")
    message = parse("a@x", ("b@y",), msg.as_bytes())
    assert message.subject == "Bienvenue à bord"
    assert message.body == "Bonjour, café.\n"


def test_close_ends_open_sessions_the_listener_and_the_thread(
    book: ReplayBook, server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    stub = SmtpStub(book, tls=server_tls)
    plain = smtplib.SMTP(*stub.address, local_hostname="client.test", timeout=5)
    plain.ehlo()  # sessions left open mid-conversation, one of them encrypted
    encrypted = smtplib.SMTP(*stub.address, local_hostname="client.test", timeout=5)
    encrypted.starttls(context=client_tls)
    assert any(t.name == "incident-smtp" for t in threading.enumerate())
    started = time.monotonic()
    stub.close()
    # promptly: a TLS session is aborted, not left waiting for the client's close_notify
    assert time.monotonic() - started < 2
    assert not any(t.name == "incident-smtp" for t in threading.enumerate())
    for client in (plain, encrypted):
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()
        client.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(stub.address, timeout=2).close()
    stub.close()  # idempotent


def test_implicit_tls_needs_a_context(book: ReplayBook) -> None:
    with pytest.raises(ValueError, match="implicit_tls"):
        SmtpStub(book, implicit_tls=True)


# --- under the sandbox ------------------------------------------------------------------------


@pytest.fixture
def mta(listener: socket.socket) -> socket.socket:
    """A loopback listener standing in for a real mail server: it must never be reached."""
    return listener


@pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")
def test_mail_sent_under_the_sandbox_reaches_the_stub_and_nothing_else(
    tmp_path: Path, stub: SmtpStub, book: ReplayBook, mta: socket.socket
) -> None:
    mta_port = int(mta.getsockname()[1])
    policy = SandboxPolicy(redirects={("127.0.0.1", mta_port): stub.address})
    proc, events = run_traced(
        tmp_path,
        policy,
        f"""
        import smtplib
        from email.message import EmailMessage
        msg = EmailMessage()
        msg["Subject"] = "Your password was reset"
        msg["From"] = "security@shop.example"
        msg["To"] = "victim@customer.example"
        msg.set_content("If this was not you, contact us.")
        with smtplib.SMTP("127.0.0.1", {mta_port}, timeout=5) as client:
            client.login("mailer", "hunter2")
            client.send_message(msg, to_addrs=["victim@customer.example", "audit@shop.example"])
        print("sent")
        """,
    )
    assert proc.stdout.strip() == "sent", proc.stderr
    with pytest.raises(TimeoutError):
        mta.accept()  # the would-be mail server saw no connection
    [message] = stub.take_messages()
    assert message.subject == "Your password was reset"
    assert message.recipients == ("victim@customer.example", "audit@shop.example")
    assert message.body == "If this was not you, contact us.\n"
    assert message.login == "mailer"
    [effect] = email_effects(book)
    assert effect.what == (
        "mail from security@shop.example to victim@customer.example, audit@shop.example"
    )
    assert effect.detail.endswith(" bytes, not delivered)")
    [net] = [e for e in events if e["event"] == "net"]
    assert net["action"] == "redirect"
    assert net["dest"] == f"127.0.0.1:{mta_port}"
    assert net["to"] == f"{stub.address[0]}:{stub.address[1]}"
