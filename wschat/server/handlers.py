"""The per-socket handlers: accept, set up, read frames, act on them, and always clean up.

Each handler accepts the socket, checks what the client asked for and registers a
``Connection``. Under wschat's own protocol the socket (chat or echo) is then ``detach``-ed:
a ``Reader`` (reader.py) gets its frames and its end by callbacks, and the handler returns,
so an idle socket holds no task. Under another ASGI server ``run_connection`` reads until
the peer disconnects. Either way, whatever ends the connection (a close, a
reset, an error) stops its outbox and removes it, so nothing outlives the socket.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.datastructures import QueryParams
from starlette.websockets import WebSocket

from wschat.errors import ProtocolError
from wschat.protocol import (
    DEFAULT_ROOM,
    SUBPROTOCOL,
    CloseCode,
    Dm,
    ErrorCode,
    Join,
    Say,
    Who,
    check_name,
    check_room,
    decode_command,
    echo_bytes,
    echo_text,
    error_event,
)
from wschat.rooms import ClaimResult
from wschat.server.chat.service import ChatService, text_frame
from wschat.server.conn.connection import Connection, Outgoing, peer_of
from wschat.server.conn.hub import Hub
from wschat.server.conn.reader import OnEnd, Reader, log_close
from wschat.server.guard import LEASE_SCOPE_KEY, USER_SCOPE_KEY, Lease, rate_limit
from wschat.server.settings import ServerSettings

log = logging.getLogger("wschat.server")

Frame = MutableMapping[str, Any]
OnFrame = Callable[[Connection, Frame], Awaitable[None]]


async def serve_connection(conn: Connection, hub: Hub, on_frame: OnFrame, on_end: OnEnd) -> None:
    """Serve an accepted ``conn`` until it ends, then call ``on_end(conn, code)`` once.

    Under wschat's protocol the reading is handed to a ``Reader`` and this returns at once
    (the socket holds no task); elsewhere it reads here (``run_connection``).
    """
    if detach(conn, hub, on_frame, on_end):
        return
    code: int | None = None
    try:
        code = await run_connection(conn, hub, on_frame)
    finally:
        on_end(conn, code)


async def run_connection(conn: Connection, hub: Hub, on_frame: OnFrame) -> int | None:
    """Read ``conn`` until it disconnects, awaiting ``on_frame`` for each data frame.

    Registers ``conn`` with the hub and takes it out at the end. Returns the close code. An
    unexpected error in ``on_frame`` is logged with its traceback and closes the socket with
    1011.
    """
    receive = conn.websocket.receive
    code: int | None = None
    _opened(conn, hub)
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                code = int(message.get("code", CloseCode.NORMAL))
                break
            if conn.close_code is not None:
                continue  # closing: ignore what the peer still sends
            try:
                await on_frame(conn, message)
            except Exception:
                log.exception("error handling a frame from %s", conn.name)
                conn.close(CloseCode.INTERNAL_ERROR, "internal error")
    finally:
        await conn.stop()
        hub.remove(conn, code)
        log_close(conn, code)
    return code


def detach(conn: Connection, hub: Hub, on_frame: OnFrame, on_end: OnEnd) -> bool:
    """Register ``conn`` and hand its reading to a ``Reader`` (no task of its own); return
    False, doing nothing, under a server without wschat's protocol (then ``run_connection``).

    ``on_end(conn, code)`` runs once the connection has ended and left the hub.
    """
    proto = conn.protocol
    if proto is None:
        return False
    lease = conn.websocket.scope.get(LEASE_SCOPE_KEY)
    if isinstance(lease, Lease):
        lease.kept = True  # released by the reader when the connection ends
    else:
        lease = None
    _opened(conn, hub)
    proto.detach(Reader(conn, proto, hub, on_frame, on_end, lease))
    return True


def _opened(conn: Connection, hub: Hub) -> None:
    """Register ``conn``, start its outbox and log the open line."""
    hub.add(conn)
    conn.start()
    # One line per open and per close; never message text, never the query (it holds tokens).
    peer = conn.peer
    kind = "v1" if conn.v1 else ("plain" if conn.room is not None else "echo")
    log.info(
        "open %s room=%s peer=%s protocol=%s",
        conn.name,
        conn.room,
        peer,
        kind,
        extra={"event": "open", "user": conn.name, "room": conn.room or "", "peer": peer},
    )


def _connection(
    websocket: WebSocket,
    name: str,
    room: str | None,
    s: ServerSettings,
    hub: Hub,
    *,
    v1: bool = False,
) -> Connection:
    return Connection(
        websocket,
        name,
        room,
        v1=v1,
        outbox_size=s.outbox_size,
        close_timeout_s=s.close_timeout_s,
        coalescer=hub.coalescer,
    )


def _offer_or_drop(hub: Hub, conn: Connection, frame: Outgoing) -> None:
    hub.deliver_each([(conn, frame)])


async def serve_echo(websocket: WebSocket, hub: Hub, settings: ServerSettings) -> None:
    """Echo each frame back as ``You said: ...``: text as text, binary as binary."""
    await websocket.accept()

    async def on_frame(conn: Connection, message: Frame) -> None:
        text = message.get("text")
        if text is not None:
            reply = Outgoing(echo_text(text))
        else:
            reply = Outgoing(data=echo_bytes(message.get("bytes") or b""))
        _offer_or_drop(hub, conn, reply)

    conn = _connection(websocket, "echo", None, settings, hub)
    await serve_connection(conn, hub, on_frame, _echo_ended)


async def serve_raw_echo(websocket: WebSocket, hub: Hub, settings: ServerSettings) -> None:
    """Echo each message back unchanged (``/echo``): the target of the Autobahn testsuite."""
    await websocket.accept()

    async def on_frame(conn: Connection, message: Frame) -> None:
        text = message.get("text")
        if text is not None:
            reply = Outgoing(text)
        else:
            reply = Outgoing(data=message.get("bytes") or b"")
        _offer_or_drop(hub, conn, reply)

    conn = _connection(websocket, "echo", None, settings, hub)
    await serve_connection(conn, hub, on_frame, _echo_ended)


def _echo_ended(conn: Connection, code: int | None) -> None:
    """Nothing to undo when an echo socket ends: it holds no name and no room."""


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    # Close reasons are limited to 123 bytes (RFC 6455 §5.5).
    peer = peer_of(websocket)
    log.info(
        "refused peer=%s code=%d: %s",
        peer,
        code,
        reason,
        extra={"event": "refused", "peer": peer, "code": int(code)},
    )
    await websocket.close(code, reason.encode()[:123].decode(errors="ignore"))


def _signed_in(websocket: WebSocket, name: str) -> bool:
    return bool(websocket.scope.get(USER_SCOPE_KEY) == name)


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

    def __call__(self, websocket: WebSocket, client_id: str) -> Awaitable[None]:
        """Return the socket's loop as a coroutine (no frame of its own for the socket's life)."""
        if SUBPROTOCOL in websocket.scope.get("subprotocols", ()):
            return self._serve_v1(websocket, client_id)
        return self._serve_plain(websocket, client_id)

    async def _serve_plain(self, websocket: WebSocket, client_id: str) -> None:
        chat = self.chat
        await websocket.accept()
        try:
            name = check_name(client_id)
            room = check_room(_query(websocket).get("room") or DEFAULT_ROOM)
        except ProtocolError as exc:
            await _refuse(websocket, CloseCode.INVALID_NAME, exc.detail)
            return
        conn = _connection(websocket, name, room, chat.settings, chat.hub)
        claim = await chat.claim(conn, None, shared=_signed_in(websocket, name))
        if claim.result is ClaimResult.TAKEN:
            await _refuse(websocket, CloseCode.NAME_TAKEN, _taken(name, claim.lookalike))
            return
        await serve_connection(conn, chat.hub, self._on_plain, chat.leave)

    async def _plain_frame(self, conn: Connection, message: Frame) -> None:
        text = message.get("text")
        if text is None:
            conn.close(CloseCode.UNSUPPORTED_DATA, "binary frames are not supported here")
            return
        await self.chat.say(conn, text)

    async def _serve_v1(self, websocket: WebSocket, client_id: str) -> None:
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
        conn = _connection(websocket, name, room, chat.settings, chat.hub, v1=True)
        claim = await chat.claim(conn, params.get("resume"), shared=_signed_in(websocket, name))
        if claim.result is ClaimResult.TAKEN or claim.holder is None:
            await _refuse(websocket, CloseCode.NAME_TAKEN, _taken(name, claim.lookalike))
            return
        token = claim.holder.token
        del params, claim  # not kept for the life of the socket
        try:
            await chat.enter(conn, since, token)  # registers conn in its room
        except BaseException:
            chat.hub.remove(conn, None)
            chat.leave(conn, None)
            raise
        await serve_connection(conn, chat.hub, self._on_v1, chat.leave)

    async def _v1_frame(self, conn: Connection, message: Frame) -> None:
        chat = self.chat
        text = message.get("text")
        if text is None:
            error = error_event(ErrorCode.BINARY_UNSUPPORTED, "send JSON in text frames")
            _offer_or_drop(chat.hub, conn, text_frame(error))
            return
        try:
            command = decode_command(text)
        except ProtocolError as exc:
            _offer_or_drop(chat.hub, conn, text_frame(error_event(exc.code, exc.detail)))
            return
        match command:
            case Say(text=said, action=action, cid=cid):
                await chat.say(conn, said, action, cid)
            case Dm(to=to, text=said):
                await chat.dm(conn, to, said)
            case Join(room=new_room):
                await chat.move(conn, new_room)
            case Who():
                chat.who(conn)


def _query(websocket: WebSocket) -> QueryParams:
    # Parsed afresh, not through ``websocket.query_params``, which caches it on the socket.
    return QueryParams(websocket.scope.get("query_string", b""))
