"""The record every reader yields, whatever the source format, and the safe display of raw values."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Review:
    """One user-item interaction with its review.

    ``timestamp`` is unix seconds (readers convert ms and date strings); ``rating`` may be None where the
    source has none; ``title`` (Amazon ``summary``) and ``text`` may be empty strings.
    """

    user: str
    item: str
    timestamp: int
    rating: float | None = None
    text: str = ""
    title: str = ""


# C0 / C1 controls, DEL, bidirectional overrides and isolates ("Trojan source"), lone surrogates, BOM
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufeff]")
#: characters an id may not contain: control characters (tab and newline included) and lone surrogates
ID_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: Any, limit: int = 80) -> str:
    """``value`` as text safe to print on a terminal: control characters, escape sequences, bidi controls and
    lone surrogates become ``\\xNN`` / ``\\uNNNN``; longer than ``limit`` characters is cut with ``...``."""
    text = value if isinstance(value, str) else str(value)
    cut = len(text) > limit
    if cut:
        text = text[:limit]
    text = _UNSAFE.sub(_escape, text)
    return f"{text}... ({len(value) if isinstance(value, str) else 'long'} characters)" if cut else text


def shown(value: Any, limit: int = 60) -> str:
    """A raw value quoted for an error message: ``'text'`` for strings (escaped, cut), else its ``repr`` (cut)."""
    if isinstance(value, str):
        return f"'{printable(value, limit)}'"
    return printable(repr(value), limit)
