"""JSON as RFC 8259 has it: ``NaN``, ``Infinity`` and numbers too large for a float are refused.

Python's :func:`json.loads` accepts them, and :func:`json.dumps` would then write text no other
JSON parser reads; a record stored that way would poison every reply that carries it.
"""

from __future__ import annotations

import json
import math
from typing import Any


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text} is too large for a JSON number")
    return number


def _integer(text: str) -> int:
    """An integer that other JSON parsers can read as a double (below about 1.8e308)."""
    if len(text.lstrip("-")) > 308:
        try:
            float(int(text))
        except (OverflowError, ValueError):  # ValueError: past Python's own limit on digits
            raise ValueError(f"{text[:20]}... ({len(text)} digits) is too large for a JSON number") from None
    return int(text)


_DECODER = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite, parse_int=_integer)


def loads(text: str) -> Any:
    """Parse one JSON document strictly; ``ValueError`` says what is wrong."""
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None
