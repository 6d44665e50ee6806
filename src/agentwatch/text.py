"""Quoting what a client sent in an error message or a log line, without letting it grow them."""

from __future__ import annotations

from typing import Any


def brief(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_text(value: str) -> bool:
    """Whether ``value`` is Unicode text: JSON admits lone surrogates, which no UTF-8 text (and no
    SQLite query parameter) can hold."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
