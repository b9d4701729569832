"""Redis faults that lose or stall the store (issue 14): a Redis that stops answering for
longer than the command timeout, and a Redis restarted without persistence. Counted end to
end: every say is acknowledged exactly once or refused and not stored, nothing is doubled,
and a client is either resumed exactly or told of the gap (epochs)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

from tests.broker.conftest import RedisServer, free_port
from tests.broker.talker import Talker
from tests.conftest import Server
from tests.helpers import get_json, wait_until
from tests.server.test_metrics import scrape
from tests.server.v1client import connect, next_of
from wschat.broker.redis import COMMAND_TIMEOUT_S
from wschat.client.render import render_plain
from wschat.client.session import ChatSession, SessionConfig


async def test_a_stalled_redis_neither_doubles_nor_refuses_what_it_stored(
    server_factory,  # type: ignore[no-untyped-def]
    redis_server: RedisServer,
) -> None:
    # SIGSTOP Redis for longer than the command timeout with says in flight: redis-py's
    # retry must not store one twice, and a say refused as unavailable must not be stored.
    node: Server = server_factory("--broker", redis_server.url, "--rate-limit", "0")
    stall_s = COMMAND_TIMEOUT_S + 1.5
    async with asyncio.timeout(60):
        talkers = [Talker((await connect(node, f"t{i}"))[0], f"t{i}") for i in range(4)]
        stalled = asyncio.Event()
        degraded: list[str] = []

        async def talk(t: Talker) -> int:
            errors, i = 0, 0
            while not stalled.is_set() or i < 8:  # talk through the stall, and after it
                errors += await t.say_until_acked(f"{t.name}-{i}", f"{t.name}.{i}")
                i += 1
            return errors

        async def stall() -> None:
            await asyncio.sleep(0.3)
            redis_server.pause()
            ends = time.monotonic() + stall_s
            try:
                await wait_until(
                    lambda: get_json(node.http + "/healthz")["status"] == "degraded", within=4
                )
                degraded.append(get_json(node.http + "/healthz")["broker"]["state"])
                await asyncio.sleep(ends - time.monotonic())
            finally:
                redis_server.resume()
            stalled.set()

        results = await asyncio.gather(*(talk(t) for t in talkers), stall())
        assert degraded == ["degraded"], "/healthz did not show the stall"
        await wait_until(lambda: get_json(node.http + "/healthz")["status"] == "ok")

        auditor, welcome = await connect(node, "auditor", since=0)
        stored = [e for e in [await next_of(auditor, "message") for _ in range(welcome["replay"])]]
        texts = [m["text"] for m in stored]
        said = {m["text"] for t in talkers for m in t.of("message") if m["from"] == t.name}
        assert len(texts) == len(set(texts)), "a message was stored twice"
        assert set(texts) == said  # everything acknowledged is stored, and nothing else
        assert [m["id"] for m in stored] == list(range(1, len(stored) + 1))
        for t in talkers:
            live = [m["text"] for m in t.of("message")]
            assert len(live) == len(set(live)), f"{t.name} was shown a message twice"
            assert t.ws.close_code is None
            await t.close()
        await auditor.close()
    # The stall hit says in flight; some were refused (and sent again), none doubled.
    assert sum(results[:-1]) > 0, "the stall did not refuse any say"


async def test_a_redis_restarted_without_persistence_starts_a_new_epoch(
    server_factory,  # type: ignore[no-untyped-def]
    volatile_redis: RedisServer,
) -> None:
    # Redis's default: a restart forgets every key. Connected clients must not go deaf
    # (the old code dropped new messages as "old ids"), a resume must not replay other
    # messages under ids it has seen, and no id is reused where a node can tell.
    args = ("--broker", volatile_redis.url, "--rate-limit", "0")
    a: Server = server_factory(*args)
    b: Server = server_factory(*args)
    async with asyncio.timeout(60):
        # The terminal client's session too: it must take the new epoch and show the notice.
        session = ChatSession(SessionConfig(url=b.ws, name="di"))
        running = asyncio.create_task(session.run())
        await asyncio.wait_for(session.online.wait(), 10)
        talkers = [
            Talker((await connect(node, name))[0], name) for node, name in ((a, "al"), (b, "bo"))
        ]
        for t in talkers:
            for i in range(3):
                await t.say_until_acked(f"{t.name}-before-{i}", f"{t.name}.b{i}")
        resumer, welcome = await connect(a, "cy")
        old_epoch = welcome["epoch"]
        await wait_until(lambda: all(len(t.of("message")) == 6 for t in talkers))
        await resumer.close()

        volatile_redis.kill()
        volatile_redis.start()
        await wait_until(lambda: all(len(t.of("message")) == 6 for t in talkers))
        after = [f"{t.name}-after-{i}" for i in range(4) for t in talkers]
        for i in range(4):
            for t in talkers:
                await t.say_until_acked(f"{t.name}-after-{i}", f"{t.name}.a{i}")

        def everyone_has_everything() -> bool:
            return all(len(t.of("message")) == 6 + len(after) for t in talkers)

        await wait_until(everyone_has_everything)
        for t in talkers:
            epochs = t.of("epoch")
            assert len(epochs) == 1 and epochs[0]["epoch"] != old_epoch, epochs
            new = [m for m in t.of("message") if "after" in m["text"]]
            assert sorted(m["text"] for m in new) == sorted(after)  # each exactly once
            assert min(m["id"] for m in new) > 6, "an id was reused"
            assert t.ws.close_code is None
            await t.close()

        shown: list[dict[str, Any]] = []
        while len([e for e in shown if e["type"] == "message"]) < 6 + len(after):
            shown.append(await asyncio.wait_for(session.events.get(), 10))
        told = [e for e in shown if e["type"] == "epoch"]
        assert len(told) == 1 and "some messages were missed" in (render_plain(told[0]) or "")
        assert sorted(e["text"] for e in shown[shown.index(told[0]) :] if "text" in e) == sorted(
            after
        )
        assert f"epoch={told[0]['epoch']}" in session.url()
        await session.close()
        await running

        # A resume with the old epoch: a gap and the whole new epoch, never old ids reused.
        resumer, welcome = await connect(a, "cy", since=6, epoch=old_epoch)
        assert welcome["gap"] is True and welcome["epoch"] == epochs[0]["epoch"]
        replayed = [await next_of(resumer, "message") for _ in range(welcome["replay"])]
        assert sorted(m["text"] for m in replayed) == sorted(after)
        await resumer.close()
    # /metrics counts the epoch events the nodes sent; without --redis-wait, no shortfall.
    scraped = [await asyncio.to_thread(scrape, node.http) for node in (a, b)]
    assert sum(m[("wschat_epoch_changes_total", ())] for m in scraped) >= len(talkers)
    assert all(m[("wschat_under_replicated_total", ())] == 0 for m in scraped)


async def test_the_redis_password_never_reaches_a_log(
    server_factory,  # type: ignore[no-untyped-def]
    locked_redis: RedisServer,
) -> None:
    password = locked_redis.password
    node: Server = server_factory("--broker", locked_redis.url)
    async with asyncio.timeout(20):
        talker = Talker((await connect(node, "al"))[0], "al")
        await talker.say_until_acked("hello", "c1")
        locked_redis.command(b"CLIENT KILL TYPE pubsub")  # the node logs its resubscription
        await wait_until(lambda: "resubscribed to" in node.log())
        await talker.close()
    assert f"resubscribed to redis://:***@127.0.0.1:{locked_redis.port}/0" in node.log()
    # Refused at start (wrong port): the error names the URL, without the password.
    url = f"redis://:{password}@127.0.0.1:{free_port()}/0"
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "wschat", "serve", "--port", "0", "--broker", url],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1 and "cannot reach the Redis broker at redis://:***@" in proc.stderr
    assert node.stop() == 0
    assert password not in proc.stderr + proc.stdout + node.log()
