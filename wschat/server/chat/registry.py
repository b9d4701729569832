"""The shared name and presence registry in Redis: who holds which name, in which room.

Liveness is per node, not per name (issue 19): each node keeps one key
``wschat:{registry}:node:NODE`` alive (``ttl``, renewed by its heartbeat every ``ttl``/3) and
everything it holds points at it, so a heartbeat is a few commands whatever the node holds.
Refreshing every name's TTL instead cost each of 4 workers 15,000 names' worth of scripts
every 3.3 s at 60,000 connections, on the Redis that claims wait for.

- Each held name is a hash ``wschat:{registry}:name:NAME`` (owning node, resume token, room,
  whether it may be reclaimed, its look-alike keys), live while its node's key exists; each
  node's names are also in the set ``wschat:{registry}:names:NODE``.
- A room's members are one set of names per node, ``wschat:{registry}:in:ROOM NODE`` (a room
  name holds no space), and ``wschat:{registry}:nodes-in:ROOM`` lists the nodes with such a
  set; a room's members are the union of its live nodes' sets. ``wschat:{registry}:rooms``
  indexes the rooms with members (the answer to ``rooms``). Every change of a room's
  members is logged in ``wschat:{registry}:log:ROOM`` (the last ``LOG_KEPT``) and counted
  in its version (hash ``versions``), so a node's heartbeat reads what changed since its
  last read, not every member again.
- Each of a held name's look-alike keys (``names.confusable_keys``, the very keys a single
  process indexes by) is a string ``wschat:{registry}:look:KEY`` naming its holder: a name
  whose key is held by another live name is refused as its look-alike (issue 15), whichever
  node holds it.
- ``wschat:{registry}:nodes`` scores each node by when its key expires. A node that dies
  stops its heartbeat: its key expires, at once its names are free to claim and its members
  drop out of every read of a room (which deletes its sets there); the other nodes'
  heartbeats then sweep its names and look-alike keys away, a bounded batch per script.

Every change is one Lua script, so a name is never held by two live nodes. The scripts build
key names, so every key shares the hash tag ``{registry}``: on a Redis Cluster they all live
on one slot. A node's key holds ``beat`` once its heartbeat has registered all its names; a
missing key (Redis lost the registry, or the node stalled past ``ttl`` and was swept) makes
the heartbeat register every name again (``refresh``), which also finds the names another
node took meanwhile.

It is the ``Cluster``'s (``chat.cluster``) and lives beside it: it is not a broker. Imports
redis-py, ``wschat.broker.redis`` (the key prefix) and the core; commands that cannot reach
Redis raise ``Unavailable``.

DMs for a name in its presence grace wait in a list ``wschat:{registry}:dms:NAME`` until the
name is resumed on any node (``keep_dm``/``take_dms``), expiring with the grace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wschat.broker.redis import KEY_PREFIX, REDIS_DOWN, Client, Gate
from wschat.errors import Unavailable
from wschat.names import confusable_keys
from wschat.rooms import Holder

# Every registry key shares one Redis Cluster hash tag: the scripts build key names (a name's
# look-alike keys, a room's set), so all of them must live on one slot (issue 14).
REGISTRY = KEY_PREFIX + "{registry}:"
ROUTE = REGISTRY + "route"  # never written: where a script without keys is sent

# Changes of a room's members kept in its log (``changes`` reads a room whole when a reader is
# further behind): about 40 bytes each.
LOG_KEPT = 5_000

# Every script's first argument is the key prefix (``REGISTRY``); this prelude names it ``p``
# and defines what the scripts share.
_BASE = f"""
local p = ARGV[1]
local LOG_KEPT = {LOG_KEPT}
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Look-alike keys travel as one argument, joined by newlines: a valid name holds no control
-- character, so neither does any of its keys.
local function looks(joined)
  local out = {{}}
  for k in string.gmatch(joined, '[^\\n]+') do out[#out + 1] = k end
  return out
end
local function live(node)
  return redis.call('EXISTS', p .. 'node:' .. node) == 1
end
-- The live node that holds name, or false.
local function holder(name)
  local n = redis.call('HGET', p .. 'name:' .. name, 'node')
  if n and live(n) then return n end
  return false
end
-- Make sure node counts as live: a claim before its first heartbeat, or after Redis lost the
-- registry (the heartbeat then registers all its names again: the key is not 'beat').
local function alive(node, ttl)
  local key = p .. 'node:' .. node
  if redis.call('EXISTS', key) == 0 then
    redis.call('SET', key, 'claim', 'PX', ttl)
    redis.call('ZADD', p .. 'nodes', now_ms() + ttl, node)
  end
end
-- Log changes of room's members ('+NAME', '-NAME'): each one is a version of the room.
local function bump(room, changes)
  local log = p .. 'log:' .. room
  for _, change in ipairs(changes) do redis.call('RPUSH', log, change) end
  redis.call('LTRIM', log, -LOG_KEPT, -1)
  redis.call('HINCRBY', p .. 'versions', room, #changes)
end
-- node has no members left in room (or died).
local function gone(room, node)
  local nodes = p .. 'nodes-in:' .. room
  redis.call('SREM', nodes, node)
  if redis.call('SCARD', nodes) == 0 then
    redis.call('ZREM', p .. 'rooms', room)
    redis.call('DEL', p .. 'log:' .. room)  -- its version stays: readers read it all again
  end
end
local function enter(room, node, name)
  if redis.call('SADD', p .. 'in:' .. room .. ' ' .. node, name) == 1 then
    bump(room, {{'+' .. name}})
    redis.call('SADD', p .. 'nodes-in:' .. room, node)
    redis.call('ZADD', p .. 'rooms', 0, room)
    redis.call('SADD', p .. 'rooms-of:' .. node, room)
  end
end
local function leave(room, node, name)
  local set = p .. 'in:' .. room .. ' ' .. node
  if redis.call('SREM', set, name) == 1 then
    bump(room, {{'-' .. name}})
    if redis.call('SCARD', set) == 0 then gone(room, node) end
  end
end
-- A dead node's members of room: dropped at once.
local function drop(room, node)
  local set = p .. 'in:' .. room .. ' ' .. node
  local changes = {{}}
  for _, name in ipairs(redis.call('SMEMBERS', set)) do changes[#changes + 1] = '-' .. name end
  if #changes > 0 then
    redis.call('DEL', set)
    bump(room, changes)
  end
  gone(room, node)
end
-- Take name (whose hash says node, room) out of that node's sets.
local function detach(name, node, room)
  redis.call('SREM', p .. 'names:' .. node, name)
  if room then leave(room, node, name) end
end
local function hold(node, name, token, room, reclaimable, joined)
  local key = p .. 'name:' .. name
  redis.call('HSET', key, 'node', node, 'token', token, 'room', room,
             'reclaimable', reclaimable, 'looks', joined)
  redis.call('PERSIST', key)  -- a hash written by a version that gave names a TTL
  redis.call('SADD', p .. 'names:' .. node, name)
  enter(room, node, name)
end
"""

# ARGV: prefix, node, ttl_ms, name, token, room, reclaimable, offered token, look-alike keys.
# Returns {'new'} | {'mine'} | {'moved', old_node, old_room} | {'taken'} |
# {'lookalike', held_name}. A name whose node is dead is free: 'new'.
_CLAIM = (
    _BASE
    + """
local node, ttl, name, room = ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[6]
local mine = looks(ARGV[9])
for _, k in ipairs(mine) do
  local other = redis.call('GET', p .. 'look:' .. k)
  if other and other ~= name and holder(other) then return {'lookalike', other} end
end
local cur = redis.call('HMGET', p .. 'name:' .. name, 'node', 'token', 'room', 'reclaimable')
local result = {'new'}
if cur[1] == node then
  result = {'mine'}
elseif cur[1] and live(cur[1]) then
  if ARGV[8] == '' or cur[4] ~= '1' or cur[2] ~= ARGV[8] then return {'taken'} end
  result = {'moved', cur[1], cur[3]}
end
if cur[1] and (cur[1] ~= node or cur[3] ~= room) then detach(name, cur[1], cur[3]) end
alive(node, ttl)
hold(node, name, ARGV[5], room, ARGV[7], ARGV[9])
for _, k in ipairs(mine) do redis.call('SET', p .. 'look:' .. k, name) end
return result
"""
)

# ARGV: prefix, node, ttl_ms, then (name, token, room, reclaimable, look-alike keys)
# repeated. Records (or re-creates, after Redis lost the registry) the names this node holds
# and their look-alike keys that no live name took meanwhile; returns the names another live
# node holds now.
_REFRESH = (
    _BASE
    + """
local node, ttl = ARGV[2], tonumber(ARGV[3])
alive(node, ttl)
local lost = {}
for i = 4, #ARGV, 5 do
  local name, room = ARGV[i], ARGV[i + 2]
  local cur = redis.call('HMGET', p .. 'name:' .. name, 'node', 'room')
  if cur[1] and cur[1] ~= node and live(cur[1]) then
    lost[#lost + 1] = name
  else
    if cur[1] and (cur[1] ~= node or cur[2] ~= room) then detach(name, cur[1], cur[2]) end
    hold(node, name, ARGV[i + 1], room, ARGV[i + 3], ARGV[i + 4])
    for _, k in ipairs(looks(ARGV[i + 4])) do
      local look = p .. 'look:' .. k
      local other = redis.call('GET', look)
      if not other or other == name or not holder(other) then redis.call('SET', look, name) end
    end
  end
end
return lost
"""
)

# ARGV: prefix, node, name, look-alike keys. Frees the name if this node holds it.
_RELEASE = (
    _BASE
    + """
local node, name = ARGV[2], ARGV[3]
local key = p .. 'name:' .. name
local cur = redis.call('HMGET', key, 'node', 'room')
if cur[1] ~= node then return 0 end
redis.call('DEL', key)
detach(name, node, cur[2])
for _, k in ipairs(looks(ARGV[4])) do
  local look = p .. 'look:' .. k
  if redis.call('GET', look) == name then redis.call('DEL', look) end
end
return 1
"""
)

# ARGV: prefix, node, ttl_ms, most. Keeps node live for ttl; returns {1 if its key was still
# there from a heartbeat (its names are registered) else 0, then up to ``most`` dead nodes
# that still have names or members here (to ``sweep``)}.
_BEAT = (
    _BASE
    + """
local node, ttl = ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local key = p .. 'node:' .. node
local was = redis.call('GET', key)
redis.call('SET', key, 'beat', 'PX', ttl)
redis.call('ZADD', p .. 'nodes', now + ttl, node)
local out = {0}
if was == 'beat' then out[1] = 1 end
local nodes = p .. 'nodes'
for _, d in ipairs(redis.call('ZRANGEBYSCORE', nodes, '-inf', now, 'LIMIT', 0, ARGV[4])) do
  if not live(d) then out[#out + 1] = d end
end
return out
"""
)

# ARGV: prefix, dead node, most. Deletes up to ``most`` of a dead node's names (and their
# look-alike keys), then, once none is left, its members everywhere; returns 1 while more
# is left, else 0 (also when the node is live again).
_SWEEP = (
    _BASE
    + """
local dead = ARGV[2]
if live(dead) then return 0 end
local names = p .. 'names:' .. dead
for _, name in ipairs(redis.call('SPOP', names, tonumber(ARGV[3]))) do
  local key = p .. 'name:' .. name
  local cur = redis.call('HMGET', key, 'node', 'room', 'looks')
  if cur[1] == dead then
    redis.call('DEL', key)
    if cur[2] then leave(cur[2], dead, name) end
    for _, k in ipairs(looks(cur[3] or '')) do
      local look = p .. 'look:' .. k
      if redis.call('GET', look) == name then redis.call('DEL', look) end
    end
  end
end
if redis.call('SCARD', names) > 0 then return 1 end
for _, room in ipairs(redis.call('SMEMBERS', p .. 'rooms-of:' .. dead)) do drop(room, dead) end
redis.call('DEL', p .. 'rooms-of:' .. dead)
redis.call('ZREM', p .. 'nodes', dead)
return 0
"""
)

# ARGV: prefix, node. A node that stops: its names are free at once (swept by the others).
_RETIRE = (
    _BASE
    + """
redis.call('DEL', p .. 'node:' .. ARGV[2])
redis.call('ZADD', p .. 'nodes', 0, ARGV[2])
return 1
"""
)

# Shared by MEMBERS and STATE: the live nodes with members in room (dropping the dead ones).
_LIVE_IN = """
local function live_in(room)
  local out = {}
  for _, n in ipairs(redis.call('SMEMBERS', p .. 'nodes-in:' .. room)) do
    if live(n) then out[#out + 1] = p .. 'in:' .. room .. ' ' .. n else drop(room, n) end
  end
  return out
end
local function version(room)
  return tonumber(redis.call('HGET', p .. 'versions', room) or '0')
end
local function names_in(sets)
  local names = {}
  for _, set in ipairs(sets) do
    for _, name in ipairs(redis.call('SMEMBERS', set)) do names[#names + 1] = name end
  end
  return names
end
"""

# ARGV: prefix, rooms. Returns each room's {version, {live names}}.
_MEMBERS = (
    _BASE
    + _LIVE_IN
    + """
local out = {}
for i = 2, #ARGV do
  local names = names_in(live_in(ARGV[i]))
  out[i - 1] = {version(ARGV[i]), names}
end
return out
"""
)

# ARGV: prefix, then (room, the version a reader has, or -1) repeated. Returns for each room
# {version, live member count, 'log', {changes since the reader's version}} while its log
# still has them, else {version, count, 'all', {live names}}.
_CHANGES = (
    _BASE
    + _LIVE_IN
    + """
local out = {}
for i = 2, #ARGV, 2 do
  local room, had = ARGV[i], tonumber(ARGV[i + 1])
  local sets = live_in(room)
  local v = version(room)
  local n = 0
  for _, set in ipairs(sets) do n = n + redis.call('SCARD', set) end
  local log = p .. 'log:' .. room
  if had == v then
    out[#out + 1] = {v, n, 'log', {}}
  elseif had >= 0 and had < v and v - had <= redis.call('LLEN', log) then
    out[#out + 1] = {v, n, 'log', redis.call('LRANGE', log, had - v, -1)}
  else
    out[#out + 1] = {v, n, 'all', names_in(sets)}
  end
end
return out
"""
)

# ARGV: prefix, most. Counts the live names of at most ``most`` rooms (dropping the dead
# nodes' members and the rooms left with none); returns {rooms indexed, room, count, room,
# count, ...} (rooms with none left out).
_ROOMS = (
    _BASE
    + _LIVE_IN
    + """
local index, most = p .. 'rooms', tonumber(ARGV[2])
local out = {0}
for _, room in ipairs(redis.call('ZRANGE', index, 0, most - 1)) do
  local n = 0
  for _, set in ipairs(live_in(room)) do n = n + redis.call('SCARD', set) end
  if n > 0 then
    out[#out + 1] = room
    out[#out + 1] = n
  elseif redis.call('SCARD', p .. 'nodes-in:' .. room) == 0 then
    redis.call('ZREM', index, room)  -- e.g. indexed by a version that scored rooms by expiry
  end
end
out[1] = redis.call('ZCARD', index)
return out
"""
)

# ARGV: prefix, name. Returns 1 if a live node holds name.
_HOLDS = (
    _BASE
    + """
if holder(ARGV[2]) then return 1 end
return 0
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
SWEEP_BATCH = 500  # a dead node's names deleted by one sweep script
ROOMS_COUNTED = 2_000  # rooms counted by one ``rooms`` script: about 6 ms of Redis time
DEAD_LISTED = 16  # dead nodes one heartbeat learns of (the next one lists the rest)


@dataclass(frozen=True, slots=True)
class ClaimOutcome:
    result: str  # new, mine, moved or taken
    old_node: str | None = None  # moved: the node that held the name (close its socket)
    old_room: str | None = None  # moved: the room it was in
    lookalike: str | None = None  # taken because this name, held elsewhere, looks the same


@dataclass(frozen=True, slots=True)
class Beat:
    registered: bool  # this node's key was kept alive since its last heartbeat
    dead: list[str]  # dead nodes whose names or members are still in the registry


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed in a room since a reader's version (see ``RedisRegistry.changes``)."""

    version: int  # the room's version now
    count: int  # its live members now
    log: list[str] | None = None  # its changes since, oldest first: '+NAME' or '-NAME'
    names: set[str] | None = None  # else: all its live members


class RedisRegistry:
    """Names and room membership shared by every node of one Redis."""

    def __init__(self, client: Client, node: str, ttl_s: float, gate: Gate | None = None) -> None:
        self.client = client
        self.gate = gate or Gate()  # shared with the store and the broker (one pool)
        self.node = node
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self._claim = client.register_script(_CLAIM)
        self._refresh = client.register_script(_REFRESH)
        self._release = client.register_script(_RELEASE)
        self._beat = client.register_script(_BEAT)
        self._sweep = client.register_script(_SWEEP)
        self._retire = client.register_script(_RETIRE)
        self._members = client.register_script(_MEMBERS)
        self._changes = client.register_script(_CHANGES)
        self._rooms = client.register_script(_ROOMS)
        self._holds = client.register_script(_HOLDS)
        self._keep_dm = client.register_script(_KEEP_DM)
        self._take_dms = client.register_script(_TAKE_DMS)

    async def claim(self, holder: Holder, offered_token: str | None) -> ClaimOutcome:
        """Take ``holder.name`` for this node unless another live node holds it.

        A name held elsewhere is handed over when ``offered_token`` is its resume token
        (``moved``: the caller must tell ``old_node`` to let go of it). A name that looks like
        another live one (a shared ``names.confusable_keys`` key) is ``taken``, with
        ``lookalike`` set to the name in use.
        """
        reply = await self._run(
            self._claim,
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
        """Record these names of this node (and their rooms); return those another live node
        holds now. For a room change, and to register every name again after ``beat`` said
        the node's key was lost: this costs a script per ``REFRESH_BATCH`` names."""
        lost: list[str] = []
        for start in range(0, len(holders), REFRESH_BATCH):
            args: list[Any] = [REGISTRY, self.node, self.ttl_ms]
            for h in holders[start : start + REFRESH_BATCH]:
                args += [h.name, h.token, h.room, "1" if h.reclaimable else "0", _looks(h.name)]
            lost += await self._run(self._refresh, args)
        return lost

    async def beat(self) -> Beat:
        """Keep this node live for ``ttl``: one short script, whatever the node holds.

        If ``registered`` is false, the registry lost this node's key (Redis lost its data,
        or this node was too slow for ``ttl`` and may have been swept): the caller must
        ``refresh`` all its names. ``dead`` lists nodes to ``sweep``.
        """
        reply = await self._run(self._beat, [REGISTRY, self.node, self.ttl_ms, DEAD_LISTED])
        return Beat(bool(reply[0]), [str(node) for node in reply[1:]])

    async def sweep(self, node: str) -> bool:
        """Delete up to ``SWEEP_BATCH`` names of a dead ``node``; return whether more are
        left. Its members already count for nothing: every read of a room drops them."""
        return bool(await self._run(self._sweep, [REGISTRY, node, SWEEP_BATCH]))

    async def retire(self) -> None:
        """Let every name of this node go at once (it is stopping): the others sweep them."""
        await self._run(self._retire, [REGISTRY, self.node])

    async def release(self, name: str) -> None:
        """Free ``name`` if this node holds it."""
        await self._run(self._release, [REGISTRY, self.node, name, _looks(name)])

    async def members(self, rooms: list[str]) -> dict[str, tuple[int, set[str]]]:
        """Return the version and the live names of each room in ``rooms`` (see ``state``)."""
        if not rooms:
            return {}
        reply = await self._run(self._members, [REGISTRY, *rooms])
        return {
            room: (int(version), set(names))
            for room, (version, names) in zip(rooms, reply, strict=True)
        }

    async def changes(self, had: dict[str, int | None]) -> dict[str, Changes]:
        """Return what changed in each room of ``had`` since the version the caller has of it
        (None: none), at the cost of the changes rather than of the room's members.

        A room's version counts the changes of its members (the log keeps the last
        ``LOG_KEPT``): a caller too far behind, or with a version this registry never had,
        gets the room's whole member list instead (``log`` is None).
        """
        if not had:
            return {}
        args: list[Any] = [REGISTRY]
        for room, version in had.items():
            args += [room, -1 if version is None else version]
        reply = await self._run(self._changes, args)
        out: dict[str, Changes] = {}
        for room, (version, count, kind, items) in zip(had, reply, strict=True):
            if kind == "log":
                out[room] = Changes(int(version), int(count), log=[str(i) for i in items])
            else:
                out[room] = Changes(int(version), int(count), names={str(i) for i in items})
        return out

    async def rooms(self, most: int = ROOMS_COUNTED) -> tuple[dict[str, int], int]:
        """Return the live member count of the rooms with members (on every node), and how
        many more rooms were not counted (past ``most``)."""
        reply = await self._run(self._rooms, [REGISTRY, most])
        counted = int(reply[0])
        pairs = reply[1:]
        counts = {str(pairs[i]): int(pairs[i + 1]) for i in range(0, len(pairs), 2)}
        return counts, max(0, counted - most)

    async def holds(self, name: str) -> bool:
        """Return whether any live node holds ``name``."""
        return bool(await self._run(self._holds, [REGISTRY, name]))

    async def keep_dm(self, name: str, dm: str, most: int, ttl_s: float) -> int:
        """Keep ``dm`` (JSON) for ``name``'s resume if this node holds it and fewer than ``most``
        are kept; return 1 kept, 0 not held here, -1 full. The list expires after ``ttl_s``."""
        keys = [f"{REGISTRY}name:{name}", f"{REGISTRY}dms:{name}"]
        ttl_ms = max(1, round(ttl_s * 1000))
        return int(await self._run(self._keep_dm, [self.node, dm, most, ttl_ms], keys))

    async def take_dms(self, name: str) -> list[str]:
        """Return the DMs kept for ``name`` (JSON, oldest first) and forget them."""
        reply = await self._run(self._take_dms, [], [f"{REGISTRY}dms:{name}"])
        return [str(item) for item in reply]

    async def _run(self, script: Any, args: list[Any], keys: list[str] | None = None) -> Any:
        try:
            # A script that names no key still names one, for Redis Cluster to route it.
            return await self.gate.run(script(keys=keys or [ROUTE], args=args))
        except REDIS_DOWN as exc:
            raise Unavailable(f"redis registry unavailable: {exc}") from None


def _looks(name: str) -> str:
    """Return ``name``'s look-alike keys as one script argument (see ``looks`` in ``_BASE``)."""
    return "\n".join(sorted(confusable_keys(name)))
