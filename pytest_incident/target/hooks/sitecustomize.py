# pytest-incident's hooks inside the TARGET, imported by Python at startup (this directory
# is put first on its PYTHONPATH). Standard library only; imports nothing from pytest_incident.
#
# 1. Trust (PYTEST_INCIDENT_CA).
# Strategy: when PYTEST_INCIDENT_CA names a PEM file, every ssl.SSLContext also trusts that
# CA. SSL_CERT_FILE and REQUESTS_CA_BUNDLE are not enough: certifi users (httpx, urllib3 and
# requests by default) and SDKs shipping their own bundle (stripe's data/ca-certificates.crt)
# load a fixed file and never read them. Every way a context gets its roots ends in
# load_verify_locations (cafile/capath/cadata), load_default_certs or set_default_verify_paths,
# so each is wrapped: after the original call succeeds, our CA is loaded too (OpenSSL ignores
# a certificate it already holds). A context that loads no roots trusts nothing, as before.
#
# 2. Scheduled work (PYTEST_INCIDENT_SCHEDULED=hold): a replay re-runs requests, not the
# target's timers. APScheduler 3 schedulers start paused: BaseScheduler.start is patched when
# (and only if) the target imports it, so targets without it pay nothing. Other schedulers
# can check the same variable (PYTEST_INCIDENT_REPLAY=1 is set in every replay).
#
# Then the sitecustomize this one shadows, if any, is imported in its place under its own
# name. Nothing here may break the target: any failure is one line on stderr.
from __future__ import annotations

import contextlib
import functools
import importlib.machinery
import importlib.util
import os
import sys

TYPE_CHECKING = False  # typing is not imported at startup for this alone
if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable
    from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))


def _say(problem: str) -> None:
    with contextlib.suppress(Exception):
        print(f"pytest-incident trust hook: {problem}", file=sys.stderr)


def _trust(ca_pem: str) -> None:
    import ssl

    load_verify_locations = ssl.SSLContext.load_verify_locations
    warned: list[bool] = []

    def add_ca(context: ssl.SSLContext) -> None:
        try:
            load_verify_locations(context, cadata=ca_pem)
        except Exception as exc:
            if not warned:
                warned.append(True)
                _say(f"could not add the incident CA to an SSLContext: {exc!r}")

    def wrap(name: str) -> None:
        original: Callable[..., Any] = getattr(ssl.SSLContext, name)

        @functools.wraps(original)
        def wrapper(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> Any:
            result = original(self, *args, **kwargs)
            add_ca(self)
            return result

        setattr(ssl.SSLContext, name, wrapper)

    for name in ("load_verify_locations", "load_default_certs", "set_default_verify_paths"):
        wrap(name)


APSCHEDULER_BASE = "apscheduler.schedulers.base"


def _hold_apscheduler(module: Any) -> None:
    scheduler = module.BaseScheduler
    original = scheduler.start

    @functools.wraps(original)
    def start(self: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["paused"] = True
        with contextlib.suppress(Exception):
            print("pytest-incident: APScheduler started paused (sandbox.scheduled: hold)",
                  file=sys.stderr)  # fmt: skip
        return original(self, *args, **kwargs)

    scheduler.start = start


class _AfterImport:
    """A meta-path finder that runs `patch(module)` once `name` has been imported."""

    def __init__(self, name: str, patch: Callable[[Any], None]) -> None:
        self.name = name
        self.patch = patch

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # one module, once; find it with the other finders
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        exec_module = loader.exec_module
        patch = self.patch

        def exec_and_patch(module: Any) -> None:
            exec_module(module)
            try:
                patch(module)
            except Exception as exc:
                _say(f"could not hold {fullname}: {exc!r}")

        loader.exec_module = exec_and_patch  # type: ignore[method-assign]
        return spec


def _chain() -> None:
    """Import the sitecustomize found after this directory, as `sitecustomize`."""
    here = os.path.normcase(_HERE)
    path = [p for p in sys.path if os.path.normcase(os.path.abspath(p or ".")) != here]
    sys.path[:] = path  # the target sees the sys.path it would have had without us
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    ours = sys.modules.get("sitecustomize")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module  # `import sitecustomize` now yields this module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        if ours is not None:
            sys.modules["sitecustomize"] = ours
        raise


def _main() -> None:
    ca_file = os.environ.get("PYTEST_INCIDENT_CA")
    if ca_file:
        try:
            with open(ca_file, encoding="ascii") as f:
                _trust(f.read())
        except Exception as exc:
            _say(f"the incident CA is not trusted: {exc!r}")
    if os.environ.get("PYTEST_INCIDENT_SCHEDULED") == "hold":
        sys.meta_path.insert(0, _AfterImport(APSCHEDULER_BASE, _hold_apscheduler))
    try:
        _chain()
    except Exception as exc:
        _say(f"the next sitecustomize failed: {exc!r}")


_main()
