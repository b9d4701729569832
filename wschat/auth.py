"""Signed chat tokens: issue one for a name, verify one presented with a connection.

A token is a JWT (RFC 7519, HS256, via PyJWT) with ``sub`` — the NFKC-normalised user name —
``iat`` and ``exp``. It is signed with a key derived from the server's ``--secret``
(SHA-256 over a fixed label and the secret), so a short secret still gives a full-length
HMAC key and a token cannot be replayed against another use of the same secret. Its
characters are those of base64url plus ``.``, all HTTP token characters, so it can travel in
``Authorization: Bearer``, in a ``Sec-WebSocket-Protocol`` entry or in a query string.

Imports only the standard library, PyJWT and ``wschat.protocol``/``wschat.errors``; no
server stack, so ``wschat token`` stays light.
"""

from __future__ import annotations

import hashlib
import re
import time

import jwt

from wschat.errors import AuthError, ConfigError, ProtocolError
from wschat.protocol import check_name

ALGORITHM = "HS256"
TOKEN_SUBPROTOCOL_PREFIX = "wschat.token."  # browsers: new WebSocket(url, ["wschat.v1", ...])
DEFAULT_TTL_S = 3600.0
_KEY_LABEL = b"wschat chat token v1\x00"
_TTL_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class Reason:
    """Why a token was refused; each maps to an HTTP status in ``wschat.server.guard``."""

    MISSING = "missing"
    EXPIRED = "expired"
    INVALID = "invalid"  # forged, malformed or signed with another secret
    WRONG_NAME = "wrong_name"  # valid, but for another name than the path's


def _key(secret: str) -> bytes:
    return hashlib.sha256(_KEY_LABEL + secret.encode()).digest()


def parse_ttl(raw: str) -> float:
    """Return ``raw`` (``90``, ``30s``, ``15m``, ``1h``, ``7d``) in seconds; raise ConfigError."""
    match = _TTL_RE.match(raw)
    if match is None or float(match[1]) <= 0:
        raise ConfigError(f"invalid ttl {raw!r}: use a positive number with s, m, h or d")
    return float(match[1]) * _TTL_UNITS[match[2]]


def issue_token(
    name: str, secret: str, ttl_s: float = DEFAULT_TTL_S, now: float | None = None
) -> str:
    """Return a token binding ``name`` until ``now + ttl_s``; raise ConfigError on a bad name."""
    if not secret:
        raise ConfigError("the secret must not be empty")
    try:
        subject = check_name(name)
    except ProtocolError as exc:
        raise ConfigError(f"invalid name {name!r}: {exc.detail}") from None
    issued = int(time.time() if now is None else now)
    claims = {"sub": subject, "iat": issued, "exp": issued + max(1, round(ttl_s))}
    return jwt.encode(claims, _key(secret), algorithm=ALGORITHM)


def verify_token(token: str | None, secret: str, name: str, now: float | None = None) -> str:
    """Return the name ``token`` binds if it is valid now and binds ``name``; else raise AuthError.

    ``name`` is compared after NFKC normalisation, as the chat compares names.
    """
    return verify_grant(token, secret, name, now)[0]


def verify_grant(
    token: str | None, secret: str, name: str, now: float | None = None
) -> tuple[str, int]:
    """Return the name ``token`` binds and its ``exp`` (Unix seconds); raise as ``verify_token``.

    The server closes a connection at ``exp`` (close 4011, docs/protocol.md).
    """
    if not token:
        raise AuthError(Reason.MISSING, "a token is required")
    options = {"require": ["sub", "exp"]}
    try:
        claims = jwt.decode(
            token,
            _key(secret),
            algorithms=[ALGORITHM],
            options=options,  # type: ignore[arg-type]
            leeway=0,
        )
    except jwt.ExpiredSignatureError:
        raise AuthError(Reason.EXPIRED, "the token has expired") from None
    except jwt.InvalidTokenError:
        raise AuthError(Reason.INVALID, "the token is not valid") from None
    if now is not None and claims["exp"] <= now:  # a caller-given clock (tests) is stricter
        raise AuthError(Reason.EXPIRED, "the token has expired")
    subject = claims["sub"]
    try:
        wanted = check_name(name)
        bound = check_name(subject)
    except ProtocolError:
        raise AuthError(Reason.WRONG_NAME, "the token is not for this name") from None
    if bound != wanted:
        raise AuthError(Reason.WRONG_NAME, "the token is not for this name")
    return bound, int(claims["exp"])
