"""HTTPS stubs: real clients in a real Python child under the tracer, verification on.

Every destination is loopback. The recorded hosts resolve through the DNS stub to 127.77.0.x
and the policy redirects port 443 there to TLS stubs on 127.0.0.1; the child trusts the run's
CA only through `trust_env` (bundle variables and the trust hook on its PYTHONPATH).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_incident.core.book import ReplayBook, Reply
from pytest_incident.core.matching import LiveRequest
from pytest_incident.model.effects import Effect, Outcome
from pytest_incident.model.recorded import OutboundCall
from pytest_incident.runtime.stubs.dns import DnsStub
from pytest_incident.runtime.stubs.http import Endpoint, HttpStub
from pytest_incident.runtime.stubs.tls import CA_ENV, IncidentCA, TrustFiles, trust_env
from pytest_incident.sandbox.policy import SandboxPolicy

from ..sandboxing import run_traced
from ..spans import outbound_call as client_call

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the sandbox needs Linux")

HOSTS = {"api.stripe.com": "127.77.0.1", "api.example.test": "127.77.0.2"}
TRUST_VARIABLES = {
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    CA_ENV,
}
PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
THING = b'{"thing": 1, "source": "recording"}'
CUSTOMER = {
    "id": "cus_123",
    "object": "customer",
    "email": "erin.walsh@example.org",
    "created": 1715695880,
    "livemode": False,
    "metadata": {},
}
CHARGE = {
    "id": "ch_3PGs",
    "object": "charge",
    "amount": 2000,
    "currency": "usd",
    "status": "succeeded",
    "paid": True,
    "livemode": False,
    "metadata": {},
}


def call(
    order: int,
    method: str,
    url: str,
    body: bytes = THING,
    *,
    status: int = 200,
    error: str = "",
) -> OutboundCall:
    attributes = {
        "http.request.method": method,
        "url.full": url,
        "http.response.status_code": str(status),
        "incident.response.headers": json.dumps(
            {"content-type": "application/json", "request-id": f"req_{order}"}
        ),
        "incident.response.body": body.decode(),
    }
    if error:
        attributes["error.type"] = error
    return client_call(order, attributes)


@dataclass
class World:
    """The stubs of one test and the trust files of its CA."""

    tmp_path: Path
    ca: IncidentCA
    files: TrustFiles
    book: ReplayBook
    policy: SandboxPolicy
    dns: DnsStub
    stubs: Mapping[str, HttpStub]

    def env(self, *, variables: bool = True, hook: bool = True) -> dict[str, str]:
        """The child's environment: ours without trust or proxy settings, plus the chosen
        parts of `trust_env` (bundle variables, and/or the hook on PYTHONPATH)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in TRUST_VARIABLES and k.lower() not in PROXY_VARIABLES
        }
        trust = trust_env(self.files, pythonpath=env.get("PYTHONPATH", ""))
        if not hook:
            trust.pop(CA_ENV)
            trust.pop("PYTHONPATH")
        if not variables:
            trust = {k: v for k, v in trust.items() if k in (CA_ENV, "PYTHONPATH")}
        return env | trust

    def run(
        self, code: str, env: dict[str, str], timeout: float = 60
    ) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
        """`python -c code` under the tracer with `env`; its output and the tracer's events."""
        return run_traced(self.tmp_path, self.policy, code, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def ca() -> IncidentCA:
    return IncidentCA()


@pytest.fixture
def world(tmp_path: Path, ca: IncidentCA) -> Iterator[World]:
    book = ReplayBook()
    dns = DnsStub(HOSTS)
    stubs: dict[str, HttpStub] = {}
    try:
        for host in HOSTS:
            endpoint = Endpoint(host, 443, "https")
            stubs[host] = HttpStub(endpoint, book, tls=ca.server_context(host))
        policy = SandboxPolicy(
            redirects={(ip, 443): stubs[host].address for host, ip in HOSTS.items()},
            dns=dns.address,
            hostnames={ip: host for host, ip in HOSTS.items()},
        )
        files = ca.write_files(tmp_path / "trust")
        yield World(tmp_path, ca, files, book, policy, dns, stubs)
    finally:
        book.end()
        for stub in stubs.values():
            stub.close()
        dns.close()


def served(effects: list[Effect]) -> list[str]:
    return [e.what for e in effects if e.outcome is Outcome.SERVED]


def redirected_hosts(events: list[dict[str, object]]) -> set[object]:
    return {e.get("host") for e in events if e["event"] == "net" and e["action"] == "redirect"}


EXAMPLE = "https://api.example.test/v1/things/1"


# --- the clients ---------------------------------------------------------------------------


def test_requests_with_its_default_bundle(world: World) -> None:
    world.book.begin([call(0, "GET", EXAMPLE)])
    proc, events = world.run(
        f"""
        import requests
        r = requests.get("{EXAMPLE}", timeout=10)
        print(r.status_code, r.headers["request-id"], r.text)
        """,
        world.env(),
    )
    assert proc.stdout.strip() == f"200 req_0 {THING.decode()}", proc.stderr
    assert served(world.book.end()) == [f"GET {EXAMPLE}"]
    assert redirected_hosts(events) == {"api.example.test"}


def test_httpx_with_its_default_context(world: World) -> None:
    world.book.begin([call(0, "GET", EXAMPLE)])
    proc, _ = world.run(
        f"""
        import httpx
        with httpx.Client(timeout=10) as client:
            r = client.get("{EXAMPLE}")
        print(r.status_code, r.http_version, r.json()["source"])
        """,
        world.env(),
    )
    assert proc.stdout.strip() == "200 HTTP/1.1 recording", proc.stderr
    assert served(world.book.end()) == [f"GET {EXAMPLE}"]


def test_urllib_with_the_system_default_context(world: World) -> None:
    world.book.begin([call(0, "GET", EXAMPLE)])
    proc, _ = world.run(
        f"""
        import urllib.request
        with urllib.request.urlopen("{EXAMPLE}", timeout=10) as r:
            print(r.status, r.read().decode())
        """,
        world.env(),
    )
    assert proc.stdout.strip() == f"200 {THING.decode()}", proc.stderr
    assert served(world.book.end()) == [f"GET {EXAMPLE}"]


def test_the_stripe_sdk_with_its_bundled_ca_file(world: World) -> None:
    """stripe passes `verify=stripe.ca_bundle_path` (its own file) to requests."""
    customer = "https://api.stripe.com/v1/customers/cus_123"
    charges = "https://api.stripe.com/v1/charges"
    world.book.begin(
        [
            call(0, "GET", customer, json.dumps(CUSTOMER).encode()),
            call(1, "POST", charges, json.dumps(CHARGE).encode()),
        ]
    )
    proc, events = world.run(
        """
        import stripe
        stripe.api_key = "sk_test_x"
        stripe.max_network_retries = 0
        print(type(stripe.default_http_client or stripe.new_default_http_client()).__name__)
        customer = stripe.Customer.retrieve("cus_123")
        print(customer.id, customer.email)
        charge = stripe.Charge.create(amount=2000, currency="usd", customer=customer.id)
        print(charge.id, charge.status, charge.amount)
        """,
        world.env(),
    )
    assert proc.stdout.split("\n")[:3] == [
        "RequestsClient",
        "cus_123 erin.walsh@example.org",
        "ch_3PGs succeeded 2000",
    ], proc.stderr
    assert served(world.book.end()) == [f"GET {customer}", f"POST {charges}"]
    assert redirected_hosts(events) == {"api.stripe.com"}


def test_clients_pinning_a_bundle_of_their_own(world: World) -> None:
    urls = [f"https://api.example.test/v1/things/{i}" for i in range(3)]
    world.book.begin([call(i, "GET", url) for i, url in enumerate(urls)])
    proc, _ = world.run(
        f"""
        import ssl, warnings
        import certifi, httpx, requests, stripe
        print(requests.get("{urls[0]}", verify=certifi.where(), timeout=10).status_code)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # verify=<str> is deprecated
            with httpx.Client(verify=stripe.ca_bundle_path, timeout=10) as client:
                print(client.get("{urls[1]}").status_code)
        pinned = ssl.create_default_context(cafile=stripe.ca_bundle_path)
        with httpx.Client(verify=pinned, timeout=10) as client:
            print(client.get("{urls[2]}").status_code)
        """,
        world.env(),
    )
    assert proc.stdout.split() == ["200", "200", "200"], proc.stderr
    assert served(world.book.end()) == [f"GET {url}" for url in urls]


# --- what makes it work, and what does not ------------------------------------------------


VERIFY = f"""
import ssl, certifi, requests
for verify in (True, certifi.where()):
    try:
        print(requests.get("{EXAMPLE}", verify=verify, timeout=10).status_code)
    except requests.exceptions.SSLError as exc:
        print("CERTIFICATE_VERIFY_FAILED" if "CERTIFICATE_VERIFY_FAILED" in str(exc) else exc)
"""


def test_without_the_trust_env_verification_fails(world: World) -> None:
    world.book.begin([call(0, "GET", EXAMPLE), call(1, "GET", EXAMPLE)])
    proc, events = world.run(VERIFY, world.env(variables=False, hook=False))
    assert proc.stdout.split() == ["CERTIFICATE_VERIFY_FAILED"] * 2, proc.stderr
    assert world.book.end() == []  # no request got past the handshake
    assert redirected_hosts(events) == {"api.example.test"}  # yet the stub was reached


def test_the_variables_alone_miss_a_pinned_bundle_and_the_hook_alone_does_not(
    world: World,
) -> None:
    world.book.begin([call(i, "GET", EXAMPLE) for i in range(3)])
    variables, _ = world.run(VERIFY, world.env(hook=False))
    hook, _ = world.run(VERIFY, world.env(variables=False))
    assert variables.stdout.split() == ["200", "CERTIFICATE_VERIFY_FAILED"], variables.stderr
    assert hook.stdout.split() == ["200", "200"], hook.stderr
    assert len(served(world.book.end())) == 3


def test_a_leaf_certificate_names_only_its_recorded_host(world: World) -> None:
    proc, _ = world.run(
        """
        import socket, ssl
        context = ssl.create_default_context()
        for name in ("api.example.test", "api.stripe.com"):
            raw = socket.create_connection(("api.example.test", 443), timeout=10)
            try:
                with context.wrap_socket(raw, server_hostname=name) as tls:
                    print(name, "ok", tls.getpeercert()["subjectAltName"])
            except ssl.SSLCertVerificationError as exc:
                print(name, exc.verify_message)
        """,
        world.env(),
    )
    assert proc.stdout.splitlines() == [
        "api.example.test ok (('DNS', 'api.example.test'),)",
        "api.stripe.com Hostname mismatch, certificate is not valid for 'api.stripe.com'.",
    ], proc.stderr


def test_keep_alive_over_tls(world: World) -> None:
    world.book.begin([call(0, "GET", EXAMPLE), call(1, "GET", EXAMPLE)])
    proc, events = world.run(
        """
        import http.client, ssl
        conn = http.client.HTTPSConnection("api.example.test", timeout=10,
                                           context=ssl.create_default_context())
        socks = []
        for _ in range(2):
            conn.request("GET", "/v1/things/1")
            r = conn.getresponse()
            print(r.status, len(r.read()))
            socks.append(conn.sock)
        print("one connection" if socks[0] is socks[1] else "reconnected")
        """,
        world.env(),
    )
    assert proc.stdout.splitlines() == [f"200 {len(THING)}"] * 2 + ["one connection"], proc.stderr
    assert len(served(world.book.end())) == 2
    connects = [e for e in events if e["event"] == "net" and e["action"] == "redirect"]
    assert len(connects) == 1


def test_a_call_recorded_as_a_timeout_is_held_over_tls(world: World) -> None:
    world.book.begin([call(0, "GET", EXAMPLE, error="timeout")])
    proc, _ = world.run(
        f"""
        import time, requests
        started = time.monotonic()
        try:
            requests.get("{EXAMPLE}", timeout=0.5)
            print("answered")
        except requests.exceptions.ReadTimeout:
            print("timed out", time.monotonic() - started < 5)
        """,
        world.env(),
    )
    assert proc.stdout.strip() == "timed out True", proc.stderr
    [effect] = world.book.end()
    assert effect.outcome is Outcome.HELD


# --- the stub itself (in this process, straight to its loopback port) --------------------


def client_context(ca: IncidentCA) -> ssl.SSLContext:
    return ssl.create_default_context(cadata=ca.ca_pem.decode())  # our CA only


def test_a_failed_handshake_closes_only_that_connection(world: World) -> None:
    stub = world.stubs["api.example.test"]
    world.book.begin([call(0, "GET", EXAMPLE)])
    with socket.create_connection(stub.address, timeout=5) as plain:
        plain.sendall(b"GET /v1/things/1 HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
        try:
            answer = plain.recv(100)
        except ConnectionResetError:  # closed with our request unread
            answer = b""
        assert answer == b""  # not TLS: closed without an answer
    with (
        socket.create_connection(stub.address, timeout=5) as raw,
        client_context(world.ca).wrap_socket(raw, server_hostname="api.example.test") as tls,
    ):
        tls.sendall(b"GET /v1/things/1 HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
        assert tls.recv(100).startswith(b"HTTP/1.1 200 ")
    assert served(world.book.end()) == [f"GET {EXAMPLE}"]


class WatchedBook(ReplayBook):
    """A book that says when a stub has asked it for a reply."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = threading.Event()

    def serve(self, live: LiveRequest) -> Reply:
        try:
            return super().serve(live)
        finally:
            self.asked.set()


def test_closing_the_stub_ends_held_and_idle_tls_connections(ca: IncidentCA) -> None:
    book = WatchedBook()
    book.begin([call(0, "GET", EXAMPLE, error="timeout")])
    baseline = set(threading.enumerate())
    stub = HttpStub(
        Endpoint("api.example.test", 443, "https"), book, ca.server_context("api.example.test")
    )
    idle = socket.create_connection(stub.address, timeout=5)  # never says hello
    held = client_context(ca).wrap_socket(
        socket.create_connection(stub.address, timeout=5), server_hostname="api.example.test"
    )
    try:
        held.sendall(b"GET /v1/things/1 HTTP/1.1\r\nHost: api.example.test\r\n\r\n")
        assert book.asked.wait(5)  # the stub holds the request now
        serving = [t for t in threading.enumerate() if t not in baseline]
        assert len(serving) == 3  # the accept loop and one thread per connection
        started = time.monotonic()
        stub.close()
        assert time.monotonic() - started < 2
        assert idle.recv(100) == b""
        try:
            data = held.recv(100)
        except (ssl.SSLError, ConnectionError):
            data = b""
        assert data == b""  # ended without an answer
        for thread in serving:
            thread.join(timeout=2)
            assert not thread.is_alive()
        [effect] = book.end()
        assert effect.outcome is Outcome.HELD
    finally:
        stub.close()
        idle.close()
        held.close()


# --- the trust files and the hook on their own (no network) -------------------------------


def test_trust_files_and_env(tmp_path: Path, ca: IncidentCA) -> None:
    files = ca.write_files(tmp_path)
    assert files.ca.read_bytes() == ca.ca_pem
    bundle = files.bundle.read_bytes()
    assert bundle.endswith(ca.ca_pem)
    assert bundle.count(b"BEGIN CERTIFICATE") > 1  # the default roots are kept
    env = trust_env(files, pythonpath="/srv/app")
    assert {env[k] for k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")} == {
        str(files.bundle)
    }
    assert env["NODE_EXTRA_CA_CERTS"] == env[CA_ENV] == str(files.ca)
    hook_dir, rest = env["PYTHONPATH"].split(os.pathsep)
    assert (Path(hook_dir) / "sitecustomize.py").is_file() and rest == "/srv/app"
    assert trust_env(files)["PYTHONPATH"] == hook_dir


def python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_the_hook_chains_to_the_sitecustomize_it_shadows(world: World) -> None:
    other = world.tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("MARK = 'the other one ran'\n")
    env = world.env(variables=False)
    env["PYTHONPATH"] += os.pathsep + str(other)
    proc = python(
        """
        import ssl, sys, certifi, sitecustomize
        print(sitecustomize.MARK)
        print(any("sitecustomize" in p or p.endswith("hooks") for p in sys.path))
        context = ssl.create_default_context(cafile=certifi.where())
        print(any(dict(c["subject"][0]).get("organizationName") == "pytest-incident"
                  for c in context.get_ca_certs()))
        """,
        env,
    )
    assert proc.stdout.split("\n")[:3] == ["the other one ran", "False", "True"], proc.stderr
    assert proc.stderr == ""


def test_the_hook_never_breaks_the_target(world: World) -> None:
    other = world.tmp_path / "other"
    other.mkdir()
    (other / "sitecustomize.py").write_text("raise RuntimeError('broken elsewhere')\n")
    env = world.env(variables=False)
    env[CA_ENV] = str(world.tmp_path / "missing.pem")
    env["PYTHONPATH"] += os.pathsep + str(other)
    proc = python("import ssl; ssl.create_default_context(); print('still running')", env)
    assert proc.returncode == 0 and proc.stdout == "still running\n"
    assert proc.stderr.splitlines() == [
        "pytest-incident trust hook: the incident CA is not trusted: "
        "FileNotFoundError(2, 'No such file or directory')",
        "pytest-incident trust hook: the next sitecustomize failed: "
        "RuntimeError('broken elsewhere')",
    ]
