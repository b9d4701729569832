"""Who may open a WebSocket, and how fast it may talk (issue 7; see docs/security.md).

``Guard`` is an ASGI middleware in front of the app. For every WebSocket handshake, before the
app sees it, it checks in order:

1. the browser ``Origin`` (403 unless it is the server's own or allowed by ``--allow-origin``;
   Starlette's CORS middleware does not look at WebSockets);
2. the connection caps (503 when ``--max-connections`` are open, 429 when
   ``--max-connections-per-ip`` are open from the client's address);
3. with ``--secret``, the chat token of ``/ws/{name}`` (401 when missing, expired or forged,
   403 when it binds another name). The token comes from ``Authorization: Bearer T``, a
   subprotocol entry ``wschat.token.T`` (browsers cannot set headers) or ``?token=T``.

A refusal is an HTTP response sent instead of the ``101`` (the ASGI ``websocket.http.response``
extension), so a refused client never has an open socket and is delivered nothing. An admitted
handshake is counted until the app returns. The authenticated name is left in the scope under
``wschat.user`` for the handlers, the token's expiry under ``wschat.token_exp`` (the chat closes
the connection then, 4011), and its place in the caps under ``wschat.lease`` (``Lease``).

The guard works on the handshake only: it imports neither the connection layer nor the chat
layer (the per-message rate limit lives in ``handlers``). It imports the transport's ASGI
aliases, the settings and the pure core.
"""

from __future__ import annotations

import logging
from collections import Counter
from http import HTTPStatus
from urllib.parse import parse_qsl

from wschat.auth import TOKEN_SUBPROTOCOL_PREFIX, Reason, verify_grant
from wschat.errors import AuthError, WschatError
from wschat.origin import normalise_origin, origin_allowed
from wschat.server.settings import ServerSettings
from wschat.server.transport.asgi import ASGIApp, Receive, Scope, Send
from wschat.server.transport.refuse import refuse_handshake

log = logging.getLogger("wschat.server")

USER_SCOPE_KEY = "wschat.user"
TOKEN_EXP_SCOPE_KEY = "wschat.token_exp"  # the token's ``exp``, Unix seconds (an int)
LEASE_SCOPE_KEY = "wschat.lease"
CHAT_PATH_PREFIX = "/ws/"
_AUTH_STATUS = {
    Reason.MISSING: HTTPStatus.UNAUTHORIZED,
    Reason.EXPIRED: HTTPStatus.UNAUTHORIZED,
    Reason.INVALID: HTTPStatus.UNAUTHORIZED,
    Reason.WRONG_NAME: HTTPStatus.FORBIDDEN,
}


class Refusal(WschatError):
    """A handshake the guard turns away with ``status`` (caught by the guard itself)."""

    def __init__(self, status: HTTPStatus, detail: str, headers: list[tuple[str, str]]) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def presented_token(scope: Scope) -> str | None:
    """Return the token a handshake carries (header, subprotocol entry or query), if any."""
    authorization = _header(scope, b"authorization")
    if authorization is not None:
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            return credentials.strip()
    for entry in scope.get("subprotocols") or ():
        if entry.startswith(TOKEN_SUBPROTOCOL_PREFIX):
            return str(entry[len(TOKEN_SUBPROTOCOL_PREFIX) :])
    query = bytes(scope.get("query_string") or b"").decode("latin-1")
    for key, value in parse_qsl(query):
        if key == "token" and value:
            return value
    return None


class Lease:
    """An admitted WebSocket's place in the connection caps, given back once by ``release()``.

    The guard gives it back when the app returns, unless the app ``kept`` it: a chat socket
    whose reading was handed to a ``Reader`` (no task) outlives its ASGI call, and its reader
    releases the lease when the connection ends.
    """

    __slots__ = ("_guard", "_ip", "kept")

    def __init__(self, guard: Guard | None, ip: str) -> None:
        self._guard = guard
        self._ip = ip
        self.kept = False

    def release(self) -> None:
        guard, self._guard = self._guard, None
        if guard is not None:
            guard._release(self._ip)


class Guard:
    """ASGI middleware: refuse WebSocket handshakes by origin, caps and token; count the rest."""

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings
        self.allowed_origins = frozenset(
            "*" if raw.strip() == "*" else (normalise_origin(raw) or raw)
            for raw in settings.allow_origins
        )
        self.total = 0
        self.per_ip: Counter[str] = Counter()
        self.refused: Counter[int] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        ip = (scope.get("client") or ("unknown", 0))[0]
        try:
            self.check(scope, ip)
        except Refusal as refusal:
            self.refused[refusal.status] += 1
            log.info("%s - refused WebSocket handshake: %d %s", ip, refusal.status, refusal.detail)
            await refuse_handshake(scope, send, refusal.status, refusal.detail, refusal.headers)
            return
        self.total += 1
        self.per_ip[ip] += 1
        lease = scope[LEASE_SCOPE_KEY] = Lease(self, ip)
        try:
            await self.app(scope, receive, send)
        finally:
            if not lease.kept:
                lease.release()

    def _release(self, ip: str) -> None:
        self.total -= 1
        self.per_ip[ip] -= 1
        if self.per_ip[ip] <= 0:
            del self.per_ip[ip]

    def check(self, scope: Scope, ip: str) -> None:
        """Raise ``Refusal`` if this handshake may not proceed; record the user in the scope."""
        s = self.settings
        origin = _header(scope, b"origin")
        if not origin_allowed(origin, _header(scope, b"host"), self.allowed_origins):
            raise Refusal(HTTPStatus.FORBIDDEN, f"origin {origin!r} is not allowed", [])
        if s.max_connections > 0 and self.total >= s.max_connections:
            raise Refusal(
                HTTPStatus.SERVICE_UNAVAILABLE, "too many connections", [("Retry-After", "5")]
            )
        if s.max_connections_per_ip > 0 and self.per_ip[ip] >= s.max_connections_per_ip:
            raise Refusal(
                HTTPStatus.TOO_MANY_REQUESTS,
                "too many connections from this address",
                [("Retry-After", "5")],
            )
        path = str(scope.get("path") or "")
        if s.secret and path.startswith(CHAT_PATH_PREFIX) and len(path) > len(CHAT_PATH_PREFIX):
            name = path[len(CHAT_PATH_PREFIX) :]
            try:
                user, exp = verify_grant(presented_token(scope), s.secret, name)
            except AuthError as exc:
                error = "" if exc.reason == Reason.MISSING else ', error="invalid_token"'
                headers = [("WWW-Authenticate", f'Bearer realm="wschat"{error}')]
                raise Refusal(_AUTH_STATUS[exc.reason], exc.detail, headers) from None
            scope[USER_SCOPE_KEY] = user
            scope[TOKEN_EXP_SCOPE_KEY] = exp
