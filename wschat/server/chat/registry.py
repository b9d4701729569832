"""The shared name and presence registry in Redis: who holds which name, in which room.

Each held name is a hash ``wschat:{registry}:name:NAME`` (owning node, resume token, room, whether it
may be reclaimed) that expires ``ttl`` after its node's last heartbeat; each room is a
sorted set ``wschat:{registry}:room:ROOM`` of names scored by the same expiry (milliseconds, Redis's
own clock via TIME, so node clocks do not matter), and ``wschat:{registry}:rooms`` indexes the
rooms, each scored by the latest expiry of a name placed in it (the answer to ``rooms``). Each of a held name's look-alike keys
(``names.confusable_keys``, the very keys a single process indexes by) is a string
``wschat:{registry}:look:KEY`` naming its holder, with the same expiry: a name whose key is held by
another live name is refused as its look-alike (issue 15), whichever node holds it. A node that dies stops refreshing: its
names become free and drop out of every member list within ``ttl``. Every change is one Lua
script, so a name is never held by two nodes. The scripts build key names, so every key
shares the hash tag ``{registry}``: on a Redis Cluster they all live on one slot.

It is the ``Cluster``'s (``chat.cluster``) and lives beside it: it is not a broker. Imports
redis-py, ``wschat.broker.redis`` (the key prefix) and the core; commands that cannot reach
Redis raise ``Unavailable``.

DMs for a name in its presence grace wait in a list ``wschat:{registry}:dms:NAME`` until the name is
resumed on any node (``keep_dm``/``take_dms``), expiring with the grace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wschat.broker.redis import KEY_PREFIX, REDIS_DOWN, Client, command
from wschat.errors import Unavailable
from wschat.names import confusable_keys
from wschat.rooms import Holder

# Every registry key shares one Redis Cluster hash tag: the scripts build key names (a name's
# look-alike keys, a room's set), so all of them must live on one slot (issue 14).
REGISTRY = KEY_PREFIX + "{registry}:"
ROUTE = REGISTRY + "route"  # never written: where a script without keys is sent

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# Look-alike keys travel as one argument, joined by newlines: a valid name holds no control
# character, so neither does any of its keys.
_LOOKS = """
local function looks(joined)
  local out = {}
  for k in string.gmatch(joined, '[^\\n]+') do out[#out + 1] = k end
  return out
end
"""

# KEYS: none. ARGV: prefix, node, ttl_ms, name, token, room, reclaimable, offered token,
# look-alike keys. Returns {'new'} | {'mine'} | {'moved', old_node, old_room} | {'taken'} |
# {'lookalike', held_name}.
_CLAIM = (
    _NOW
    + _LOOKS
    + """
local p, node, ttl, name = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local key = p .. 'name:' .. name
local mine = looks(ARGV[9])
for _, k in ipairs(mine) do
  local other = redis.call('GET', p .. 'look:' .. k)
  if other and other ~= name and redis.call('EXISTS', p .. 'name:' .. other) == 1 then
    return {'lookalike', other}
  end
end
local cur = redis.call('HMGET', key, 'node', 'token', 'room', 'reclaimable')
local result = {'new'}
if cur[1] then
  if cur[1] == node then
    result = {'mine'}
  elseif ARGV[8] == '' or cur[4] ~= '1' or cur[2] ~= ARGV[8] then
    return {'taken'}
  else
    result = {'moved', cur[1], cur[3]}
  end
  if cur[3] and cur[3] ~= ARGV[6] then redis.call('ZREM', p .. 'room:' .. cur[3], name) end
end
redis.call('HSET', key, 'node', node, 'token', ARGV[5], 'room', ARGV[6], 'reclaimable', ARGV[7])
redis.call('PEXPIRE', key, ttl)
redis.call('ZADD', p .. 'room:' .. ARGV[6], now + ttl, name)
redis.call('ZADD', p .. 'rooms', now + ttl, ARGV[6])
for _, k in ipairs(mine) do redis.call('SET', p .. 'look:' .. k, name, 'PX', ttl) end
return result
"""
)

# ARGV: prefix, node, ttl_ms, then (name, token, room, reclaimable, look-alike keys)
# repeated. Refreshes (or re-creates, after a Redis restart) the names this node holds and
# their look-alike keys that nobody else took meanwhile; returns the names another node
# holds now.
_REFRESH = (
    _NOW
    + _LOOKS
    + """
local p, node, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local lost = {}
for i = 4, #ARGV, 5 do
  local name, room = ARGV[i], ARGV[i + 2]
  local key = p .. 'name:' .. name
  local cur = redis.call('HMGET', key, 'node', 'room')
  if cur[1] and cur[1] ~= node then
    lost[#lost + 1] = name
  else
    if cur[2] and cur[2] ~= room then redis.call('ZREM', p .. 'room:' .. cur[2], name) end
    redis.call('HSET', key, 'node', node, 'token', ARGV[i + 1], 'room', room,
               'reclaimable', ARGV[i + 3])
    redis.call('PEXPIRE', key, ttl)
    redis.call('ZADD', p .. 'room:' .. room, now + ttl, name)
    redis.call('ZADD', p .. 'rooms', now + ttl, room)
    for _, k in ipairs(looks(ARGV[i + 4])) do
      local look = p .. 'look:' .. k
      local other = redis.call('GET', look)
      if not other or other == name or redis.call('EXISTS', p .. 'name:' .. other) == 0 then
        redis.call('SET', look, name, 'PX', ttl)
      end
    end
  end
end
return lost
"""
)

# ARGV: prefix, node, name, look-alike keys. Frees the name if this node holds it.
_RELEASE = (
    _LOOKS
    + """
local p, node, name = ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'name:' .. name
local cur = redis.call('HMGET', key, 'node', 'room')
if cur[1] ~= node then return 0 end
redis.call('DEL', key)
if cur[2] then redis.call('ZREM', p .. 'room:' .. cur[2], name) end
for _, k in ipairs(looks(ARGV[4])) do
  local look = p .. 'look:' .. k
  if redis.call('GET', look) == name then redis.call('DEL', look) end
end
return 1
"""
)

# KEYS: room sets. Drops expired names, returns each room's live names.
_MEMBERS = (
    _NOW
    + """
local out = {}
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  out[i] = redis.call('ZRANGE', key, 0, -1)
end
return out
"""
)

# ARGV: prefix, most. Drops the rooms nobody refreshed, then counts the live names of at most
# ``most`` rooms; returns {rooms indexed, room, count, room, count, ...} (rooms with none left
# out).
_ROOMS = (
    _NOW
    + """
local p, most = ARGV[1], tonumber(ARGV[2])
local index = p .. 'rooms'
redis.call('ZREMRANGEBYSCORE', index, '-inf', now)
local out = {redis.call('ZCARD', index)}
for _, room in ipairs(redis.call('ZRANGE', index, 0, most - 1)) do
  local n = redis.call('ZCOUNT', p .. 'room:' .. room, '(' .. now, '+inf')
  if n > 0 then
    out[#out + 1] = room
    out[#out + 1] = n
  end
end
return out
"""
)

# KEYS: the name's hash, its kept-DM list. ARGV: node, DM (JSON), most, ttl_ms. Keeps a DM for
# a name in its presence grace, only while this node holds it (a node that took it over has
# already read the list): 1 kept, 0 not held here, -1 the list is full.
_KEEP_DM = """
if redis.call('HGET', KEYS[1], 'node') ~= ARGV[1] then return 0 end
if redis.call('LLEN', KEYS[2]) >= tonumber(ARGV[3]) then return -1 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
"""

# KEYS: a kept-DM list. Returns it and deletes it, at once.
_TAKE_DMS = """
local out = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
return out
"""

REFRESH_BATCH = 500  # names per refresh script call: keeps each script short for Redis
ROOMS_COUNTED = 2_000  # rooms counted by one ``rooms`` script: about 6 ms of Redis time


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    result: str  # new, mine, moved or taken
    old_node: str | None = None  # moved: the node that held the name (close its socket)
    old_room: str | None = None  # moved: the room it was in
    lookalike: str | None = None  # taken because this name, held elsewhere, looks the same


class RedisRegistry:
    """Names and room membership shared by every node of one Redis."""

    def __init__(self, client: Client, node: str, ttl_s: float) -> None:
        self.client = client
        self.node = node
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self._claim = client.register_script(_CLAIM)
        self._refresh = client.register_script(_REFRESH)
        self._release = client.register_script(_RELEASE)
        self._members = client.register_script(_MEMBERS)
        self._rooms = client.register_script(_ROOMS)
        self._keep_dm = client.register_script(_KEEP_DM)
        self._take_dms = client.register_script(_TAKE_DMS)

    async def claim(self, holder: Holder, offered_token: str | None) -> ClaimOutcome:
        """Take ``holder.name`` for this node unless another node holds it.

        A name held elsewhere is handed over when ``offered_token`` is its resume token
        (``moved``: the caller must tell ``old_node`` to let go of it). A name that looks like
        another live one (a shared ``names.confusable_keys`` key) is ``taken``, with
        ``lookalike`` set to the name in use.
        """
        reply = await self._run(
            self._claim,
            [],
            [
                REGISTRY,
                self.node,
                self.ttl_ms,
                holder.name,
                holder.token,
                holder.room,
                "1" if holder.reclaimable else "0",
                offered_token or "",
                _looks(holder.name),
            ],
        )
        if reply[0] == "moved":
            return ClaimOutcome("moved", reply[1], reply[2])
        if reply[0] == "lookalike":
            return ClaimOutcome("taken", lookalike=str(reply[1]))
        return ClaimOutcome(str(reply[0]))

    async def refresh(self, holders: list[Holder]) -> list[str]:
        """Extend this node's names by ``ttl`` (and record their rooms); return lost names."""
        lost: list[str] = []
        for start in range(0, len(holders), REFRESH_BATCH):
            args: list[Any] = [REGISTRY, self.node, self.ttl_ms]
            for h in holders[start : start + REFRESH_BATCH]:
                args += [h.name, h.token, h.room, "1" if h.reclaimable else "0", _looks(h.name)]
            lost += await self._run(self._refresh, [], args)
        return lost

    async def release(self, name: str) -> None:
        """Free ``name`` if this node holds it."""
        await self._run(self._release, [], [REGISTRY, self.node, name, _looks(name)])

    async def members(self, rooms: list[str]) -> dict[str, set[str]]:
        """Return the live names of each room in ``rooms``."""
        if not rooms:
            return {}
        reply = await self._run(self._members, [f"{REGISTRY}room:{r}" for r in rooms], [])
        return {room: set(names) for room, names in zip(rooms, reply, strict=True)}

    async def rooms(self, most: int = ROOMS_COUNTED) -> tuple[dict[str, int], int]:
        """Return the live member count of the rooms with members (on every node), and how
        many more rooms were not counted (past ``most``)."""
        reply = await self._run(self._rooms, [], [REGISTRY, most])
        counted = int(reply[0])
        pairs = reply[1:]
        counts = {str(pairs[i]): int(pairs[i + 1]) for i in range(0, len(pairs), 2)}
        return counts, max(0, counted - most)

    async def holds(self, name: str) -> bool:
        """Return whether any node holds ``name``."""
        try:
            return bool(await command(self.client.exists(f"{REGISTRY}name:{name}")))
        except REDIS_DOWN as exc:
            raise Unavailable(f"redis registry unavailable: {exc}") from None

    async def keep_dm(self, name: str, dm: str, most: int, ttl_s: float) -> int:
        """Keep ``dm`` (JSON) for ``name``'s resume if this node holds it and fewer than ``most``
        are kept; return 1 kept, 0 not held here, -1 full. The list expires after ``ttl_s``."""
        keys = [f"{REGISTRY}name:{name}", f"{REGISTRY}dms:{name}"]
        ttl_ms = max(1, round(ttl_s * 1000))
        return int(await self._run(self._keep_dm, keys, [self.node, dm, most, ttl_ms]))

    async def take_dms(self, name: str) -> list[str]:
        """Return the DMs kept for ``name`` (JSON, oldest first) and forget them."""
        reply = await self._run(self._take_dms, [f"{REGISTRY}dms:{name}"], [])
        return [str(item) for item in reply]

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        try:
            # A script that names no key still names one, for Redis Cluster to route it.
            return await command(script(keys=keys or [ROUTE], args=args))
        except REDIS_DOWN as exc:
            raise Unavailable(f"redis registry unavailable: {exc}") from None


def _looks(name: str) -> str:
    """Return ``name``'s look-alike keys as one script argument (see ``_LOOKS``)."""
    return "\n".join(sorted(confusable_keys(name)))
