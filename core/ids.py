"""Trace and span ids to the one spelling SPAN_SCHEMA uses: lower-case hex, 32 / 16 chars.

OTLP JSON should carry hex (any case), but protojson producers (and Tempo's API)
write the bytes as base64; Zipkin and Jaeger's legacy JSON drop leading zeros.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re

import numpy as np

TRACE_HEX = 32
SPAN_HEX = 16

_HEX = re.compile(r"[0-9a-fA-F]+")


class BadId(ValueError):
    """An id that is neither hex nor base64 of the right size, or all zeros."""


def _from_bytes(raw: bytes, hex_len: int, text: str) -> str:
    if len(raw) != hex_len // 2:
        raise BadId(f"id {text!r} decodes to {len(raw)} bytes, expected {hex_len // 2}")
    out = raw.hex()
    if not raw.strip(b"\0"):
        raise BadId(f"id {text!r} is all zeros")
    return out


def normalise(text: object, hex_len: int) -> str:
    """Return the id as lower-case hex of `hex_len` chars; raise BadId otherwise.

    Accepted: exactly `hex_len` hex digits (any case), or standard/url-safe base64
    of `hex_len // 2` bytes. All-zero ids are invalid in OTLP and W3C, so they are refused.
    """
    if not isinstance(text, str) or not text:
        raise BadId(f"id is missing or not a string: {text!r}")
    if len(text) == hex_len and _HEX.fullmatch(text):
        if text.strip("0") == "":
            raise BadId(f"id {text!r} is all zeros")
        return text.lower()
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise BadId(f"id {text!r} is neither {hex_len}-digit hex nor base64") from None
    return _from_bytes(raw, hex_len, text)


def from_raw(raw: bytes, hex_len: int) -> str:
    """Id bytes from protobuf to hex; raise BadId on a wrong size or all zeros."""
    return _from_bytes(raw, hex_len, raw.hex())


def pad_hex(text: object, hex_len: int) -> str | None:
    """Zipkin / Jaeger legacy ids: hex that may be shorter than `hex_len` (leading zeros dropped).

    Returns None when the text is not hex (the caller decides what to do with it).
    """
    if not isinstance(text, str) or not text or len(text) > hex_len or not _HEX.fullmatch(text):
        return None
    if text.strip("0") == "":
        return None
    return text.lower().rjust(hex_len, "0")


def hashed(text: str, hex_len: int, salt: str = "") -> str:
    """A stable hex id derived from an opaque label (used for non-hex ids of hand-made test traces)."""
    return hashlib.blake2b((salt + text).encode(), digest_size=hex_len // 2).hexdigest()


_UNHEX_BLOCK = 1 << 18  # bytes per step: the temporaries stay in the CPU cache


def unhex(raw: np.ndarray, lower_only: bool) -> np.ndarray | None:
    """Bytes from ASCII hex digits (an even count), block by block; None if any byte is not a
    hex digit (with `lower_only`, upper-case digits count as not). No Python loop per id."""
    out = np.empty(len(raw) // 2, np.uint8)
    digit = np.empty(min(len(raw), _UNHEX_BLOCK), np.uint8)
    letter = np.empty_like(digit)
    ok = np.empty(len(digit), dtype=bool)
    bad = np.empty_like(ok)
    for lo in range(0, len(raw), _UNHEX_BLOCK):
        r = raw[lo : lo + _UNHEX_BLOCK]
        m = len(r)
        d, e, k, b = digit[:m], letter[:m], ok[:m], bad[:m]
        # '0'-'9' -> 0-9 and 'a'-'f' (and 'A'-'F') -> 10-15 by wrapping uint8 arithmetic; the other
        # reading of each byte wraps to >= 217, so the smaller one is the digit
        np.subtract(r, np.uint8(48), out=d)
        if lower_only:
            np.subtract(r, np.uint8(87), out=e)
        else:
            np.bitwise_or(r, np.uint8(0x20), out=e)
            np.subtract(e, np.uint8(87), out=e)
        np.less_equal(d, np.uint8(9), out=k)
        np.subtract(e, np.uint8(10), out=b.view(np.uint8))
        np.less_equal(b.view(np.uint8), np.uint8(5), out=b)
        np.logical_or(k, b, out=k)
        if not k.all():
            return None
        np.minimum(d, e, out=d)
        o = out[lo // 2 : (lo + m) // 2]
        np.left_shift(d[0::2], np.uint8(4), out=o)
        np.bitwise_or(o, d[1::2], out=o)
    return out


def hex_u64(raw: np.ndarray, lower_only: bool) -> tuple[np.ndarray, bool] | None:
    """Runs of 16 hex digits (uint8 ASCII) as uint64 words, and whether any digit was upper case;
    None if a byte is not a hex digit (upper case counts as not with `lower_only`)."""
    if len(raw) % 16:
        return None
    packed = unhex(raw, lower_only)
    if packed is None:
        return None
    has_upper = (not lower_only) and bool(np.any((raw - np.uint8(65)) <= 5))
    return packed.view(">u8").astype(np.uint64), has_upper
