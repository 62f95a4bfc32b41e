"""The HTTP stub answers each recorded outcome as it was: a status as that status, a call that
failed without an answer (reset, refused) as a connection reset, never as a made-up 200."""

from __future__ import annotations

import http.client
from collections.abc import Iterator

import pytest

from pytest_incident.core.book import ReplayBook
from pytest_incident.model.effects import Outcome
from pytest_incident.runtime.stubs.http import Endpoint, HttpStub

from ..spans import outbound_call

URL = "http://api.payments.example/v1/charges"


@pytest.fixture
def stub() -> Iterator[tuple[HttpStub, ReplayBook]]:
    book = ReplayBook()
    server = HttpStub(Endpoint("api.payments.example", 80), book)
    yield server, book
    server.close()


def recorded(**attributes: str) -> dict[str, str]:
    return {"http.request.method": "POST", "url.full": URL, "server.address":
            "api.payments.example", "server.port": "80", **attributes}  # fmt: skip


def post(server: HttpStub) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(*server.address, timeout=5)
    conn.request("POST", "/v1/charges", body=b"", headers={"Host": "api.payments.example"})
    return conn.getresponse()


@pytest.mark.parametrize("error", ["connection_reset", "ECONNREFUSED", ""])
def test_a_call_that_failed_without_an_answer_is_reset(
    stub: tuple[HttpStub, ReplayBook], error: str
) -> None:
    server, book = stub
    attributes = recorded(**({"error.type": error} if error else {}))
    book.begin([outbound_call(0, attributes)])
    with pytest.raises(ConnectionResetError):
        post(server)
    [effect] = book.end()
    assert effect.outcome is Outcome.SERVED
    assert effect.detail == f"-> connection reset (recorded #0: {error or 'no answer recorded'})"


def test_a_recorded_error_status_is_answered_as_that_status(
    stub: tuple[HttpStub, ReplayBook],
) -> None:
    """The twin: a call that did answer, with a 503, gets its 503 (and body)."""
    server, book = stub
    attributes = recorded(**{"http.response.status_code": "503",
                             "incident.response.body": "busy", "error.type": "503"})  # fmt: skip
    book.begin([outbound_call(0, attributes)])
    response = post(server)
    assert (response.status, response.read()) == (503, b"busy")
    [effect] = book.end()
    assert effect.detail == "-> 503 (recorded #0)"
