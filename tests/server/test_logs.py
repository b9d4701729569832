"""Logs: text or JSON lines, one line per connection open and close, no text, no token."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from typer.testing import CliRunner

from tests.conftest import Server
from tests.helpers import get_json
from tests.server.v1client import connect, next_of, say
from wschat.auth import issue_token
from wschat.cli import app
from wschat.server.logs import redact

SECRET_TEXT = "the-eagle-lands-at-midnight"


async def _chat(server: Server) -> str:
    """Talk as alice (v1, then resumed) and carol (plain); return alice's token."""
    async with asyncio.timeout(15):
        alice, welcome = await connect(server, "alice", room="ops")
        token = str(welcome["token"])
        await say(alice, SECRET_TEXT)
        await next_of(alice, "message")
        await alice.close()
        again, _ = await connect(server, "alice", room="ops", since=0, resume=token)
        async with websockets.connect(f"{server.ws}/ws/carol?room=ops") as carol:
            await carol.send(SECRET_TEXT)
            await carol.recv()
        await again.close()
        await asyncio.sleep(0.2)
    return token


async def test_json_lines_one_open_and_close_each_no_text_no_token(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--log-format", "json", "--log-level", "info")
    token = await _chat(server)
    server.stop()
    log = server.log()
    assert SECRET_TEXT not in log
    assert token not in log
    assert "resume=***" in log  # uvicorn's access line, redacted
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert {"ts", "level", "logger", "message"} <= set(entries[0])
    opens = [e for e in entries if e.get("event") == "open"]
    closes = [e for e in entries if e.get("event") == "close"]
    assert [(e["user"], e["room"]) for e in opens] == [("alice", "ops")] * 2 + [("carol", "ops")]
    assert sorted((e["user"], e["code"]) for e in closes) == [
        ("alice", 1000),
        ("alice", 1000),
        ("carol", 1000),
    ]
    assert all(e["peer"].startswith("127.0.0.1:") for e in opens + closes)


async def test_text_format_by_default(server: Server) -> None:
    token = await _chat(server)
    await asyncio.to_thread(get_json, f"{server.http}/healthz?token=zzz-secret")
    server.stop()
    log = server.log()
    assert SECRET_TEXT not in log and token not in log
    assert "close alice room=ops peer=127.0.0.1:" in log
    assert "code=1000" in log
    assert "INFO:" in log  # uvicorn's own format kept
    assert "Logging error" not in log
    assert '"GET /healthz?token=*** HTTP/1.1" 200' in log and "zzz-secret" not in log


async def test_trace_level_still_hides_tokens(server_factory) -> None:  # type: ignore[no-untyped-def]
    server: Server = server_factory("--log-level", "trace")
    token = await _chat(server)
    server.stop()
    log = server.log()
    assert token not in log
    assert "query_string" in log  # trace shows ASGI scopes, redacted
    assert "Logging error" not in log


async def _sign_in_three_ways(server: Server, token: str) -> str:
    """Connect as alice with ``token`` as a header, a subprotocol and a query value, the last
    with a resume token too; return that resume token."""
    async with asyncio.timeout(15):
        async with websockets.connect(
            f"{server.ws}/ws/alice",
            subprotocols=["wschat.v1"],  # type: ignore[list-item]
            additional_headers={"Authorization": f"Bearer {token}"},
        ) as ws:
            resume = str(json.loads(await ws.recv())["token"])
        async with websockets.connect(
            f"{server.ws}/ws/alice",
            subprotocols=["wschat.v1", f"wschat.token.{token}"],  # type: ignore[list-item]
        ) as ws:
            await ws.recv()
        async with websockets.connect(
            f"{server.ws}/ws/alice?token={token}&resume={resume}",
            subprotocols=["wschat.v1"],  # type: ignore[list-item]
        ) as ws:
            await ws.recv()
        await asyncio.sleep(0.2)
    return resume


@pytest.mark.parametrize("level", ["debug", "trace"])
async def test_tokens_never_logged_at_debug_or_trace(server_factory, level: str) -> None:  # type: ignore[no-untyped-def]
    secret = "s3cret-for-logs"
    server: Server = server_factory("--secret", secret, "--log-level", level)
    token = issue_token("alice", secret)
    resume = await _sign_in_three_ways(server, token)
    server.stop()
    log = server.log()
    for value in (token, resume, *token.split(".")):
        assert value not in log
    assert log.count('"WebSocket /ws/alice" [accepted]') == 2
    assert '"WebSocket /ws/alice?token=***&resume=***" [accepted]' in log
    assert log.count("open alice room=lobby") == 3
    if level == "trace":  # uvicorn's ASGI message logger prints each scope
        assert "'subprotocols': ['wschat.v1', 'wschat.token.***']" in log
        assert "'query_string': b'token=***&resume=***'" in log
    assert "Logging error" not in log


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("authorization: Bearer eyJ.a.b", "authorization: ***"),
        ("< Authorization: Basic dXNlcjpw", "< Authorization: ***"),
        ("(b'authorization', b'Bearer eyJ.x')", "(b'authorization', b'***')"),
        ("{'Authorization': 'Bearer abc', 'host': 'h'}", "{'Authorization': '***', 'host': 'h'}"),
        (
            "'subprotocols': ['wschat.v1', 'wschat.token.eyJ.a-b_c']",
            "'subprotocols': ['wschat.v1', 'wschat.token.***']",
        ),
        (
            "< sec-websocket-protocol: wschat.v1, wschat.token.eyJ.x.y",
            "< sec-websocket-protocol: wschat.v1, wschat.token.***",
        ),
        ("WebSocket /ws/a?resume=abc&since=3", "WebSocket /ws/a?resume=***&since=3"),
        ("WebSocket /ws/a?room=x&token=t0k", "WebSocket /ws/a?room=x&token=***"),
        ('"GET /?token=zz HTTP/1.1" 200', '"GET /?token=*** HTTP/1.1" 200'),
        ("presume=fine&room=x", "presume=fine&room=x"),
        ("no query here", "no query here"),
        ("'query_string': b'since=1&resume=abc'", "'query_string': b'since=1&resume=***'"),
    ],
)
def test_redact(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_bad_log_format_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["serve", "--log-format", "xml"])
    assert result.exit_code == 2
