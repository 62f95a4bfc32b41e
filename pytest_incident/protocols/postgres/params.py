# PostgreSQL wire protocol (3.0), bound parameters: a Bind's values as the text the server
# would print for them, so a recorded write reads the same whichever format the driver chose.
#
# Strategy: text-format values are decoded as sent, in the client encoding; binary ones are
# decoded by their type OID (from the Parse) for the common types, rendered the way the
# server's output functions do (float8out/float4out digits, numeric, dates and timestamps,
# timestamptz in UTC, uuid, jsonb); any other binary value is shown as bytea hex "\\x...".
# `_ENCODINGS` maps the server's client_encoding names to Python codecs.
#
# Invariants: `param_text` never raises on a malformed binary value (it falls back to the hex
# form), keeps NULL as None, and depends on no other layer of the parser.
from __future__ import annotations

import datetime
import math
import struct
import uuid
from collections.abc import Callable

_EPOCH = datetime.datetime(2000, 1, 1)
_INT64_MAX, _INT64_MIN = 2**63 - 1, -(2**63)
_INT32_MAX, _INT32_MIN = 2**31 - 1, -(2**31)


def _float_text(value: float, single: bool) -> str:
    """float8out/float4out: the shortest digits that read back, fixed notation for decimal
    exponents from -4 up to 14 (float4: 5), else d.ddde+XX."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    value = abs(value)
    for precision in range(1, 18):
        text = f"{value:.{precision - 1}e}"
        back = float(text)
        if single:
            (back,) = struct.unpack("!f", struct.pack("!f", back))
        if back == value:
            break
    mantissa, _, exp_text = text.partition("e")
    digits = mantissa.replace(".", "").rstrip("0") or "0"
    exp = int(exp_text)
    if -4 <= exp < (6 if single else 15):
        if exp >= 0:
            whole, frac = digits[: exp + 1].ljust(exp + 1, "0"), digits[exp + 1 :]
            return sign + whole + ("." + frac if frac else "")
        return sign + "0." + "0" * (-exp - 1) + digits
    shown = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{shown}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _numeric_text(value: bytes) -> str | None:
    ndigits, weight, sign, dscale = struct.unpack_from("!hhHh", value)
    special = {0xC000: "NaN", 0xD000: "Infinity", 0xF000: "-Infinity"}
    if sign in special:
        return special[sign]
    if ndigits < 0 or dscale < 0 or len(value) != 8 + 2 * ndigits or sign not in (0, 0x4000):
        return None
    groups = struct.unpack_from(f"!{ndigits}H", value, 8)
    if any(group > 9999 for group in groups):
        return None
    digits = "".join(f"{group:04d}" for group in groups)
    point = (weight + 1) * 4  # where the decimal point falls in `digits`
    if point < 0:
        digits, point = "0" * -point + digits, 0
    digits = digits.ljust(point, "0")
    whole = digits[:point].lstrip("0") or "0"
    frac = digits[point:].ljust(dscale, "0")[:dscale]
    return ("-" if sign else "") + whole + ("." + frac if dscale else "")


def _timestamp_text(micros: int, zone: str) -> str | None:
    if micros in (_INT64_MAX, _INT64_MIN):
        return "infinity" if micros > 0 else "-infinity"
    m = _EPOCH + datetime.timedelta(microseconds=micros)
    text = f"{m.year:04d}-{m.month:02d}-{m.day:02d} {m.hour:02d}:{m.minute:02d}:{m.second:02d}"
    if m.microsecond:
        text += f".{m.microsecond:06d}".rstrip("0")
    return text + zone


def _date_text(value: bytes) -> str | None:
    (days,) = struct.unpack("!i", value)
    if days in (_INT32_MAX, _INT32_MIN):
        return "infinity" if days > 0 else "-infinity"
    return (_EPOCH.date() + datetime.timedelta(days=days)).isoformat()


def _time_text(value: bytes) -> str | None:
    (micros,) = struct.unpack("!q", value)
    seconds, micro = divmod(micros, 1_000_000)
    text = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return text + (f".{micro:06d}".rstrip("0") if micro else "")


def _text_decoder(value: bytes, encoding: str) -> str:
    return value.decode(encoding, "replace")


_Decoder = Callable[[bytes, str], str | None]
_BINARY: dict[int, _Decoder] = {
    16: lambda v, _: {b"\x01": "t", b"\x00": "f"}.get(v),  # bool
    17: lambda v, _: "\\x" + v.hex(),  # bytea
    20: lambda v, _: str(struct.unpack("!q", v)[0]),  # int8
    21: lambda v, _: str(struct.unpack("!h", v)[0]),  # int2
    23: lambda v, _: str(struct.unpack("!i", v)[0]),  # int4
    26: lambda v, _: str(struct.unpack("!I", v)[0]),  # oid
    700: lambda v, _: _float_text(struct.unpack("!f", v)[0], single=True),
    701: lambda v, _: _float_text(struct.unpack("!d", v)[0], single=False),
    1700: lambda v, _: _numeric_text(v),
    2950: lambda v, _: str(uuid.UUID(bytes=v)),
    1082: lambda v, _: _date_text(v),
    1083: lambda v, _: _time_text(v),
    1114: lambda v, _: _timestamp_text(struct.unpack("!q", v)[0], ""),
    1184: lambda v, _: _timestamp_text(struct.unpack("!q", v)[0], "+00"),  # shown in UTC
    3802: lambda v, enc: v[1:].decode(enc, "replace") if v[:1] == b"\x01" else None,  # jsonb
    # char, name, text, json, xml, unknown, bpchar, varchar
    **dict.fromkeys((18, 19, 25, 114, 142, 705, 1042, 1043), _text_decoder),
}


def param_text(value: bytes | None, binary: bool, oid: int, encoding: str = "utf-8") -> str | None:
    """One bound parameter as text: text-format ones as sent, binary ones as the server would
    print them for common types (timestamptz in UTC), else as bytea hex "\\x..."."""
    if value is None:
        return None
    if not binary:
        return value.decode(encoding, "replace")
    decoder = _BINARY.get(oid)
    if decoder is not None:
        try:
            text = decoder(value, encoding)
        except (struct.error, ValueError, OverflowError):
            text = None
        if text is not None:
            return text
    return "\\x" + value.hex()


_ENCODINGS = {
    "UTF8": "utf-8",
    "UNICODE": "utf-8",
    "SQL_ASCII": "utf-8",
    "LATIN1": "latin-1",
    "LATIN9": "iso8859-15",
    "WIN1250": "cp1250",
    "WIN1251": "cp1251",
    "WIN1252": "cp1252",
    "KOI8R": "koi8-r",
    "EUC_JP": "euc-jp",
    "SJIS": "shift-jis",
    "GBK": "gbk",
    "BIG5": "big5",
}
