"""The per-socket handlers: accept, check, set up, act on each message; nothing else.

Each handler accepts the socket, checks what the client asked for, makes its connection
(a ``Member`` for chat) and hands it to ``conn.reader.serve_connection``, the one read loop,
which also cleans up whatever ends the connection. Here live the echo handlers,
``ChatEndpoint`` (the article's plain text and ``wschat.v1``), the per-message ``rate_limit``
and the one open and close log line per connection. Every reply goes through the hub
(``Hub.send``), so a full outbox closes the peer 4001.

Imports the chat layer, the connection layer, the guard's scope keys and the transport's
``HandshakeSocket`` (what ``routing`` and FastAPI's ``/echo`` hand over); nothing imports this
module but ``app``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from urllib.parse import parse_qsl

from wschat.errors import ProtocolError, Unavailable
from wschat.protocol import (
    DEFAULT_ROOM,
    MAX_EPOCH_CHARS,
    SUBPROTOCOL,
    CloseCode,
    Dm,
    ErrorCode,
    Join,
    Rooms,
    Say,
    Who,
    check_name,
    check_room,
    decode_command,
    echo_bytes,
    echo_text,
    error_event,
)
from wschat.ratelimit import RateLimiter, Verdict
from wschat.rooms import Claim, ClaimResult
from wschat.server.chat.member import Member
from wschat.server.chat.service import ChatService
from wschat.server.conn.connection import Connection, peer_of
from wschat.server.conn.hub import Hub
from wschat.server.conn.outgoing import Outgoing, text_frame
from wschat.server.conn.reader import OnFrame, serve_connection
from wschat.server.guard import LEASE_SCOPE_KEY, TOKEN_EXP_SCOPE_KEY, USER_SCOPE_KEY, Lease
from wschat.server.settings import ServerSettings
from wschat.server.transport.asgi import AsgiEvent, HandshakeSocket

# The close reason (1013) of a new name that the shared registry cannot confirm (Redis away).
UNCONFIRMED_NAME = "name cannot be confirmed now (shared registry unavailable): try again"

log = logging.getLogger("wschat.server")


def _lease(websocket: HandshakeSocket) -> Lease | None:
    """Return the guard's lease of this socket, kept for the reader to release at the end."""
    lease = websocket.scope.get(LEASE_SCOPE_KEY)
    if not isinstance(lease, Lease):
        return None
    lease.kept = True
    return lease


def log_open(conn: Connection, kind: str, user: str, room: str | None) -> None:
    """Log the one line per opened connection (never message text, never the query)."""
    if not log.isEnabledFor(logging.INFO):
        return  # nor build it when it is not logged (once per connect)
    peer = conn.peer
    log.info(
        "open %s room=%s peer=%s protocol=%s",
        user,
        room,
        peer,
        kind,
        extra={"event": "open", "user": user, "room": room or "", "peer": peer},
    )


def log_close(user: str, room: str | None, peer: str, code: int | None) -> None:
    """Log the one line per closed connection (never message text, never the query)."""
    if not log.isEnabledFor(logging.INFO):
        return
    log.info(
        "close %s room=%s peer=%s code=%s",
        user,
        room,
        peer,
        code,
        extra={
            "event": "close",
            "user": user,
            "room": room or "",
            "peer": peer,
            "code": code if code is not None else 1006,
        },
    )


class EchoHandler:
    """Serve an echo socket: each message back through ``reply(message)``; one per route."""

    def __init__(self, hub: Hub, settings: ServerSettings, *, raw: bool) -> None:
        self.hub = hub
        self.settings = settings
        self.raw = raw
        self._handle = self._on_frame  # one bound method for every socket of this route

    async def __call__(self, websocket: HandshakeSocket) -> None:
        await websocket.accept()
        s = self.settings
        conn = Connection(
            websocket,
            "echo",
            outbox_size=s.outbox_size,
            outbox_bytes=s.outbox_bytes,
            close_timeout_s=s.close_timeout_s,
            coalescer=self.hub.coalescer,
        )
        lease = _lease(websocket)
        log_open(conn, "echo", "echo", None)
        await serve_connection(conn, self.hub, self._handle, self._ended, lease)

    def _on_frame(self, conn: Connection, message: AsgiEvent) -> None:
        """Answer one message; nothing to await, so the reader runs it without a task."""
        text = message.get("text")
        data = message.get("bytes") or b""
        if self.raw:
            reply = Outgoing(text) if text is not None else Outgoing(data=data)
        elif text is not None:
            reply = Outgoing(echo_text(text))
        else:
            reply = Outgoing(data=echo_bytes(data))
        self.hub.send(conn, reply)

    @staticmethod
    def _ended(conn: Connection, code: int | None) -> None:
        """Log the end; nothing to undo: an echo socket holds no name and no room."""
        log_close(conn.label, None, conn.peer, code)


async def _refuse(websocket: HandshakeSocket, code: int, reason: str) -> None:
    # Close reasons are limited to 123 bytes (RFC 6455 §5.5).
    peer = peer_of(websocket.scope)
    log.info(
        "refused peer=%s code=%d: %s",
        peer,
        code,
        reason,
        extra={"event": "refused", "peer": peer, "code": int(code)},
    )
    await websocket.close(code, reason.encode()[:123].decode(errors="ignore"))


def _signed_in(websocket: HandshakeSocket, name: str) -> bool:
    return bool(websocket.scope.get(USER_SCOPE_KEY) == name)


def _expire_with_token(chat: ChatService, websocket: HandshakeSocket, conn: Member) -> None:
    """Have ``conn`` closed 4011 when the token it was admitted with expires (issue 15)."""
    exp = websocket.scope.get(TOKEN_EXP_SCOPE_KEY)
    if isinstance(exp, int) and _signed_in(websocket, conn.name):
        chat.expiries.add(conn, exp)


def _taken(name: str, lookalike: str | None) -> str:
    if lookalike is not None:
        return f"name {name!r} looks like {lookalike!r}, which is in use"
    return f"name {name!r} is taken"


def _since(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    value = int(raw)
    if value < 0:
        raise ValueError(raw)
    return value


def rate_limit(on_frame: OnFrame[Member], hub: Hub, settings: ServerSettings) -> OnFrame[Member]:
    """Return ``on_frame`` behind a per-connection rate limiter (``--rate-limit``/``--rate-burst``).

    One wrapper serves every connection; each member's limiter is made at its first message
    (``Member.limiter``), so idle sockets hold none. A message past the limit is dropped: a
    v1 client gets an ``error`` with code ``rate_limited``, a plain client (which cannot
    parse JSON) nothing. Sustained abuse closes the connection with 1008. Nobody else is
    affected: the sender's messages never reach the room.
    """
    if settings.rate_per_s <= 0:
        return on_frame

    async def limited(conn: Member, message: AsgiEvent) -> None:
        limiter = conn.limiter
        if limiter is None:
            limiter = conn.limiter = RateLimiter(settings.rate_per_s, settings.burst)
        verdict = limiter.check(time.monotonic())
        if verdict is Verdict.ALLOW:
            pending = on_frame(conn, message)
            if pending is not None:
                await pending
        elif verdict is Verdict.REFUSE:
            if conn.v1:
                detail = f"slow down: at most {settings.rate_per_s:g} messages per second"
                hub.send(conn, text_frame(error_event(ErrorCode.RATE_LIMITED, detail)))
        else:
            log.warning("closing %s: rate limit exceeded again and again", conn.name)
            conn.close(CloseCode.POLICY_VIOLATION, "rate limit exceeded")

    return limited


class ChatEndpoint:
    """Serve ``/ws/{client_id}`` for one ``ChatService``: the v1 JSON protocol if offered,
    else the article's text.

    One per app. Its per-frame handlers (behind the rate limiter) are shared by every socket,
    so an idle socket holds no closures of its own.
    """

    def __init__(self, chat: ChatService) -> None:
        self.chat = chat
        self._on_plain = rate_limit(self._plain_frame, chat.hub, chat.settings)
        self._on_v1 = rate_limit(self._v1_frame, chat.hub, chat.settings)
        self._end = self._ended  # one bound method for every socket

    def __call__(self, websocket: HandshakeSocket, client_id: str) -> Awaitable[None]:
        """Return the socket's loop as a coroutine (no frame of its own for the socket's life)."""
        if SUBPROTOCOL in websocket.scope.get("subprotocols", ()):
            return self._serve_v1(websocket, client_id)
        return self._serve_plain(websocket, client_id)

    def _member(self, websocket: HandshakeSocket, name: str, room: str, *, v1: bool) -> Member:
        s = self.chat.settings
        return Member(
            websocket,
            name,
            room,
            v1=v1,
            outbox_size=s.outbox_size,
            outbox_bytes=s.outbox_bytes,
            close_timeout_s=s.close_timeout_s,
            coalescer=self.chat.hub.coalescer,
        )

    async def _claim(
        self, websocket: HandshakeSocket, conn: Member, token: str | None
    ) -> Claim | None:
        """Claim ``conn``'s name; None (the socket closed 1013) if it cannot be confirmed now."""
        try:
            return await self.chat.claim(conn, token, shared=_signed_in(websocket, conn.name))
        except Unavailable as exc:
            log.warning("name %r not confirmed: %s", conn.name, exc)
            await _refuse(websocket, CloseCode.TRY_AGAIN_LATER, UNCONFIRMED_NAME)
            return None

    def _ended(self, conn: Member, code: int | None) -> None:
        log_close(conn.name, conn.room, conn.peer, code)
        self.chat.leave(conn, code)

    async def _serve_plain(self, websocket: HandshakeSocket, client_id: str) -> None:
        chat = self.chat
        await websocket.accept()
        try:
            name = check_name(client_id)
            room = check_room(_query(websocket).get("room") or DEFAULT_ROOM)
        except ProtocolError as exc:
            await _refuse(websocket, CloseCode.INVALID_NAME, exc.detail)
            return
        conn = self._member(websocket, name, room, v1=False)
        claim = await self._claim(websocket, conn, None)
        if claim is None:
            return
        if claim.result is ClaimResult.TAKEN:
            await _refuse(websocket, CloseCode.NAME_TAKEN, _taken(name, claim.lookalike))
            return
        chat.enter_plain(conn)
        _expire_with_token(chat, websocket, conn)
        lease = _lease(websocket)
        log_open(conn, "plain", name, room)
        await serve_connection(conn, chat.hub, self._on_plain, self._end, lease)

    async def _plain_frame(self, conn: Member, message: AsgiEvent) -> None:
        text = message.get("text")
        if text is None:
            conn.close(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported here")
            return
        await self.chat.say(conn, text)

    async def _serve_v1(self, websocket: HandshakeSocket, client_id: str) -> None:
        chat = self.chat
        await websocket.accept(subprotocol=SUBPROTOCOL)
        params = _query(websocket)
        try:
            name = check_name(client_id)
            room = check_room(params.get("room") or DEFAULT_ROOM)
            since = _since(params.get("since"))
        except ProtocolError as exc:
            await _refuse(websocket, CloseCode.INVALID_NAME, exc.detail)
            return
        except ValueError:
            await _refuse(
                websocket, CloseCode.POLICY_VIOLATION, "since must be a non-negative integer"
            )
            return
        conn = self._member(websocket, name, room, v1=True)
        claim = await self._claim(websocket, conn, params.get("resume"))
        if claim is None:
            return
        if claim.result is ClaimResult.TAKEN or claim.holder is None:
            await _refuse(websocket, CloseCode.NAME_TAKEN, _taken(name, claim.lookalike))
            return
        token = claim.holder.token
        epoch = (params.get("epoch") or "")[:MAX_EPOCH_CHARS] or None  # compared, never stored
        del params, claim  # not kept for the life of the socket
        try:
            await chat.enter(conn, since, token, epoch)  # registers conn in its room
        except BaseException:
            chat.hub.remove(conn, None)
            chat.leave(conn, None)
            raise
        _expire_with_token(chat, websocket, conn)
        lease = _lease(websocket)
        log_open(conn, "v1", name, conn.room)
        await serve_connection(conn, chat.hub, self._on_v1, self._end, lease)

    async def _v1_frame(self, conn: Member, message: AsgiEvent) -> None:
        chat = self.chat
        text = message.get("text")
        if text is None:
            error = error_event(ErrorCode.BINARY_UNSUPPORTED, "send JSON in text frames")
            chat.hub.send(conn, text_frame(error))
            return
        try:
            command = decode_command(text)
        except ProtocolError as exc:
            chat.hub.send(conn, text_frame(error_event(exc.code, exc.detail)))
            return
        match command:
            case Say(text=said, action=action, cid=cid):
                await chat.say(conn, said, action, cid)
            case Dm(to=to, text=said):
                await chat.dm(conn, to, said)
            case Join(room=new_room, since=since, epoch=epoch):
                await chat.move(conn, new_room, since, epoch)
            case Who():
                chat.who(conn)
            case Rooms():
                await chat.list_rooms(conn)


def _query(websocket: HandshakeSocket) -> dict[str, str]:
    """Return the handshake's query parameters, the last value of each name (as Starlette's
    ``QueryParams.get`` reads them), parsed afresh: nothing is cached on the socket."""
    query = bytes(websocket.scope.get("query_string") or b"").decode("latin-1")
    return dict(parse_qsl(query, keep_blank_values=True))
