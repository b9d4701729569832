"""History in Redis: one capped stream per room, ids from a per-room counter, shared by nodes.

``append`` runs one Lua script that INCRs the room's counter, XADDs the message under the
stream id ``<id>-0`` (trimming the stream to the cap) and PUBLISHes it on the broker's
channel. Redis runs a script atomically, so ids are strictly increasing per room across every
node, and every subscriber receives a room's messages in id order: a node only sees a gap
when its subscription was interrupted, and it repairs the gap from this store. Because the
script publishes, ``publishes`` is True and the chat service does not publish again.

Durability is Redis's: run it with ``appendonly yes`` (``appendfsync always`` to lose
nothing, ``everysec`` to lose at most a second) or history and ids restart with Redis.
Commands that cannot reach Redis raise ``Unavailable``. Imports redis-py and the core.
"""

from __future__ import annotations

import json
from typing import Any

import redis.asyncio as aioredis

from wschat.broker.redis import EVENTS_CHANNEL, KEY_PREFIX, REDIS_DOWN
from wschat.errors import Unavailable
from wschat.store import Replay, StoredMessage

_APPEND = """
local id = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], id .. '-0', 'm', ARGV[1])
redis.call('PUBLISH', ARGV[3], '{"id":' .. id .. ',' .. string.sub(ARGV[1], 2))
return id
"""

# Returns {latest, oldest, entries}; ARGV[1] is since + 1 ('' for "the last ARGV[2]"); with
# ARGV[3] == '1' the entries from ARGV[1] on are the newest ARGV[2], newest first.
_REPLAY = """
local latest = tonumber(redis.call('GET', KEYS[1]) or '0')
local first = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local oldest = 0
if #first > 0 then oldest = tonumber(string.match(first[1][1], '^(%d+)')) end
local entries
if ARGV[1] == '' then
  entries = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', ARGV[2])
elseif ARGV[3] == '1' then
  entries = redis.call('XREVRANGE', KEYS[2], '+', ARGV[1] .. '-0', 'COUNT', ARGV[2])
else
  entries = redis.call('XRANGE', KEYS[2], ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
end
return {latest, oldest, entries}
"""


def _seq_key(room: str) -> str:
    return f"{KEY_PREFIX}seq:{room}"


def _stream_key(room: str) -> str:
    return f"{KEY_PREFIX}history:{room}"


class RedisStore:
    """A ``HistoryStore`` in Redis streams, keeping at most ``cap`` messages per room."""

    publishes = True  # append() also publishes the message to every node

    def __init__(self, client: aioredis.Redis, cap: int) -> None:
        self.client = client
        self.cap = cap
        self._append = client.register_script(_APPEND)
        self._replay = client.register_script(_REPLAY)

    async def append(
        self,
        room: str,
        sender: str,
        text: str,
        ts: float,
        action: bool = False,
        cid: str | None = None,
    ) -> StoredMessage:
        body = {"kind": "message", "room": room, "from": sender, "text": text, "ts": ts}
        if action:
            body["action"] = True
        if cid is not None:
            body["cid"] = cid
        try:
            msg_id = await self._append(
                keys=[_seq_key(room), _stream_key(room)],
                args=[json.dumps(body), self.cap, EVENTS_CHANNEL],
            )
        except REDIS_DOWN as exc:
            raise Unavailable(f"redis history unavailable: {exc}") from None
        return StoredMessage(room, int(msg_id), sender, text, ts, action, cid)

    async def replay(
        self, room: str, since: int | None, limit: int, *, most: int | None = None
    ) -> Replay:
        first = "" if since is None else str(since + 1)
        newest = since is not None and most is not None
        if since is None:
            count = limit if limit > 0 else 1
        elif most is not None:
            count = most + 1  # one more, to tell whether any were left out
        else:
            count = self.cap
        try:
            latest, oldest, entries = await self._replay(
                keys=[_seq_key(room), _stream_key(room)],
                args=[first, count, "1" if newest else "0"],
            )
        except REDIS_DOWN as exc:
            raise Unavailable(f"redis history unavailable: {exc}") from None
        messages = [_decode(room, entry) for entry in entries]
        if since is None:
            messages.reverse()
            if limit <= 0:
                messages = []
            gap = False
        elif most is not None:
            cut = len(messages) > most
            del messages[most:]
            messages.reverse()
            gap = cut or (latest > since and oldest > since + 1)
        else:
            gap = latest > since and oldest > since + 1
        return Replay(messages, int(latest), gap)

    async def close(self) -> None:
        """Nothing to do: the broker owns the shared client and closes it."""


def _decode(room: str, entry: Any) -> StoredMessage:
    stream_id, fields = entry
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    body = json.loads(values["m"])
    return StoredMessage(
        room,
        int(stream_id.split("-", 1)[0]),
        body["from"],
        body["text"],
        float(body["ts"]),
        bool(body.get("action", False)),
        body.get("cid"),
    )
