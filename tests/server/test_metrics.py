"""``GET /metrics``: Prometheus text with the hub's and chat's counters, one registry per app."""

from __future__ import annotations

import asyncio
import json
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Server
from tests.server.v1client import connect, next_of, say
from wschat.server.app import create_app
from wschat.server.metrics import render
from wschat.server.settings import ServerSettings


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of ``url``/metrics keyed by (name, sorted labels)."""
    with urllib.request.urlopen(url + "/metrics", timeout=5) as resp:
        assert resp.headers["content-type"].startswith("text/plain")
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_metrics_count_connections_messages_and_closes(server: Server) -> None:
    async with asyncio.timeout(15):
        alice, _ = await connect(server, "alice", room="r")
        bob, _ = await connect(server, "bob", room="r")
        await say(alice, "hello")
        await next_of(bob, "message")
        await alice.send(json.dumps({"type": "dm", "to": "bob", "text": "psst"}))
        await next_of(bob, "dm")
        live = await asyncio.to_thread(scrape, server.http)
        assert live[("wschat_connections", ())] == 2
        assert live[("wschat_rooms", ())] == 1
        assert live[("wschat_messages_in_total", (("kind", "room"),))] == 1
        assert live[("wschat_messages_in_total", (("kind", "dm"),))] == 1
        assert live[("wschat_messages_out_total", (("kind", "room"),))] == 2
        assert live[("wschat_messages_out_total", (("kind", "dm"),))] == 2
        assert live[("wschat_deliveries_total", ())] >= 4
        assert live[("wschat_history_messages", ())] == 1
        assert live[("wschat_broker_up", ())] == 1
        assert live[("wschat_broker_state", (("engine", "memory"), ("state", "ok")))] == 1
        assert live[("wschat_outbox_drops_total", ())] == 0
        assert live[("wschat_epoch_changes_total", ())] == 0
        assert ("wschat_under_replicated_total", ()) not in live  # SQLite: no replicas

        await alice.close()
        again, welcome = await connect(server, "alice", room="r", since=0)
        assert welcome["replay"] == 1
        await again.close(code=4000)
        await bob.close()
        await asyncio.sleep(0.2)
        after = await asyncio.to_thread(scrape, server.http)
        assert after[("wschat_connections", ())] == 0
        assert after[("wschat_resume_replays_total", ())] == 1
        assert after[("wschat_replayed_messages_total", ())] == 1
        assert after[("wschat_disconnects_total", (("code", "1000"),))] == 2
        assert after[("wschat_disconnects_total", (("code", "4000"),))] == 1


def test_each_app_has_its_own_registry() -> None:
    one = create_app(ServerSettings())
    two = create_app(ServerSettings())
    one.state.hub.stats.deliveries += 3
    assert b"wschat_deliveries_total 3.0" in render(one.state.metrics)
    assert b"wschat_deliveries_total 0.0" in render(two.state.metrics)
