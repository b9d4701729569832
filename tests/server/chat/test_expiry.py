"""Expiries: connections closed 4011 at their token's exp, on one shared timer (issue 15).

Members over the fake transport of ``tests/server/conn``; a clock that starts just before a
whole second, so an ``exp`` comes within a fraction of a second. No sockets, no server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.server.chat.test_service import join
from wschat.broker.memory import MemoryBroker
from wschat.protocol import CloseCode
from wschat.server.chat.expiry import EXPIRED_REASON, Expiries
from wschat.server.chat.service import ChatService
from wschat.server.conn.hub import Hub
from wschat.server.settings import ServerSettings
from wschat.store.sqlite import SqliteStore

START = 999.9  # the clock's first reading: exp 1000 is 0.1 s away, exp 1001 1.1 s


class Clock:
    """Wall-clock seconds that start at ``START`` and move with the monotonic clock."""

    def __init__(self) -> None:
        self._origin = time.monotonic()

    def __call__(self) -> float:
        return START + time.monotonic() - self._origin


@pytest.fixture
async def chat() -> AsyncIterator[ChatService]:
    settings = ServerSettings(outbox_size=4, presence_grace_s=5.0)
    service = ChatService(Hub(), SqliteStore(":memory:", 100), MemoryBroker(), settings)
    service.expiries = Expiries(Clock())
    await service.start()
    yield service
    await service.close()


async def test_members_close_4011_at_their_exp_second_and_no_sooner(chat: ChatService) -> None:
    (alice, alice_t), (bob, bob_t) = await join(chat, "alice"), await join(chat, "bob", v1=False)
    carol, carol_t = await join(chat, "carol")
    dave, dave_t = await join(chat, "dave")
    for member in (alice, bob, dave):
        chat.expiries.add(member, 1000)  # one second shared: one set
    chat.expiries.add(carol, 1001)
    assert len(chat.expiries) == 4
    chat.expiries.discard(dave)  # dave ended first: never closed by the timer
    await asyncio.sleep(0.4)
    assert alice_t.closes == bob_t.closes == [(CloseCode.TOKEN_EXPIRED, EXPIRED_REASON)]
    assert carol_t.closes == dave_t.closes == []
    assert len(chat.expiries) == 1 and chat.expiries.closed == 2
    await asyncio.sleep(1.0)
    assert carol_t.closes == [(CloseCode.TOKEN_EXPIRED, EXPIRED_REASON)]
    assert len(chat.expiries) == 0


async def test_an_expired_member_leaves_at_once_without_the_grace(chat: ChatService) -> None:
    alice, alice_t = await join(chat, "alice")
    chat.expiries.add(alice, 1000)
    await asyncio.sleep(0.4)
    assert alice.close_code == CloseCode.TOKEN_EXPIRED
    assert alice_t.sink is not None
    alice_t.sink.on_disconnect(CloseCode.TOKEN_EXPIRED)  # the peer answers the close
    assert "alice" not in chat.presence.holders  # no 5 s grace: the name is free now


async def test_a_member_that_ends_is_forgotten(chat: ChatService) -> None:
    alice, alice_t = await join(chat, "alice")
    chat.expiries.add(alice, 1001)
    assert alice_t.sink is not None
    alice_t.sink.on_disconnect(CloseCode.NORMAL)  # chat.leave discards it
    assert len(chat.expiries) == 0 and alice.expires_at is None
