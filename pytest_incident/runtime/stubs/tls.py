# TLS for the HTTP stubs: a CA made for this run (trustme), a leaf certificate per recorded
# host, and the files and environment that make a target trust that CA.
#
# Invariants: the CA's key never leaves this process and dies with it; a leaf certificate
# names exactly one recorded host (its SAN), so a stub cannot pass for another host. The
# target is made to trust the CA twice over: through the variables TLS libraries read
# (SSL_CERT_FILE and friends point at the system bundle plus our CA, so live loopback TLS
# keeps its usual roots), and through `pytest_incident/target/hooks/sitecustomize.py` on the
# target's PYTHONPATH, which adds the CA to every Python SSLContext, including those that
# load a bundle of their own (certifi, an SDK's bundled CA file).
from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

import trustme

from pytest_incident.target import HOOKS_DIR

TRUST_HOOK_DIR = HOOKS_DIR  # holds sitecustomize.py
CA_ENV = "PYTEST_INCIDENT_CA"  # read by the trust hook
BUNDLE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


@dataclass(frozen=True)
class TrustFiles:
    ca: Path  # our CA certificate only (PEM)
    bundle: Path  # the system's default roots followed by our CA (PEM)


def default_bundle() -> Path | None:
    """The CA bundle this machine's OpenSSL trusts by default, else certifi's, else None."""
    cafile = ssl.get_default_verify_paths().cafile
    if cafile and os.path.isfile(cafile):
        return Path(cafile)
    try:
        import certifi
    except ImportError:
        return None
    return Path(certifi.where())


class IncidentCA:
    """A certificate authority for one run; `server_context` gives a stub its certificate."""

    def __init__(self) -> None:
        self._ca = trustme.CA(organization_name="pytest-incident")
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    @property
    def ca_pem(self) -> bytes:
        return self._ca.cert_pem.bytes()

    def server_context(self, hostname: str) -> ssl.SSLContext:
        """A server-side context presenting a leaf certificate for `hostname` (cached)."""
        hostname = hostname.lower()
        with self._lock:
            context = self._contexts.get(hostname)
            if context is None:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.set_alpn_protocols(["http/1.1"])  # the stubs speak HTTP/1.1 only
                self._ca.issue_cert(hostname).configure_cert(context)
                self._contexts[hostname] = context
            return context

    def write_files(self, directory: Path) -> TrustFiles:
        """Write our CA, and the default bundle with our CA appended, into `directory`."""
        directory.mkdir(parents=True, exist_ok=True)
        ca = directory / "incident-ca.pem"
        ca.write_bytes(self.ca_pem)
        roots = default_bundle()
        system = roots.read_bytes() if roots is not None else b""
        if system and not system.endswith(b"\n"):
            system += b"\n"
        bundle = directory / "incident-ca-bundle.pem"
        bundle.write_bytes(system + self.ca_pem)
        return TrustFiles(ca=ca, bundle=bundle)


def trust_env(files: TrustFiles, pythonpath: str = "") -> dict[str, str]:
    """Environment for a target that must trust the CA in `files`.

    `pythonpath` is the target's PYTHONPATH otherwise; the trust hook's directory goes in
    front of it, so that its `sitecustomize` runs first (and chains to any other).
    """
    env = dict.fromkeys(BUNDLE_VARIABLES, str(files.bundle))
    env["NODE_EXTRA_CA_CERTS"] = str(files.ca)  # Node adds it to its built-in roots
    env[CA_ENV] = str(files.ca)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(TRUST_HOOK_DIR), pythonpath) if p)
    return env
