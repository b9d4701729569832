"""The session against a scripted in-process v1 server: resume, dedupe, queue, close codes.

The end-to-end tests (test_join.py) run the real client against the real server; these pin
down the session's own contract quickly and deterministically.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from wschat.client.session import (
    ChatSession,
    SessionConfig,
    State,
    Status,
    backoff_delays,
    normalise_base_url,
)
from wschat.errors import AccessDenied, ClosedByServer, ConfigError, ConnectFailed, NameRejected
from wschat.protocol import Join, Say


def test_backoff_is_capped_exponential_with_jitter() -> None:
    delays = list(itertools.islice(backoff_delays(0.5, 2.0, 8.0, rng=lambda: 1.0), 7))
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    low = list(itertools.islice(backoff_delays(0.5, 2.0, 8.0, rng=lambda: 0.0), 5))
    assert low == [0.25, 0.5, 1.0, 2.0, 4.0]
    jittered = list(itertools.islice(backoff_delays(), 50))
    assert len(set(jittered)) > 40 and max(jittered) <= 30.0


def test_status_line() -> None:
    status = Status(state=State.RECONNECTING, attempt=3, retry_at=12.1, reason="server restarting")
    assert status.describe(now=10.0) == "reconnecting in 2.1 s, attempt 3 (server restarting)"
    status.queued = 2
    assert status.describe(now=13.0).startswith("reconnecting, attempt 3")
    assert status.describe(now=13.0).endswith("· 2 unsent queued")


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("ws://127.0.0.1:8000", "ws://127.0.0.1:8000"),
        ("ws://h:1/", "ws://h:1"),
        ("http://h:1/chat/", "ws://h:1/chat"),
        ("https://h", "wss://h"),
    ],
)
def test_base_url(url: str, base: str) -> None:
    assert normalise_base_url(url) == base


@pytest.mark.parametrize("url", ["ftp://h", "h:8000", "ws://h/?x=1", "ws://"])
def test_bad_url(url: str) -> None:
    with pytest.raises(ConfigError):
        normalise_base_url(url)


@pytest.mark.parametrize("name", ["", "a b", "x" * 33, "evil\u202e"])
def test_invalid_name_is_refused_before_connecting(name: str) -> None:
    with pytest.raises(ConfigError):  # bad usage (exit 2), not a server's refusal
        ChatSession(SessionConfig(url="ws://127.0.0.1:1", name=name))


@dataclass
class FakeServer:
    """Just enough of wschat.v1: welcome, replay after ``since``, say -> message, close codes."""

    history: list[dict[str, Any]] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    close_with: int | None = None  # close every new connection at once with this code
    close_after_welcome: list[int] = field(default_factory=list)  # codes for the next ones
    replay_overlap: int = 0  # replay this many already-seen messages too (the client drops them)
    conns: set[ServerConnection] = field(default_factory=set)
    server: Server | None = None
    port: int = 0
    tls: ssl.SSLContext | None = None
    headers: list[dict[str, str]] = field(default_factory=list)
    # What happens to the next commands: "stored" (kept, then the connection dies before the
    # echo goes out), "lost" (the connection dies before the server handles it) or
    # "unanswered" (neither stored nor echoed; the connection stays).
    drops: list[str] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)  # every command, in order

    def say(self, sender: str, text: str, cid: str | None = None) -> dict[str, Any]:
        event = {
            "type": "message",
            "room": "lobby",
            "id": len(self.history) + 1,
            "from": sender,
            "text": text,
            "ts": 0.0,
        }
        if cid is not None:
            event["cid"] = cid
        self.history.append(event)
        return event

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        self.urls.append(ws.request.path)
        self.headers.append(dict(ws.request.headers.raw_items()))
        if self.close_with is not None:
            await ws.close(self.close_with, "scripted")
            return
        query = parse_qs(urlsplit(ws.request.path).query)
        since = int(query.get("since", ["0"])[0]) - self.replay_overlap
        replay = [m for m in self.history if m["id"] > since]
        welcome = {
            "type": "welcome",
            "name": ws.request.path.split("/")[2].split("?")[0],
            "room": "lobby",
            "members": ["alice"],
            "latest": len(self.history),
            "replay": len(replay),
            "gap": False,
            "token": "tok",
        }
        await ws.send(json.dumps(welcome))
        for message in replay:
            await ws.send(json.dumps(message))
        if self.close_after_welcome:
            await ws.send(json.dumps({"type": "notice", "text": "spoof", "style": "[bad"}))
            await ws.close(self.close_after_welcome.pop(0), "scripted")
            return
        self.conns.add(ws)
        try:
            async for frame in ws:
                command = json.loads(frame)
                self.received.append(command)
                drop = self.drops.pop(0) if self.drops else None
                if drop == "unanswered" or (command["type"] != "say" and drop is None):
                    continue
                if drop != "lost":
                    event = self.say("alice", command["text"], command.get("cid"))
                if drop is not None:
                    ws.transport.abort()
                    return
                for peer in list(self.conns):
                    await peer.send(json.dumps(event))
        finally:
            self.conns.discard(ws)

    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        if "forbidden" in request.path:
            return ws.respond(403, "no\n")
        return None

    async def start(self) -> None:
        self.server = await serve(
            self.handler,
            "127.0.0.1",
            self.port,
            subprotocols=["wschat.v1"],  # type: ignore[list-item]
            process_request=self.process_request,
            ssl=self.tls,
        )
        self.port = next(iter(self.server.sockets)).getsockname()[1]

    async def stop(self, code: int = 1001) -> None:
        assert self.server is not None
        for ws in list(self.conns):
            await ws.close(code, "bye")
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def fake() -> AsyncIterator[FakeServer]:
    server = FakeServer()
    await server.start()
    yield server
    if server.server is not None:
        server.server.close()


def fast_backoff() -> Iterator[float]:
    return itertools.repeat(0.05)


def make_session(fake: FakeServer, name: str = "alice") -> ChatSession:
    return ChatSession(
        SessionConfig(url=f"ws://127.0.0.1:{fake.port}", name=name, backoff=fast_backoff)
    )


async def next_event(session: ChatSession, kind: str) -> dict[str, Any]:
    async with asyncio.timeout(5):
        while True:
            event = await session.events.get()
            if event["type"] == kind:
                return event


async def drain_events(session: ChatSession) -> list[dict[str, Any]]:
    events = []
    while not session.events.empty():
        events.append(session.events.get_nowait())
    return events


async def wait_for(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not predicate():
            await asyncio.sleep(0.01)


async def test_resume_after_restart_loses_nothing_and_repeats_nothing(fake: FakeServer) -> None:
    fake.say("bob", "before")
    session = make_session(fake)
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(session.run())
        assert (await next_event(session, "welcome"))["replay"] == 1
        assert (await next_event(session, "message"))["text"] == "before"
        assert session.send(Say("first"))
        assert (await next_event(session, "message"))["text"] == "first"

        await fake.stop(1001)  # the server restarts
        await wait_for(lambda: session.status.state is not State.ONLINE)
        fake.say("bob", "while you were away")
        assert session.send(Say("typed offline"))  # queued, sent after the reconnect
        fake.replay_overlap = 2  # a sloppy server replays two already-seen messages too
        await fake.start()

        assert (await next_event(session, "welcome"))["replay"] == 3
        assert (await next_event(session, "message"))["text"] == "while you were away"
        assert (await next_event(session, "message"))["text"] == "typed offline"
        await session.close()
        await runner
    assert "since=2" in fake.urls[-1] and "resume=tok" in fake.urls[-1]
    assert [e for e in await drain_events(session) if e["type"] == "message"] == []
    assert session.last_seen == {"lobby": 4}


async def test_queue_is_bounded_and_reports_unsent(fake: FakeServer) -> None:
    session = ChatSession(
        SessionConfig(
            url=f"ws://127.0.0.1:{fake.port}", name="alice", backoff=fast_backoff, outbox_lines=2
        )
    )
    assert session.send(Say("a")) and session.send(Say("b"))
    assert not session.send(Say("c"))
    assert [n["text"] for n in session.unsent_notices()] == ["unsent: a", "unsent: b"]


@pytest.mark.parametrize(
    ("code", "error", "needle"),
    [
        (4009, NameRejected, "the name 'alice' is taken: choose another one"),
        (4003, NameRejected, "invalid name or room"),
        (1008, AccessDenied, "refused by the server (close 1008)"),
        (4010, ClosedByServer, "connected again elsewhere"),
        (4011, ClosedByServer, "your token expired: get a new one with 'wschat token alice"),
        (1003, ClosedByServer, "closed the connection with code 1003"),
    ],
)
async def test_fatal_close_codes(fake: FakeServer, code: int, error: type, needle: str) -> None:
    fake.close_with = code
    with pytest.raises(error, match=needle.replace("(", r"\(").replace(")", r"\)")):
        async with asyncio.timeout(5):
            await make_session(fake).run()


async def test_http_403_is_access_denied(fake: FakeServer) -> None:
    session = ChatSession(SessionConfig(url=f"ws://127.0.0.1:{fake.port}/forbidden", name="alice"))
    with pytest.raises(AccessDenied, match="HTTP 403"):
        async with asyncio.timeout(5):
            await session.run()


async def test_no_server_is_a_clear_error(fake: FakeServer) -> None:
    await fake.stop()
    with pytest.raises(ConnectFailed, match=r"no server at ws://127\.0\.0\.1:.*connection refused"):
        async with asyncio.timeout(5):
            await make_session(fake).run()


async def test_token_and_headers_go_in_the_handshake(fake: FakeServer) -> None:
    from wschat.client.launcher import JoinOptions, build_session

    session = build_session(
        JoinOptions(
            name="alice",
            url=f"ws://127.0.0.1:{fake.port}",
            room="lobby",
            token="s3cret",
            headers=("X-Team: blue", "X-Trace:  42 "),
        )
    )
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(session.run())
        await next_event(session, "welcome")
        await session.close()
        await runner
    headers = fake.headers[0]
    assert headers["Authorization"] == "Bearer s3cret"
    assert (headers["X-Team"], headers["X-Trace"]) == ("blue", "42")
    assert headers["Sec-WebSocket-Protocol"] == "wschat.v1"


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", key, "-out", cert, "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


async def test_wss_with_cafile_insecure_or_neither(certificate: tuple[str, str]) -> None:
    from wschat.client.launcher import JoinOptions, build_session

    cert, key = certificate
    fake = FakeServer(tls=ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
    assert fake.tls is not None
    fake.tls.load_cert_chain(cert, key)
    await fake.start()
    try:
        url = f"wss://127.0.0.1:{fake.port}"
        for extra in ({"cafile": cert}, {"insecure": True}):
            session = build_session(JoinOptions("alice", url, "lobby", **extra))  # type: ignore[arg-type]
            async with asyncio.TaskGroup() as tg:
                runner = tg.create_task(session.run())
                await next_event(session, "welcome")
                await session.close()
                await runner
        with pytest.raises(ConnectFailed, match="cannot verify the TLS certificate"):
            async with asyncio.timeout(5):
                await build_session(JoinOptions("alice", url, "lobby")).run()
    finally:
        await fake.stop()


@pytest.mark.parametrize("code", [1001, 1011, 1012, 1013, 4001])
async def test_retryable_close_codes_reconnect(fake: FakeServer, code: int) -> None:
    fake.close_after_welcome = [code]
    session = make_session(fake)
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(session.run())
        await next_event(session, "welcome")
        await next_event(session, "welcome")  # the second connection
        await session.close()
        await runner
    assert len(fake.urls) == 2
    # A server cannot make the client show a local notice.
    assert all(e["type"] != "notice" for e in await drain_events(session))


async def test_a_line_that_got_through_before_a_drop_is_not_sent_again(fake: FakeServer) -> None:
    session = make_session(fake)
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(session.run())
        await next_event(session, "welcome")
        fake.drops = ["stored"]  # stored, but the connection dies before the echo
        assert session.send(Say("only once"))
        welcome = await next_event(session, "welcome")  # after the reconnect
        assert welcome["replay"] == 1
        assert (await next_event(session, "message"))["text"] == "only once"
        assert session.send(Say("next"))
        assert (await next_event(session, "message"))["text"] == "next"
        await session.close()
        await runner
    assert [c["text"] for c in fake.received] == ["only once", "next"]
    assert [m["text"] for m in fake.history] == ["only once", "next"]
    assert session.queued == []


async def test_a_line_lost_in_a_drop_is_sent_again_first(fake: FakeServer) -> None:
    session = make_session(fake)
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(session.run())
        await next_event(session, "welcome")
        fake.drops = ["lost"]  # the connection dies before the server handles it
        assert session.send(Say("not lost"))
        await wait_for(lambda: session.status.state is not State.ONLINE)
        assert session.send(Say("typed later"))
        assert (await next_event(session, "message"))["text"] == "not lost"
        assert (await next_event(session, "message"))["text"] == "typed later"
        await session.close()
        await runner
    sent = [(c["text"], c["cid"]) for c in fake.received]
    assert [text for text, _ in sent] == ["not lost", "not lost", "typed later"]
    assert sent[0][1] == sent[1][1]  # the same line, sent again under its own id
    assert [m["text"] for m in fake.history] == ["not lost", "typed later"]


async def test_a_line_for_the_room_left_is_not_sent_again_into_the_new_one(
    fake: FakeServer,
) -> None:
    session = make_session(fake)
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(session.run())
        await next_event(session, "welcome")
        fake.drops = ["unanswered", "lost"]  # the say gets no echo; the join drops the line
        assert session.send(Say("for the lobby"))
        assert session.send(Join("ops"))
        await next_event(session, "welcome")  # after the reconnect: the replay is empty
        assert session.send(Say("for ops"))
        assert (await next_event(session, "message"))["text"] == "for ops"
        await session.close()
        await runner
    assert [c.get("text", c["type"]) for c in fake.received] == ["for the lobby", "join", "for ops"]
