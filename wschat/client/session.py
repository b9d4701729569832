"""One chat session over ``wschat.v1``: connect, reconnect with backoff, resume, queue sends.

The session owns the connection and nothing on screen: it puts the events to show on
``events`` (a bounded queue the UI drains) and keeps ``status`` current for a status line,
calling ``on_status`` whenever it changes. It imports websockets, never rich or
prompt_toolkit.

Resuming: what was seen and what is owed (the last id per room, the resume token, the
outbox, the lines not yet seen back) is ``client.resume.Resume``, which has no I/O and says
the rules; the session feeds it every event and sends what it says, in order, after each
``welcome`` and its replay. Lines sent while offline wait in a bounded queue; a line that does
not fit, or is still queued when the session ends, comes back as an ``unsent`` notice. A first
message whose id skips some is followed by a notice of how many were missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import ssl
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI
from websockets.typing import Subprotocol

from wschat.client.commands import UsageError
from wschat.client.resume import Missed, Resume
from wschat.errors import (
    AccessDenied,
    ClosedByServer,
    ConfigError,
    ConnectFailed,
    NameRejected,
    ProtocolError,
)
from wschat.protocol import (
    DEFAULT_ROOM,
    MAX_MESSAGE_BYTES,
    SUBPROTOCOL,
    CloseCode,
    Command,
    Dm,
    Join,
    Rooms,
    Say,
    check_name,
    check_room,
    decode_event,
    encode_command,
)
from wschat.ratelimit import TokenBucket
from wschat.refusal import explain, one_line

BACKOFF_INITIAL_S = 0.5
BACKOFF_FACTOR = 2.0
BACKOFF_MAX_S = 30.0
OUTBOX_LINES = 100
EVENTS_QUEUED = 1000
OPEN_TIMEOUT_S = 10.0
# Stay under the server's default rate limit (20/s, burst 40; docs/protocol.md "Limits"), so
# a pipe of many lines is paced instead of answered with rate_limited and finally close 1008.
SEND_RATE_PER_S = 15.0
SEND_BURST = 30

# Server events a client shows; anything else a server sends is ignored (forward-compatible,
# and a server cannot inject a local notice).
SERVER_EVENTS = frozenset(
    {"welcome", "message", "dm", "joined", "left", "members", "rooms", "epoch", "error"}
)

# Close codes after which reconnecting (and resuming) is the right thing to do.
RETRY_CODES = frozenset(
    {
        CloseCode.GOING_AWAY,
        CloseCode.INTERNAL_ERROR,
        CloseCode.TRY_AGAIN_LATER,
        CloseCode.SLOW_CONSUMER,
        CloseCode.MESSAGE_TOO_BIG,  # the frame at fault is gone; the next one will fit
        1006,  # no close frame: the network or the server process died
        1012,  # service restart
    }
)


def backoff_delays(
    initial_s: float = BACKOFF_INITIAL_S,
    factor: float = BACKOFF_FACTOR,
    max_s: float = BACKOFF_MAX_S,
    rng: Callable[[], float] = random.random,
) -> Iterator[float]:
    """Yield the delays before each reconnection attempt: capped exponential, with jitter.

    The nominal delay doubles from ``initial_s`` up to ``max_s``; each yielded delay is drawn
    uniformly from the upper half of it ("equal jitter"), so clients a server restart dropped
    all at once do not come back all at once (RFC 6455 §7.2.3), yet none waits more than
    ``max_s``.
    """
    nominal = initial_s
    while True:
        yield nominal / 2 + rng() * nominal / 2
        nominal = min(nominal * factor, max_s)


class State(StrEnum):
    CONNECTING = "connecting"
    ONLINE = "online"
    RECONNECTING = "reconnecting"
    CLOSED = "closed"


@dataclass
class Status:
    """What the status line shows; ``retry_at`` is a ``time.monotonic()`` instant."""

    state: State = State.CONNECTING
    room: str = DEFAULT_ROOM
    attempt: int = 0
    retry_at: float = 0.0
    reason: str = ""
    queued: int = 0
    members: set[str] = field(default_factory=set)

    def describe(self, now: float | None = None) -> str:
        """Return the status as one line, e.g. ``reconnecting in 2.1 s, attempt 3``."""
        if self.state is State.RECONNECTING:
            left = max(0.0, self.retry_at - (time.monotonic() if now is None else now))
            text = (
                f"reconnecting in {left:.1f} s, attempt {self.attempt}"
                if left > 0
                else f"reconnecting, attempt {self.attempt}"
            )
            if self.reason:
                text += f" ({self.reason})"
        elif self.state is State.ONLINE:
            text = f"#{self.room} · {len(self.members)} online"
        else:
            text = self.state.value
        if self.queued:
            text += f" · {self.queued} unsent queued"
        return text


@dataclass(frozen=True)
class SessionConfig:
    """Where and how to connect. ``url`` is the server's base, e.g. ``ws://127.0.0.1:8000``."""

    url: str
    name: str
    room: str = DEFAULT_ROOM
    headers: tuple[tuple[str, str], ...] = ()
    ssl_context: ssl.SSLContext | None = None
    outbox_lines: int = OUTBOX_LINES
    send_rate_per_s: float = SEND_RATE_PER_S
    send_burst: int = SEND_BURST
    # False: the messages replayed by the first welcome (said before this client came) are
    # not put on ``events`` (``wschat join --no-history``); later replays still are.
    history: bool = True
    backoff: Callable[[], Iterator[float]] = backoff_delays


def normalise_base_url(url: str) -> str:
    """Return ``url`` as a ``ws://`` or ``wss://`` base without a trailing slash.

    ``http(s)://`` is accepted for convenience; anything else raises ``ConfigError``.
    """
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss") or not parts.netloc:
        raise ConfigError(f"invalid url {url!r}: expected ws://HOST:PORT or wss://HOST")
    if parts.query or parts.fragment:
        raise ConfigError(f"invalid url {url!r}: no query or fragment, please")
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}"


class ChatSession:
    """A v1 connection that survives restarts of the server; see the module docstring."""

    def __init__(self, config: SessionConfig, on_status: Callable[[], None] | None = None):
        try:
            self.name = check_name(config.name)
        except ProtocolError as exc:
            raise ConfigError(f"invalid name {config.name!r}: {exc.detail}") from None
        try:
            room = check_room(config.room.removeprefix("#"))
        except ProtocolError as exc:
            raise ConfigError(f"invalid room {config.room!r}: {exc.detail}") from None
        self.config = config
        self.base_url = normalise_base_url(config.url)
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue(EVENTS_QUEUED)
        self.status = Status(room=room)
        self.resume = Resume(room, config.outbox_lines, config.history)
        self.online = asyncio.Event()  # set while a welcomed connection is up
        self.on_status = on_status or (lambda: None)
        self._outbox_changed = asyncio.Event()
        self._caught_up = asyncio.Event()  # the replay is read: unconfirmed lines are settled
        self._closing = False
        self._ws: ClientConnection | None = None
        self._bucket = TokenBucket(config.send_rate_per_s, config.send_burst)  # one for all

    # --- what the UI calls -------------------------------------------------------------------

    def send(self, command: Command) -> bool:
        """Queue ``command``; it goes out now if online, else after the next reconnect.

        Returns ``False`` (and sends nothing) when the outbox is full; the caller tells the
        user the line was not sent.
        """
        if not self.resume.queue(command):
            return False
        self._outbox_changed.set()
        self._set_status(queued=len(self.resume.outbox) if not self.online.is_set() else 0)
        return True

    def leave(self) -> Join | UsageError:
        """Return the ``join`` back to the room before this one (``/leave``; see
        ``Resume.leave``): send it as a typed one."""
        return self.resume.leave()

    @property
    def last_seen(self) -> dict[str, int]:
        """The last message id seen in each room."""
        return self.resume.last_seen

    async def send_when_room(self, command: Command) -> None:
        """Queue ``command``, first waiting for room in the outbox (backpressure for a pipe)."""
        while not self.send(command):
            self._outbox_changed.clear()
            await self._outbox_changed.wait()

    @property
    def queued(self) -> list[Command]:
        """Commands not known to have arrived, oldest first: sent but not seen back, then
        not sent yet."""
        return self.resume.queued

    async def drain(self) -> None:
        """Wait until every queued command has been handed to the connection, and every
        line said has come back from the server."""
        while self.resume.owed:
            self._outbox_changed.clear()
            await self._outbox_changed.wait()

    async def finish(self, drain_s: float) -> None:
        """Give queued commands up to ``drain_s`` seconds to go out, then ``close()``.

        What is still queued afterwards stays in ``queued`` for the caller to report unsent.
        """
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(drain_s):
                await self.drain()
        await self.close()

    async def close(self) -> None:
        """Close the connection normally (1000) and make ``run()`` return."""
        self._closing = True
        self._outbox_changed.set()
        if self._ws is not None:
            await self._ws.close()

    def url(self) -> str:
        """Return the URL of the next connection attempt, with ``since`` and ``resume``."""
        query = self.resume.query(self.status.room)
        return f"{self.base_url}/ws/{quote(self.name, safe='')}?{urlencode(query)}"

    # --- the connection loop -----------------------------------------------------------------

    async def run(self) -> None:
        """Connect and keep connected until ``close()``; raise a ``WschatError`` when fatal.

        The first connection must succeed (no server at the URL is an error, not a retry
        loop); after that, network errors and the close codes in ``RETRY_CODES`` lead to a
        reconnection after ``config.backoff()`` delays, reset by each ``welcome``.

        This is the loop of websockets' ``async for ws in connect(...)``, written out because
        each attempt needs a new URL (``since`` and ``resume`` move on) and the status line
        needs to know the delay and the attempt number before the wait starts.
        """
        delays: Iterator[float] | None = None
        attempt = 0
        while not self._closing:
            reason = await self._connect_once()
            if self._closing:
                break
            if self.online.is_set():
                # Welcomed, then dropped: start the backoff over.
                delays, attempt = None, 0
            self.online.clear()
            if delays is None:
                delays = self.config.backoff()
            attempt += 1
            delay = next(delays)
            self._set_status(
                state=State.RECONNECTING,
                attempt=attempt,
                retry_at=time.monotonic() + delay,
                reason=reason,
                queued=len(self.resume.outbox),
            )
            with contextlib.suppress(TimeoutError):
                # close() during the wait ends it early.
                async with asyncio.timeout(delay):
                    while not self._closing:
                        self._outbox_changed.clear()
                        await self._outbox_changed.wait()
            self._set_status(state=State.CONNECTING)
        self._set_status(state=State.CLOSED)

    async def _connect_once(self) -> str:
        """Run one connection to its end; return why it ended if a retry makes sense."""
        self.online.clear()
        self._caught_up.clear()
        headers = list(self.config.headers)
        try:
            ws = await connect(
                self.url(),
                subprotocols=[Subprotocol(SUBPROTOCOL)],
                additional_headers=headers,
                ssl=self.config.ssl_context,
                compression=None,
                open_timeout=OPEN_TIMEOUT_S,
                max_size=MAX_MESSAGE_BYTES * 4,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            # The server says why in one line of text (docs/protocol.md "Refused handshakes").
            why = one_line(exc.response.body)
            why = f": {why}" if why else ""
            if status in (401, 403):
                hint = " (see --token)" if status == 401 else ""
                raise AccessDenied(
                    f"refused by the server at {self.base_url}: HTTP {status}{why}{hint}"
                ) from None
            if status in (429, 500, 502, 503, 504):
                if self.resume.welcomed:
                    return f"server busy, HTTP {status}"
                raise ConnectFailed(
                    f"the server at {self.base_url} is busy: HTTP {status}{why}; try again later"
                ) from None
            answer = explain(status, exc.response.reason_phrase, exc.response.body)
            hint = " (--url is the server's address, ws://HOST:PORT)" if status == 404 else ""
            raise ConnectFailed(f"{self.url()} answered {answer}{hint}") from None
        except InvalidURI as exc:
            raise ConfigError(f"invalid url {self.base_url!r}: {exc}") from None
        except InvalidHandshake as exc:
            if self.resume.welcomed:
                return "bad handshake"
            # e.g. an HTTP/1.0 answer: the reason names the line it could not read
            cause = f": {exc.__cause__}" if exc.__cause__ else ""
            raise ConnectFailed(f"handshake with {self.base_url} failed: {exc}{cause}") from None
        except (OSError, TimeoutError) as exc:
            if isinstance(exc, ssl.SSLCertVerificationError):
                raise ConnectFailed(
                    f"cannot verify the TLS certificate of {self.base_url}: "
                    f"{exc.verify_message} (use --cafile, or --insecure)"
                ) from None
            if self.resume.welcomed:
                return "server unreachable"
            errno = getattr(exc, "errno", None)
            detail = os.strerror(errno).lower() if errno else str(exc) or type(exc).__name__
            raise ConnectFailed(f"no server at {self.base_url}: {detail}") from None
        if self._closing:
            await ws.close()
            return ""
        if ws.subprotocol != SUBPROTOCOL:
            await ws.close()
            raise ConnectFailed(f"the server at {self.base_url} does not speak {SUBPROTOCOL}")
        self._ws = ws
        try:
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(self._write(ws))
                try:
                    await self._read(ws)
                finally:
                    writer.cancel()
        except* ConnectionClosed:
            pass
        finally:
            self._ws = None
            await ws.close()
        return self._closed(ws)

    def _closed(self, ws: ClientConnection) -> str:
        """Raise for a fatal close code; return a short reason for a retryable one."""
        code = ws.close_code if ws.close_code is not None else 1006
        reason = ws.close_reason or ""
        if self._closing or code in RETRY_CODES:
            return {1001: "server restarting", 4001: "too slow", 1006: "connection lost"}.get(
                code, f"closed {code}"
            )
        said = f": {reason}" if reason else ""
        if code == CloseCode.NAME_TAKEN:
            raise NameRejected(f"the name {self.name!r} is taken: choose another one")
        if code == CloseCode.INVALID_NAME:
            raise NameRejected(
                f"invalid name or room ({self.name!r}, #{self.status.room}){said or ''}"
            )
        if code == CloseCode.REPLACED:
            raise ClosedByServer(f"{self.name!r} connected again elsewhere{said}", code, reason)
        if code == CloseCode.TOKEN_EXPIRED:
            # Final: the same token would be refused (401) at every reconnection.
            raise ClosedByServer(
                f"your token expired: get a new one with 'wschat token {self.name} "
                "--secret ...' and pass it with --token",
                code,
                reason,
            )
        if code == CloseCode.POLICY_VIOLATION:
            raise AccessDenied(f"refused by the server (close 1008){said}")
        raise ClosedByServer(
            f"the server closed the connection with code {code}{said}", code, reason
        )

    async def _read(self, ws: ClientConnection) -> None:
        while True:
            frame = await ws.recv()
            if isinstance(frame, bytes):
                continue
            try:
                event = decode_event(frame)
            except ProtocolError:
                continue
            await self._handle(event)

    async def _handle(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind not in SERVER_EVENTS:
            return
        if kind == "welcome":
            self._welcome(event)
        elif kind == "message":
            seen = self.resume.message(event, self.name)
            if seen.confirmed:
                self._outbox_changed.set()
            if seen.caught_up:
                self._caught_up.set()
                self._outbox_changed.set()
            if seen.missed is not None:
                await self.events.put(missed_notice(seen.missed))
            if not seen.show:
                return
        elif kind == "epoch":
            self.resume.epoch(event)
        elif kind == "joined" and event.get("room") == self.status.room:
            self.status.members.add(str(event.get("name")))
            self.on_status()
        elif kind == "left" and event.get("room") == self.status.room:
            self.status.members.discard(str(event.get("name")))
            self.on_status()
        elif kind == "members" and event.get("room") == self.status.room:
            self.status.members = {str(n) for n in event.get("names") or []}
            self.on_status()
        await self.events.put(event)

    def _welcome(self, event: Mapping[str, Any]) -> None:
        room = self.resume.welcome(event, self.status.room)
        if self.resume.caught_up:
            self._caught_up.set()
        self.online.set()
        self._set_status(
            state=State.ONLINE,
            room=room,
            attempt=0,
            reason="",
            queued=0,
            members={str(n) for n in event.get("members") or []},
        )
        self._outbox_changed.set()

    async def _write(self, ws: ClientConnection) -> None:
        await self.online.wait()
        await self._caught_up.wait()
        while True:
            while self.resume.outbox:
                delay = self._bucket.wait_s(time.monotonic())
                if delay > 0:
                    await asyncio.sleep(delay)
                    continue
                command = self.resume.next_command()
                if command is None:
                    break
                self._outbox_changed.set()  # a say is unconfirmed from now on
                await ws.send(encode_command(command))
                self.resume.handed(command)
                self._outbox_changed.set()
            self._outbox_changed.clear()
            await self._outbox_changed.wait()

    def _set_status(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self.status, key, value)
        self.on_status()

    def unsent_notices(self) -> list[dict[str, Any]]:
        """Return a notice for each queued command that will never be sent now."""
        return [notice(f"unsent: {describe(command)}", "yellow") for command in self.queued]


def notice(text: str, style: str = "dim") -> dict[str, Any]:
    """Return a local event (never one a server sent) that shows ``text`` in ``style``."""
    return {"type": "notice", "text": text, "style": style, "ts": time.time()}


def missed_notice(missed: Missed) -> dict[str, Any]:
    """Return the notice saying how many messages of a room were missed, and which."""
    return notice(
        f"{missed.count} message{'s' if missed.count != 1 else ''} in #{missed.room} missed "
        f"(ids {missed.first} to {missed.last}: not replayed)",
        "yellow",
    )


def describe(command: Command) -> str:
    """Return ``command`` as the user would have typed it."""
    match command:
        case Say(text, True):
            return f"/me {text}"
        case Say(text, False):
            return text
        case Join(room):
            return f"/join {room}"
        case Dm(to, text):
            return f"/msg {to} {text}"
        case Rooms():
            return "/rooms"
        case _:
            return "/who"


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """Return the first leaf of a failed task group: the error worth reporting."""
    first = group.exceptions[0]
    return first_error(first) if isinstance(first, BaseExceptionGroup) else first
