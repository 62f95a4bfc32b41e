# `source:` a frozen events file beside the YAML, or a `scheme://location`. Only a reference:
# which event source reads it, and whether it can, is the source registry's to say
# (pytest_incident.events.sources), at this line. One rule holds for every scheme: a URL's
# password is never written in the file (it would land in the repository), only `${VAR}`
# (checked on the text as written, before the environment is expanded).
from __future__ import annotations

import re
from pathlib import Path

from pytest_incident.model.spec import SourceRef
from pytest_incident.spec.reader import SectionReader
from pytest_incident.spec.section import Section

NAME_MAX = 255  # bytes of one file name (Linux)
PATH_MAX = 4096  # bytes of a path, with its NUL (Linux)
_SCHEME_RE = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
# user info as written: a user (plain, or ${VAR} pieces), then `:password` when there is one
_USER_INFO_RE = re.compile(r"(?:\$\{[^}]*\}|[^:@/?#])*(?::(?P<password>[^@/?#]*))?")
_ENV_ONLY_RE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")
# `user:password@` whose password holds `/`, `?` or `#`; and what reads as `host:port/path`
_EARLY_PASSWORD_RE = re.compile(r"(?:\$\{[^}]*\}|[^:@/?#])*:((?:\$\{[^}]*\}|[^@])*)@")
_PORT_THEN_PATH_RE = re.compile(r"[0-9]*(?:[/?#].*)?", re.S)
PASSWORD_ENV = "PYTEST_INCIDENT_CLICKHOUSE_PASSWORD"


def parse(reader: SectionReader, text: str) -> SourceRef | None:
    line = reader.span(("source",))[0]
    stripped = text.strip()
    if not stripped:
        reader.fail(("source",), "expected a frozen events file or a scheme://location")
        return None
    scheme = _SCHEME_RE.match(stripped)
    if scheme:
        written = reader.doc.raw.get(("source",), stripped).strip()
        if _written_password(written):
            reader.fail(
                ("source",),
                "the URL holds a password: written in the incident file it lands in the "
                "repository; write user:${VAR}@ to take it from the environment variable VAR"
                f" (or, for clickhouse://, set {PASSWORD_ENV})",
            )
            return None
        return SourceRef(scheme.group(1).lower(), stripped, stripped, line)
    file = (reader.base / stripped).absolute()
    problem = _file_name_problem(file)
    if problem:
        reader.fail(("source",), problem)
        return None
    return SourceRef("file", str(file), stripped, line)


def _written_password(url: str) -> bool:
    """Whether `scheme://user:password@...` holds a password other than one `${VAR}`; also
    one that holds `/`, `?` or `#` (which end a URL's authority early: `user:pa/ss@host`
    reads as host `user`, port `pa`), unless what follows the `:` reads as a port."""
    rest = url.split("://", 1)[1] if "://" in url else ""
    authority = re.match(r"(?:\$\{[^}]*\}|[^/?#])*", rest)
    netloc = authority.group(0) if authority else ""
    if "@" not in netloc:
        early = _EARLY_PASSWORD_RE.match(rest)
        if early is None or _PORT_THEN_PATH_RE.fullmatch(early.group(1)):
            return False
        return not _ENV_ONLY_RE.fullmatch(early.group(1))
    info = _USER_INFO_RE.fullmatch(netloc.rsplit("@", 1)[0])
    password = info.group("password") if info else "?"
    return bool(password) and not _ENV_ONLY_RE.fullmatch(password or "")


def userinfo_end(url: str) -> int:
    """Where the user info of `scheme://user:password@host...` ends (its last `@`, before
    the path), as written with `${VAR}` pieces; 0 when there is none."""
    scheme = _SCHEME_RE.match(url)
    if scheme is None:
        return 0
    authority = re.match(r"(?:\$\{[^}]*\}|[^/?#])*", url[scheme.end() :])
    netloc = authority.group(0) if authority else ""
    return scheme.end() + netloc.rfind("@") if "@" in netloc else 0


def _file_name_problem(file: Path) -> str:
    """Why `file` cannot name a file at all (decided here, without touching the disk: the
    event source that opens it later must not meet ENAMETOOLONG or a NUL)."""
    if "\0" in str(file):
        return "the path contains a NUL character (\\0)"
    if any(len(part.encode()) > NAME_MAX for part in file.parts):
        return f"a part of the path is longer than {NAME_MAX} bytes"
    if len(str(file).encode()) >= PATH_MAX:
        return f"the path is longer than {PATH_MAX - 1} bytes"
    return ""


SECTION = Section("source", "source", {"type": "string"}, parse, required=True)
