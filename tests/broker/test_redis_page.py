"""The page and a Redis that lost its data (issue 14): told of the new epoch, it shows that
messages may have been missed and goes on showing the new messages. Headless Chromium."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import BrowserContext, expect

from tests.broker.conftest import RedisServer
from tests.conftest import Server
from tests.helpers import CHROMIUM, get_json
from tests.server.test_page import (  # noqa: F401 (the page's browser fixtures)
    browser,
    context,
    open_chat,
    say,
    send,
    v1,
)

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="needs Debian's chromium",
)
MISSED = "some messages were missed (no longer stored, or too many to replay)"


def test_the_page_follows_a_new_epoch_and_says_messages_were_missed(
    server_factory: Any,
    context: BrowserContext,  # noqa: F811 (the fixture imported above)
    volatile_redis: RedisServer,
) -> None:
    server: Server = server_factory("--broker", volatile_redis.url, "--rate-limit", "0")
    page = open_chat(context, server, "alice", "r")
    send(page, "before")
    expect(page.locator("#messages li.message .text")).to_have_text(["before"])
    volatile_redis.kill()
    volatile_redis.start()  # empty: without persistence
    with v1(server, "bob", room="r") as bob:
        for _ in range(50):  # until the history takes it: "unavailable" means not stored
            say(bob, "after")
            event = json.loads(bob.recv(timeout=10))
            while event["type"] not in ("message", "error"):
                event = json.loads(bob.recv(timeout=10))
            if event["type"] == "message":
                break
            assert event["code"] == "unavailable", event
            time.sleep(0.1)
        expect(page.locator("#messages li.message .text")).to_have_text(["before", "after"])
        # Told once (before or after bob's arrival, as the node's repair and bob race).
        expect(page.locator("#messages li.system .text", has_text=MISSED)).to_have_count(1)
    expect(page.locator("#messages li.error")).to_have_count(0)
    assert get_json(server.http + "/healthz")["broker"]["state"] in ("ok", "degraded")
