"""What one load test is asked to do: ``BenchConfig``, its scenarios and dialects (stdlib only).

The CLI builds a ``BenchConfig`` from its flags and takes its defaults from here, so there is
one copy of each; ``BenchConfig`` checks the values a flag parser cannot (the URL's shape) and
raises ``ConfigError`` (bad usage, exit status 2) for them. Imports no network stack, so
``wschat --help`` stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from wschat.errors import ConfigError

# Under ``wschat serve``'s default per-connection rate limit (20/s, burst 40): the scenarios
# where a connection sends default to an open loop at this rate (issue 18).
DEFAULT_RATE = 10.0


class Scenario(StrEnum):
    """What the connections do once open."""

    CONNECT = "connect"  # open and hold n connections for --duration
    ECHO = "echo"  # every connection does round trips on /ws
    FANOUT = "fanout"  # --senders connections send, all n in one room receive
    CHAT = "chat"  # every connection sends and receives every message of the room


class Protocol(StrEnum):
    """Which dialect to speak; ``auto`` offers ``wschat.v1`` and falls back to plain."""

    AUTO = "auto"
    V1 = "v1"
    PLAIN = "plain"


def default_rate(scenario: Scenario) -> float:
    """Return the ``--rate`` a scenario runs at when none is given.

    ``fanout`` and ``chat`` send through the chat, which ``wschat serve`` rate-limits per
    connection: they run an open loop under that limit. ``echo`` (not rate-limited) runs a
    closed loop; ``connect`` sends nothing.
    """
    return DEFAULT_RATE if scenario in (Scenario.FANOUT, Scenario.CHAT) else 0.0


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """Everything a run needs; the CLI's flags map one to one onto these fields.

    Raises ``ConfigError`` when ``url`` is not a ``ws://`` or ``wss://`` URL with a host.
    """

    url: str = "ws://127.0.0.1:8000"
    n: int = 500
    scenario: Scenario = Scenario.FANOUT
    protocol: Protocol = Protocol.AUTO
    size: int = 64
    duration_s: float = 10.0
    messages: int = 0  # per sender; 0: until --duration
    rate: float = 0.0  # messages per second per sender; 0: closed loop
    senders: int = 1  # fanout only
    ramp_s: float = 0.0  # spread connection opens over this many seconds
    room: str | None = None  # default: a fresh room per run
    connect_timeout_s: float = 10.0
    reply_timeout_s: float = 5.0  # closed loop: wait this long for one's own message
    drain_timeout_s: float = 5.0
    concurrency: int = 200  # handshakes in flight at once
    spread: bool | None = None  # None: spread source addresses when the target is loopback
    source_offset: int = 0  # --processes: this process's first source address (see limits)
    # --processes, fanout and chat: the children share one room, one run id and one numbering
    # of the connections, and meet at each phase over two pipes (see ``barrier``)
    run_id: str | None = None  # default: a fresh one per run
    index_offset: int = 0  # this process's first connection number
    sync_fds: tuple[int, int] | None = None  # (read, write): the parent's pipes

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise ConfigError(f"--url must look like ws://HOST:PORT, not {self.url!r}")
        if self.scenario is Scenario.FANOUT and self.senders < 1 and self.run_id is None:
            # only a child of a shared-room run may hold receivers only
            raise ConfigError("fanout needs --senders 1 or more")
