# Body canonicalisation and normalizers: what makes two request bodies "the same call" after
# a code change. Pure functions, no I/O.
#
# A body is canonicalised by its shape: JSON is parsed and re-dumped with sorted keys; a form
# (k=v&k=v, what the Stripe SDK sends) becomes sorted `k=v` lines; anything else is text.
# Normalizers (pytest_incident.model.normalizers, one protocol) then replace volatile values on
# both sides before comparison: JSON values, form fields, then the canonical text.
from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from urllib.parse import parse_qsl

from pytest_incident.model.normalizers import Normalizer, normalize_text


def _form_pairs(text: str) -> list[tuple[str, str]] | None:
    """The fields of an urlencoded form, or None when `text` is not one."""
    body = text.rstrip("&")
    if "=" not in body or any(c.isspace() for c in body):
        return None
    try:
        return parse_qsl(body, keep_blank_values=True, strict_parsing=True)
    except ValueError:
        return None


def canonical_body(raw: bytes, normalizers: Sequence[Normalizer] = ()) -> str:
    """The body as comparable text, after the normalizers. A body that is not UTF-8 text is
    compared byte for byte (as base64); normalizers do not apply to it."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "base64:" + base64.b64encode(raw).decode("ascii")
    stripped = text.strip()
    canonical: str
    try:
        parsed = json.loads(stripped) if stripped[:1] in ("{", "[") else None
    except json.JSONDecodeError:
        parsed = None
    if parsed is not None:
        for normalizer in normalizers:
            parsed = normalizer.normalize_json(parsed)
        canonical = json.dumps(parsed, sort_keys=True, indent=1, ensure_ascii=False)
    elif (pairs := _form_pairs(stripped)) is not None:
        for normalizer in normalizers:
            pairs = normalizer.normalize_form(pairs)
        canonical = "\n".join(f"{k}={v}" for k, v in sorted(pairs))
    else:
        canonical = text
    return normalize_text(tuple(normalizers), canonical)
