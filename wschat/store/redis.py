"""History in Redis: one capped stream per room, ids from a per-room counter, shared by nodes.

``append`` runs one Lua script that INCRs the room's counter, XADDs the message under the
stream id ``<id>-0`` (trimming the stream to the cap) and PUBLISHes it on the broker's
channel. Redis runs a script atomically, so ids are strictly increasing per room across every
node, and every subscriber receives a room's messages in id order: a node only sees a gap
when its subscription was interrupted, and it repairs the gap from this store. Because the
script publishes, ``publishes`` is True and the chat service does not publish again.

A room's keys share one hash tag, ``wschat:{ROOM}:...`` (``room_key``), so they live on one
slot of a Redis Cluster and one script may touch them all.

Appends are safe to repeat (issue 14). Each one writes an *operation key* (the sender and
the ``say``'s ``cid``, or a random one) holding the id it got; a repeat finds it and returns
that id without storing or publishing again, so redis-py's retry of a command that timed out
cannot double a message, nor can a client that sends a ``cid`` again. Each append also
carries a deadline in Redis's own clock: run after it (Redis stalled, the reply never
came), the script stores nothing. After a timeout, ``append`` reads the operation key back
until Redis's clock is past the deadline, so it answers ``Unavailable`` only for a message
that is not stored and never will be.

Epochs (issue 14, the recovery model of Centrifugo): each room has ``wschat:{ROOM}:epoch``,
a random id and the ``base`` its ids start above. A new epoch begins when the key is missing
(a new room, or a Redis that restarted without persistence), when the counter is below the
last id this node saw in the same epoch (a failover to a replica that lagged), or when the
stream is gone while the counter says messages were stored. The counter is then raised to
the last id this node saw, so ids are not reused where any node can tell. Every message
published carries its epoch, so connected clients are told (``epoch`` event) and go on.

With ``wait`` (``--redis-wait N``) the script does not publish: the same connection sends
``WAIT N`` after it, and the message is published (so acknowledged) only once N replicas
have it or the wait ran out (then it is logged). Out of order between nodes, it is put back
in order by the nodes' repair.

Durability is Redis's: run it with ``appendonly yes`` (``appendfsync always`` to lose
nothing, ``everysec`` to lose at most a second); without, the epoch changes on a restart.
Commands that cannot reach Redis raise ``Unavailable``. Imports redis-py and the core.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import redis.exceptions

from wschat.broker.redis import (
    COMMAND_TIMEOUT_S,
    EVENTS_CHANNEL,
    REDIS_DOWN,
    Client,
    Gate,
    Latency,
    command,
    room_key,
)
from wschat.errors import Unavailable
from wschat.store import Replay, StoredMessage

OP_TTL_S = 600  # a repeat of a say (same sender and cid) within this returns the same id
RANDOM_OP_TTL_S = 60  # a say without cid: its key only has to outlive its own settling
APPEND_BUDGET_S = COMMAND_TIMEOUT_S  # an append that reaches Redis later than this is refused
CLOCK_MARGIN_S = 1.0  # how far this node's estimate of Redis's clock may be off
MAX_TRACKED_ROOMS = 10_000  # rooms whose last id this node remembers (oldest forgotten first)
WAIT_MS = int(COMMAND_TIMEOUT_S * 500)  # --redis-wait: how long WAIT waits for the replicas
# Errors with which Redis refuses a write before making it (the message is not stored).
WRITE_REFUSED = ("NOREPLICAS", "READONLY", "MASTERDOWN", "LOADING", "NOSCRIPT")

log = logging.getLogger("wschat.store")

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS[1] counter, KEYS[2] stream, KEYS[3] epoch; ARGV[n0] a new epoch id, ARGV[n0 + 1] the
# epoch this node knows, ARGV[n0 + 2] the last id it saw in it.
_EPOCH = """
local function current(n0)
  local e = redis.call('HMGET', KEYS[3], 'id', 'base')
  local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
  local floor = tonumber(ARGV[n0 + 2])
  local fresh = not e[1]
  if e[1] and e[1] == ARGV[n0 + 1] and seq < floor then fresh = true end
  if e[1] and seq > tonumber(e[2]) and redis.call('EXISTS', KEYS[2]) == 0 then fresh = true end
  if not fresh then return e[1], tonumber(e[2]) end
  if seq < floor then
    seq = floor
    redis.call('SET', KEYS[1], seq)
  end
  redis.call('HSET', KEYS[3], 'id', ARGV[n0], 'base', seq)
  return ARGV[n0], seq
end
"""

# KEYS: counter, stream, epoch, operation, its void mark. ARGV: 1 body (JSON), 2 cap,
# 3 channel ('' to leave publishing to the caller, after WAIT), 4 deadline (Redis ms), 5 TTL of the operation key (s), 6-8 see _EPOCH. Returns
# {status, id, epoch, base, now}: status 'new', 'repeat' (stored before: nothing done) or
# 'late' (past the deadline, or voided by _CHECK: nothing done).
_APPEND = (
    _NOW
    + _EPOCH
    + """
local done = redis.call('GET', KEYS[4])
if done then
  local id, epoch, base = string.match(done, '^(%d+) (%w+) (%d+)$')
  return {'repeat', tonumber(id), epoch, tonumber(base), now}
end
if now > tonumber(ARGV[4]) or redis.call('EXISTS', KEYS[5]) == 1 then
  return {'late', 0, '', 0, now}
end
local epoch, base = current(6)
local id = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], id .. '-0', 'm', ARGV[1])
redis.call('SET', KEYS[4], id .. ' ' .. epoch .. ' ' .. base, 'EX', ARGV[5])
if ARGV[3] ~= '' then
  redis.call('PUBLISH', ARGV[3], '{"id":' .. id .. ',"epoch":"' .. epoch .. '","base":' .. base
    .. ',' .. string.sub(ARGV[1], 2))
end
return {'new', id, epoch, base, now}
"""
)

# KEYS: operation, the attempt's void mark; ARGV: TTL (s). Returns {what the operation key
# holds, now}; when it holds nothing, the attempt is voided: run later, it stores nothing.
_CHECK = (
    _NOW
    + """
local done = redis.call('GET', KEYS[1])
if not done then redis.call('SET', KEYS[2], '1', 'EX', ARGV[1]) end
return {done, now}
"""
)

# KEYS: counter, stream, epoch. Returns {latest, oldest, entries, epoch, base}; ARGV[1] is
# since + 1 ('' for "the last ARGV[2]"); with ARGV[3] == '1' the entries from ARGV[1] on are
# the newest ARGV[2], newest first; ARGV[4-6] see _EPOCH.
_REPLAY = (
    _EPOCH
    + """
local epoch, base = current(4)
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
return {latest, oldest, entries, epoch, base}
"""
)


def _room_keys(room: str) -> list[str]:
    return [room_key(room, "seq"), room_key(room, "history"), room_key(room, "epoch")]


def _op_keys(room: str, sender: str, cid: str | None) -> list[str]:
    """Return the operation key of a say (by sender and cid, else random) and the void
    mark of this attempt at it."""
    op = f"c:{sender}\n{cid}" if cid is not None else f"r:{secrets.token_hex(8)}"
    return [room_key(room, "op:" + op), room_key(room, f"void:{secrets.token_hex(8)}")]


class RedisStore:
    """A ``HistoryStore`` in Redis streams, keeping at most ``cap`` messages per room."""

    publishes = True  # append() also publishes the message to every node

    def __init__(
        self,
        client: Client,
        cap: int,
        latency: Latency | None = None,
        wait: int = 0,
        cid_ttl_s: int = OP_TTL_S,
        gate: Gate | None = None,
    ) -> None:
        self.client = client
        self.cap = cap
        self.cid_ttl_s = cid_ttl_s  # --cid-ttl: how long a say's cid is remembered
        self.wait = wait  # replicas that must have a message before it is published
        self.under_replicated = 0  # messages published with fewer replicas than ``wait``
        # Delivers an envelope to this node's members only (``RedisBroker.deliver_here``).
        self.deliver_here: Callable[[dict[str, Any]], None] | None = None
        self.latency = latency or Latency()
        self.gate = gate or Gate()  # shared with the broker and the registry (one pool)
        self._append = client.register_script(_APPEND)
        self._check = client.register_script(_CHECK)
        self._replay = client.register_script(_REPLAY)
        self._clock_ms = 0.0  # Redis's clock minus ours, from the last reply that told it
        self._seen: dict[str, tuple[str, int]] = {}  # room -> (epoch, newest id seen here)

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
        for attempt in range(2):
            deadline = self._redis_ms() + APPEND_BUDGET_S * 1000
            started = time.time()
            ops = _op_keys(room, sender, cid)
            args = [json.dumps(body), self.cap, "" if self.wait else EVENTS_CHANNEL]
            ttl = self.cid_ttl_s if cid is not None else RANDOM_OP_TTL_S
            args += [int(deadline), ttl, *self._epoch_args(room)]
            try:
                async with self.gate.turn():
                    with self.latency.timing():
                        reply = await self._run_append([*_room_keys(room), *ops], args)
            except REDIS_DOWN as exc:
                reply = await self._settle(ops, deadline, exc)
            except redis.exceptions.ResponseError as exc:
                if not str(exc).startswith(WRITE_REFUSED):
                    raise
                raise Unavailable(f"redis history refused the message: {exc}") from None
            status, msg_id, epoch, base, now = reply
            quick = self._learn_clock(started, float(now))
            if status in ("new", "found"):
                self._note(room, str(epoch), int(msg_id))
            if status != "late":
                stored = StoredMessage(
                    room, int(msg_id), sender, text, ts, action, cid, str(epoch), int(base)
                )
                if self.wait and status != "repeat":
                    await self._publish(stored, body)
                return stored
            if attempt > 0 or not quick:
                break
            # Refused at once: our estimate of Redis's clock was off, not Redis slow. Again.
        raise Unavailable("redis history unavailable: the message was not stored")

    async def _run_append(self, keys: list[str], args: list[Any]) -> list[Any]:
        """Run the append script; with ``wait``, on one connection with a WAIT after it."""
        if not self.wait:
            reply: list[Any] = await command(self._append(keys=keys, args=args))
            return reply
        pipe = self.client.pipeline(transaction=False)
        await self._append(keys=keys, args=args, client=pipe)  # type: ignore[arg-type]
        pipe.execute_command("WAIT", self.wait, WAIT_MS)
        reply, replicas = await command(pipe.execute(raise_on_error=False))
        for result in (reply, replicas):
            if isinstance(result, redis.exceptions.ResponseError):
                # The master was demoted under us (READONLY, or WAIT on a replica): what the
                # script wrote there may be wiped. The caller settles it on the new master.
                raise redis.exceptions.ConnectionError(f"master lost mid-append: {result}")
        if reply[0] == "new" and int(replicas) < self.wait:
            self.under_replicated += 1
            log.warning(
                "message stored on %d of %d replicas within %d ms", replicas, self.wait, WAIT_MS
            )
        return reply

    async def _publish(self, stored: StoredMessage, body: dict[str, Any]) -> None:
        """With ``wait``: publish what the script stored (it did not), once replicated. If
        Redis is lost just now, deliver it on this node (``deliver_here``: the sender is
        acknowledged); the other nodes read it from the stream at their next gap or
        resubscription."""
        envelope = {"id": stored.id, "epoch": stored.epoch, "base": stored.base, **body}
        try:
            await self.gate.run(self.client.publish(EVENTS_CHANNEL, json.dumps(envelope)))
        except (*REDIS_DOWN, Unavailable) as exc:
            log.warning("message %s/%d stored but not published: %s", stored.room, stored.id, exc)
            if self.deliver_here is not None:
                self.deliver_here(envelope)

    async def _settle(self, ops: list[str], deadline: float, exc: BaseException) -> list[Any]:
        """After an append failed in flight, find out whether it was stored and make sure it
        will not be later: ``_CHECK`` reads its operation key and voids the attempt if it
        holds nothing. Return the append's reply, or raise ``Unavailable``."""
        while True:
            try:
                check = self._check(keys=ops, args=[RANDOM_OP_TTL_S])
                done, now = await self.gate.run(check, self.latency)
            except (*REDIS_DOWN, Unavailable, redis.exceptions.ResponseError) as err:
                if not isinstance(err, (*REDIS_DOWN, Unavailable)) and not str(err).startswith(
                    WRITE_REFUSED
                ):
                    raise  # neither unreachable nor refusing writes (READONLY...): a bug
                # Unreachable: once past the deadline by our clock (with a margin), nothing
                # will store it any more, since the script checks it by Redis's clock.
                if self._redis_ms() > deadline + CLOCK_MARGIN_S * 1000:
                    raise Unavailable(f"redis history unavailable: {exc}") from None
                await asyncio.sleep(0.1)
                continue
            if done:
                msg_id, epoch, base = str(done).split(" ")
                return ["found", int(msg_id), epoch, int(base), now]
            return ["late", 0, "", 0, now]

    async def replay(
        self,
        room: str,
        since: int | None,
        limit: int,
        *,
        most: int | None = None,
        chars: int | None = None,  # a hint this store does not use (XREVRANGE counts entries)
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
            read = self._replay(
                keys=_room_keys(room),
                args=[first, count, "1" if newest else "0", *self._epoch_args(room)],
            )
            latest, oldest, entries, epoch, base = await self.gate.run(read, self.latency)
        except REDIS_DOWN as exc:
            raise Unavailable(f"redis history unavailable: {exc}") from None
        except redis.exceptions.ResponseError as exc:
            if not str(exc).startswith(WRITE_REFUSED):  # a replica, a master going away
                raise
            raise Unavailable(f"redis history unavailable: {exc}") from None
        epoch, base = str(epoch), int(base)
        self._note(room, epoch, int(latest))
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
        return Replay(messages, int(latest), gap, epoch, base)

    async def close(self) -> None:
        """Nothing to do: the broker owns the shared client and closes it."""

    # --- what this node knows of the sequences and of Redis's clock -------------------------

    def seen(self, envelope: dict[str, Any]) -> None:
        """Note the id of a room message another node stored (``RedisBroker.on_envelope``):
        if the room's counter is ever found below it in the same epoch, a new epoch starts
        above it."""
        if envelope.get("kind") == "message":
            room, epoch, msg_id = envelope.get("room"), envelope.get("epoch"), envelope.get("id")
            if isinstance(room, str) and isinstance(epoch, str) and isinstance(msg_id, int):
                self._note(room, epoch, msg_id)

    def _epoch_args(self, room: str) -> list[Any]:
        known, newest = self._seen.get(room, ("", 0))
        return [secrets.token_hex(4), known, newest]

    def _note(self, room: str, epoch: str, msg_id: int) -> None:
        known = self._seen.pop(room, None)  # re-inserted last: the dict is oldest-used first
        if known is not None and known[0] == epoch:
            msg_id = max(msg_id, known[1])
        self._seen[room] = (epoch, msg_id)
        if len(self._seen) > MAX_TRACKED_ROOMS:
            del self._seen[next(iter(self._seen))]

    def _redis_ms(self) -> float:
        return time.time() * 1000 + self._clock_ms

    def _learn_clock(self, started: float, redis_now_ms: float) -> bool:
        """Learn Redis's clock from a reply to a call made at ``started`` (our clock, s), if
        it came back quickly; return whether it did."""
        ended = time.time()
        if ended - started > CLOCK_MARGIN_S / 4:
            return False
        self._clock_ms = redis_now_ms - (started + ended) * 500
        return True


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
