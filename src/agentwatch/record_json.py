"""An agent's record as the JSON text the store keeps: compact, and always storable."""

from __future__ import annotations

from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any


def _compact_encoder(escape: Callable[[str], str]) -> Callable[[Any], str]:
    """Compact JSON, from the C encoder made once: ``JSONEncoder.encode`` builds a new one on
    every call, which cost as much as the encoding itself for a typical record. Records come
    from the JSON parser, so they hold no cycles, NaN or other objects."""

    def unencodable(value: Any) -> Any:
        raise TypeError(f"{type(value).__name__} is not JSON")

    encode = c_make_encoder(None, unencodable, escape, None, ":", ",", False, False, False)
    return lambda data: "".join(encode(data, 0))


# Records are stored compact, as UTF-8; a record with a lone surrogate (which JSON admits and
# UTF-8 cannot hold) is stored with ASCII escapes instead, so it survives exactly too.
_encode_utf8 = _compact_encoder(encode_basestring)
_encode_ascii = _compact_encoder(encode_basestring_ascii)


def encode_record(data: Any) -> str:
    """The record as compact JSON text that SQLite can store."""
    text = _encode_utf8(data)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return _encode_ascii(data)
    return text
