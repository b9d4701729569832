"""ChatService in process: say, dm, who and the delivery policy, over a fake transport.

The in-memory broker and an in-memory SQLite store; no sockets, no server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.server.conn.fake import FakeSocket, FakeTransport, stall
from wschat.broker.memory import MemoryBroker
from wschat.protocol import CloseCode
from wschat.server.chat.member import Member
from wschat.server.chat.service import ChatService
from wschat.server.conn.hub import Hub
from wschat.server.conn.reader import serve_connection
from wschat.server.settings import ServerSettings
from wschat.server.transport.asgi import AsgiEvent
from wschat.store import StoredMessage
from wschat.store.sqlite import SqliteStore

OUTBOX = 4


@pytest.fixture
async def chat() -> AsyncIterator[ChatService]:
    settings = ServerSettings(outbox_size=OUTBOX, presence_grace_s=0.0)
    service = ChatService(Hub(), SqliteStore(":memory:", 100), MemoryBroker(), settings)
    await service.start()
    yield service
    await service.close()


async def _ignore(conn: Member, message: AsgiEvent) -> None:
    pass


async def join(chat: ChatService, name: str, *, v1: bool = True) -> tuple[Member, FakeTransport]:
    transport = FakeTransport()
    member = Member(
        FakeSocket(transport), name, "lobby", v1=v1, outbox_size=OUTBOX, close_timeout_s=1.0
    )
    claim = await chat.claim(member, None)
    assert claim.holder is not None
    if v1:
        await chat.enter(member, None, claim.holder.token)
    else:
        chat.enter_plain(member)
    await serve_connection(member, chat.hub, _ignore, chat.leave)
    return member, transport


def of_type(transport: FakeTransport, kind: str) -> list[dict[str, object]]:
    return [e for e in transport.events() if e["type"] == kind]


async def test_say_stores_with_an_id_and_reaches_every_member(chat: ChatService) -> None:
    alice, alice_t = await join(chat, "alice")
    bob, bob_t = await join(chat, "bob")
    _carol, carol_t = await join(chat, "carol", v1=False)
    assert of_type(bob_t, "welcome")[0]["members"] == ["alice", "bob"]
    await chat.say(alice, "hi", cid="c1")
    replay = await chat.store.replay("lobby", 0, 10)
    assert [(m.id, m.sender, m.text, m.cid) for m in replay.messages] == [(1, "alice", "hi", "c1")]
    for transport in (alice_t, bob_t):
        (message,) = of_type(transport, "message")
        assert (message["id"], message["from"], message["text"]) == (1, "alice", "hi")
        assert message["cid"] == "c1"
    assert carol_t.texts()[-1] == "Client alice: hi"
    assert chat.fanout.messages_out == 3
    assert alice.last_id == bob.last_id == 1


async def test_a_full_outbox_during_fan_out_closes_4001(chat: ChatService) -> None:
    alice, _ = await join(chat, "alice")
    bob, bob_t = await join(chat, "bob")
    stall(bob, bob_t)
    await chat.say(alice, "hi")
    assert bob_t.closes == [(CloseCode.SLOW_CONSUMER, "outbox full")]
    assert chat.hub.stats.slow_consumers == 1


@pytest.mark.parametrize("reply", ["who", "dm to nobody", "say while unavailable"])
async def test_a_full_outbox_on_a_reply_closes_the_slow_consumer_4001(
    chat: ChatService, reply: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, alice_t = await join(chat, "alice")
    stall(alice, alice_t)
    if reply == "who":
        chat.who(alice)
    elif reply == "dm to nobody":
        await chat.dm(alice, "nobody", "hello?")
    else:
        from wschat.errors import Unavailable

        async def down(*args: object, **kwargs: object) -> None:
            raise Unavailable("store down")

        monkeypatch.setattr(chat.store, "append", down)
        await chat.say(alice, "lost")
    assert alice_t.closes == [(CloseCode.SLOW_CONSUMER, "outbox full")]
    assert chat.hub.stats.slow_consumers == 1


async def test_dm_reaches_both_ends_and_nobody_else(chat: ChatService) -> None:
    alice, alice_t = await join(chat, "alice")
    _bob, bob_t = await join(chat, "bob")
    _carol, carol_t = await join(chat, "carol")
    await chat.dm(alice, "bob", "psst")
    for transport in (alice_t, bob_t):
        (dm,) = of_type(transport, "dm")
        assert (dm["from"], dm["to"], dm["text"]) == ("alice", "bob", "psst")
    assert of_type(carol_t, "dm") == []
    assert chat.dms_in == 1 and chat.fanout.dms_out == 2
    await chat.dm(alice, "nobody", "hello?")
    (error,) = of_type(alice_t, "error")
    assert error["code"] == "no_such_user"


async def test_who_lists_the_room(chat: ChatService) -> None:
    alice, alice_t = await join(chat, "alice")
    await join(chat, "bob")
    chat.who(alice)
    (members,) = of_type(alice_t, "members")
    assert members == {"type": "members", "room": "lobby", "names": ["alice", "bob"]}


async def test_presence_reaches_the_others_and_leave_frees_the_name(chat: ChatService) -> None:
    alice, alice_t = await join(chat, "alice")
    _bob, bob_t = await join(chat, "bob")
    assert of_type(alice_t, "joined") == [{"type": "joined", "room": "lobby", "name": "bob"}]
    assert of_type(bob_t, "joined") == []
    assert bob_t.sink is not None
    bob_t.sink.on_disconnect(1000)
    assert of_type(alice_t, "left") == [{"type": "left", "room": "lobby", "name": "bob"}]
    assert "bob" not in chat.presence.holders
    assert chat.hub.members("lobby") == {alice}


class SettleRecorder:
    """Stands in for the cluster: records the says handed to it on an epoch change."""

    def __init__(self) -> None:
        self.settled: list[tuple[Member, list[int]]] = []

    def settle_unshown(self, conn: Member, said: list[StoredMessage]) -> None:
        self.settled.append((conn, [m.id for m in said]))


async def test_a_new_epoch_hands_over_the_says_its_member_was_not_shown(
    chat: ChatService,
) -> None:
    alice, alice_t = await join(chat, "alice")
    recorder = SettleRecorder()
    chat.fanout.cluster = recorder  # type: ignore[assignment]
    alice.epoch, alice.last_id = "e1", 3
    alice.awaiting = [
        StoredMessage("lobby", i, "alice", f"m{i}", 0.0, epoch=e)
        for i, e in ((3, "e1"), (4, "e1"), (5, "e0"))
    ]
    assert chat.fanout.adopt_epoch(alice, "e2", 9)
    # 3 was shown, 5 is of an epoch before: only 4 waits for an answer.
    assert recorder.settled == [(alice, [4])]
    assert alice.awaiting is None and (alice.epoch, alice.last_id) == ("e2", 9)
    assert of_type(alice_t, "epoch")[-1] == {
        "type": "epoch",
        "room": "lobby",
        "epoch": "e2",
        "base": 9,
    }
