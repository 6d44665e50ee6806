"""The token file and the handshake checks: ``Authorization: Bearer`` (401) and Origin (403)."""

from __future__ import annotations

import contextlib
import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from agentwatch.file_errors import explain
from agentwatch.safe_write import make_private_dir


class TokenFileError(Exception):
    """The token file cannot be created or read; the message says what to do."""


def ensure_token(path: Path) -> str:
    """Return the token in ``path``, creating the file (mode 0600, random token) if absent.

    The file appears whole or not at all: it is written under a new random name (nothing planted
    there is followed) and linked into place, so a token another process made first wins.
    """
    try:
        make_private_dir(path.parent)
    except OSError as exc:
        raise _cannot_create(path, exc) from None
    if path.exists():
        return read_token(path)
    token = secrets.token_urlsafe(32)
    partial = path.with_name(f".{path.name}.{secrets.token_hex(6)}.partial")
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise _cannot_create(path, exc) from None
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(token + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(partial, path)
    except FileExistsError:  # another process created it first: use theirs
        return read_token(path)
    except OSError as exc:
        raise _cannot_create(path, exc) from None
    finally:
        with contextlib.suppress(OSError):  # on a read-only file system even an absent file's unlink fails
            partial.unlink(missing_ok=True)
    return token


def _cannot_create(path: Path, exc: OSError) -> TokenFileError:
    return TokenFileError(f"cannot create token file {path}: {explain(exc, path)}")


def read_token(path: Path) -> str:
    """Read a token file; an empty or unreadable one is an error naming the file."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise TokenFileError(f"cannot read token file {path}: {explain(exc, path)}") from None
    if not token:
        raise TokenFileError(f"token file {path} is empty; delete it and a new token is created at start")
    return token


class HandshakeGuard:
    """Decides whether a WebSocket handshake may proceed: ``None`` or an HTTP status to reject with."""

    def __init__(self, token: str | None, allowed_origins: Iterable[str]) -> None:
        self._expected = token.encode() if token is not None else None
        self._origins = {origin.encode() for origin in allowed_origins}

    def allowing(self, allowed_origins: Iterable[str]) -> HandshakeGuard:
        """The same token check with other allowed origins (a reload)."""
        guard = HandshakeGuard(None, allowed_origins)
        guard._expected = self._expected
        return guard

    def check(self, headers: Iterable[tuple[bytes, bytes]]) -> int | None:
        """401 without the right bearer token (when auth is on), 403 for a foreign Origin."""
        authorization = origin = None
        for name, value in headers:
            lowered = name.lower()
            if lowered == b"authorization":
                authorization = value.strip()
            elif lowered == b"origin":
                origin = value.strip()
        if origin is not None and origin not in self._origins:
            return 403
        if self._expected is not None and not hmac.compare_digest(bearer_token(authorization) or b"", self._expected):
            return 401
        return None


def bearer_token(authorization: bytes | None) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header value; the scheme's case does not
    matter (RFC 7235, 2.1), nor the spaces after it."""
    if authorization is None:
        return None
    scheme, _, token = authorization.partition(b" ")
    return token.strip(b" ") if scheme.lower() == b"bearer" else None
