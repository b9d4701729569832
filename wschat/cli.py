"""The ``wschat`` command line: parse flags, call one function, map errors to exit codes.

Each command imports its own stack inside its body, so ``wschat join`` never loads FastAPI
and ``wschat --help`` loads neither. Only this module turns exceptions into a red line on
stderr and an exit code, the same for every command (``ExitCode``): 0 done, 1 failed (a
``WschatError``), 2 bad usage (a flag Click rejects, or a ``ConfigError``: a value we cannot
use), 3 ``bench --fail-if`` did not hold, 130 Ctrl-C.

Help texts are rendered as rich markup: a literal ``[`` is written ``\\[``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from wschat import __version__
from wschat.bench.config import BenchConfig, Protocol, Scenario, default_rate
from wschat.errors import ConfigError, WschatError
from wschat.server.settings import ServerSettings


class ExitCode(IntEnum):
    """The exit status of every ``wschat`` command (README "Exit codes")."""

    OK = 0
    FAILED = 1  # a WschatError: no server, a broker that does not answer, ...
    USAGE = 2  # bad usage: a flag Click rejects, or a ConfigError (a value we cannot use)
    FAIL_IF = 3  # bench --fail-if: a condition did not hold
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


def exit_code(exc: BaseException) -> ExitCode:
    """Return the exit status for an exception that ends a command."""
    if isinstance(exc, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(exc, ConfigError):
        return ExitCode.USAGE
    return ExitCode.FAILED


@contextmanager
def _exit_codes() -> Iterator[None]:
    """Turn what a command raises into one red line and its ``ExitCode``."""
    try:
        yield
    except KeyboardInterrupt:
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except WschatError as exc:
        _fail(str(exc), exit_code(exc))


class LogLevel(StrEnum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"
    trace = "trace"


class LogFormat(StrEnum):
    text = "text"
    json = "json"


app = typer.Typer(
    name="wschat",
    help="A real-time chat server, a terminal chat client and a WebSocket load tester.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


_SERVE = ServerSettings()  # the defaults of every serve flag: one copy, in ServerSettings
_LOG_LEVEL, _LOG_FORMAT = LogLevel(_SERVE.log_level), LogFormat(_SERVE.log_format)


def _default_db() -> Path:
    import platformdirs

    return platformdirs.user_data_path("wschat") / "history.sqlite3"


def _check_db(db: str) -> None:
    """Exit 2 if ``--db`` names a file in a directory that does not exist (a typo, most
    likely): the store would create that directory, or fail later."""
    if db == ":memory:":
        return
    directory = Path(db).parent
    if not directory.is_dir():
        _fail(f"--db {db}: directory {directory} does not exist", code=ExitCode.USAGE)


def _fail(message: str, code: int = ExitCode.FAILED) -> NoReturn:
    typer.secho(f"wschat: {message}", fg="red", err=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"wschat {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """A real-time chat server, a terminal chat client and a WebSocket load tester."""


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(envvar="WSCHAT_HOST", help="Address to listen on.")
    ] = _SERVE.host,
    port: Annotated[
        int, typer.Option(envvar="WSCHAT_PORT", min=0, max=65535, help="Port; 0 picks a free one.")
    ] = _SERVE.port,
    max_message_size: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_MAX_MESSAGE_SIZE",
            min=1,
            help="Largest incoming frame in bytes; larger closes 1009.",
        ),
    ] = _SERVE.max_message_bytes,
    outbox_size: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_OUTBOX_SIZE",
            min=1,
            help="Frames queued per connection before a slow reader is closed with 4001.",
        ),
    ] = _SERVE.outbox_size,
    outbox_bytes: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_OUTBOX_BYTES",
            min=64 * 1024,
            help="Bytes queued per connection before a slow reader is closed with 4001; "
            "a replay is trimmed to half of it.",
        ),
    ] = _SERVE.outbox_bytes,
    ping_interval: Annotated[
        float,
        typer.Option(
            envvar="WSCHAT_PING_INTERVAL", min=0, help="Seconds between pings; 0 turns pings off."
        ),
    ] = _SERVE.ping_interval_s,
    ping_timeout: Annotated[
        float,
        typer.Option(
            envvar="WSCHAT_PING_TIMEOUT", min=0, help="Seconds to wait for a pong before closing."
        ),
    ] = _SERVE.ping_timeout_s,
    shutdown_timeout: Annotated[
        float,
        typer.Option(
            envvar="WSCHAT_SHUTDOWN_TIMEOUT",
            min=0,
            help="On SIGTERM/Ctrl-C, seconds to let clients read their 1001 close before aborting.",
        ),
    ] = _SERVE.shutdown_timeout_s,
    drain_seconds: Annotated[
        float,
        typer.Option(
            envvar="WSCHAT_DRAIN_SECONDS",
            min=0,
            help="On SIGTERM, spread the 1001 closes over this long in jittered batches "
            "(at most half of --shutdown-timeout); 0 closes everyone at once.",
        ),
    ] = _SERVE.drain_s,
    drain_batch: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_DRAIN_BATCH",
            min=1,
            help="Connections closed together in one drain batch.",
        ),
    ] = _SERVE.drain_batch,
    log_level: Annotated[
        LogLevel,
        typer.Option(envvar="WSCHAT_LOG_LEVEL", case_sensitive=False, help="Log threshold."),
    ] = _LOG_LEVEL,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            envvar="WSCHAT_LOG_FORMAT",
            case_sensitive=False,
            help="text, or json for one JSON object per line.",
        ),
    ] = _LOG_FORMAT,
    db: Annotated[
        str | None,
        typer.Option(
            envvar="WSCHAT_DB",
            help="SQLite history file, in a directory that exists; ':memory:' keeps none. "
            f"\\[default: {_default_db()}]",
            show_default=False,
        ),
    ] = None,
    history_size: Annotated[
        int, typer.Option(envvar="WSCHAT_HISTORY_SIZE", min=1, help="Messages kept per room.")
    ] = _SERVE.history_size,
    db_timeout: Annotated[
        float,
        typer.Option(
            envvar="WSCHAT_DB_TIMEOUT",
            min=0.05,
            help="Seconds a SQLite history call may wait (for a locked file); then the say "
            "gets the error 'unavailable'.",
        ),
    ] = _SERVE.db_timeout_s,
    replay_count: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_REPLAY_COUNT",
            min=0,
            help="Messages a v1 client gets on entering a room without ?since=.",
        ),
    ] = _SERVE.replay_count,
    replay_max: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_REPLAY_MAX",
            min=1,
            help="Most messages replayed for ?since= (the newest; the welcome then says gap).",
        ),
    ] = _SERVE.replay_max,
    presence_limit: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_PRESENCE_LIMIT",
            min=0,
            help="Rooms with more members than this send no joined/left (clients ask with who).",
        ),
    ] = _SERVE.presence_limit,
    rooms_listed: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_ROOMS_LISTED",
            min=1,
            help="The answer to rooms lists at most this many rooms (the busiest), then 'more'.",
        ),
    ] = _SERVE.rooms_listed,
    presence_grace: Annotated[
        float,
        typer.Option(
            envvar="WSCHAT_PRESENCE_GRACE",
            min=0,
            help="Seconds a dropped v1 client keeps its name and place before 'left' is sent.",
        ),
    ] = _SERVE.presence_grace_s,
    dm_keep: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_DM_KEEP",
            min=0,
            help="DMs kept for a dropped v1 client during its grace, delivered when it resumes;"
            " more get the error not_delivered.",
        ),
    ] = _SERVE.dm_keep,
    secret: Annotated[
        str | None,
        typer.Option(
            envvar="WSCHAT_SECRET",
            help="Require a token signed with this secret on every chat connection (see 'wschat token').",
            show_default=False,
        ),
    ] = None,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            envvar="WSCHAT_ALLOW_ORIGIN",
            help="A browser origin allowed besides the server's own (repeatable; '*' allows all).",
            show_default=False,
        ),
    ] = None,
    rate: Annotated[
        float,
        typer.Option(
            "--rate-limit",
            envvar="WSCHAT_RATE_LIMIT",
            min=0,
            help="Chat messages per second per connection; 0: no limit.",
        ),
    ] = _SERVE.rate_per_s,
    burst: Annotated[
        int,
        typer.Option(
            "--rate-burst",
            envvar="WSCHAT_RATE_BURST",
            min=1,
            help="Messages a connection may send at once (bucket size).",
        ),
    ] = _SERVE.burst,
    max_connections: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_MAX_CONNECTIONS",
            min=0,
            help="Open WebSockets in total; past it handshakes get HTTP 503. 0: no limit.",
        ),
    ] = _SERVE.max_connections,
    max_connections_per_ip: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_MAX_CONNECTIONS_PER_IP",
            min=0,
            help="Open WebSockets per client address; past it handshakes get HTTP 429. 0: no limit.",
        ),
    ] = _SERVE.max_connections_per_ip,
    handshake_timeout: Annotated[
        float,
        typer.Option(
            envvar="WSCHAT_HANDSHAKE_TIMEOUT",
            min=0,
            help="Seconds a client has to send a complete request head (HTTP or upgrade); "
            "0: no limit.",
        ),
    ] = _SERVE.handshake_timeout_s,
    max_header_bytes: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_MAX_HEADER_BYTES",
            min=256,
            max=8192,
            help="Longest request line (else HTTP 414) or header line (else HTTP 431), in bytes.",
        ),
    ] = _SERVE.max_header_bytes,
    max_headers: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_MAX_HEADERS",
            min=8,
            max=128,
            help="Most header lines in a request; more get HTTP 431.",
        ),
    ] = _SERVE.max_headers,
    http_timeout: Annotated[
        float,
        typer.Option(
            envvar="WSCHAT_HTTP_TIMEOUT",
            min=0,
            help="Seconds a plain HTTP connection (not a WebSocket) may stay open: request, "
            "body and response must fit. 0: no limit.",
        ),
    ] = _SERVE.http_timeout_s,
    max_http_connections: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_MAX_HTTP_CONNECTIONS",
            min=0,
            help="Plain HTTP connections open at once; past it HTTP 503. 0: no limit.",
        ),
    ] = _SERVE.max_http_connections,
    max_fragments: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_MAX_FRAGMENTS",
            min=0,
            help="Frames one WebSocket message may be split into; more closes 1009. 0: no limit.",
        ),
    ] = _SERVE.max_fragments,
    fragment_timeout: Annotated[
        float,
        typer.Option(
            envvar="WSCHAT_FRAGMENT_TIMEOUT",
            min=0,
            help="Seconds to finish a fragmented message once begun; later closes 1008. 0: none.",
        ),
    ] = _SERVE.fragment_timeout_s,
    control_frame_rate: Annotated[
        float,
        typer.Option(
            envvar="WSCHAT_CONTROL_FRAME_RATE",
            min=0,
            help="Pings and pongs a client may send per second (twice that at once); more "
            "closes 1008. 0: no limit.",
        ),
    ] = _SERVE.control_rate_per_s,
    write_buffer: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_WRITE_BUFFER",
            min=1024,
            help="Unsent bytes per socket; above it the server stops reading from that socket "
            "until the client reads.",
        ),
    ] = _SERVE.write_buffer_bytes,
    broker: Annotated[
        str,
        typer.Option(
            envvar="WSCHAT_BROKER",
            help="'memory' (one process), or redis://[:PASSWORD@]HOST:PORT/DB to share rooms, "
            "names and history with every wschat process using that Redis; "
            "redis+sentinel://[:PASSWORD@]HOST:PORT,HOST:PORT/MASTER/DB to follow a "
            "Sentinel failover (docs/scaling.md).",
        ),
    ] = _SERVE.broker,
    workers: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_WORKERS",
            min=1,
            help="Worker processes sharing the port (/metrics and /healthz total them; they"
            " exit if this process dies); more than 1 needs --broker redis://...",
        ),
    ] = 1,
    node_ttl: Annotated[
        float,
        typer.Option(
            envvar="WSCHAT_NODE_TTL",
            min=0.3,
            help="With Redis: seconds after which a dead process's users leave everyone's presence.",
        ),
    ] = _SERVE.node_ttl_s,
    redis_wait: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_REDIS_WAIT",
            min=0,
            help="With Redis: acknowledge a message only once this many replicas have it "
            "(Redis WAIT, up to 1.5 s), so a failover keeps it. 0: do not wait.",
        ),
    ] = _SERVE.redis_wait,
    cid_ttl: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_CID_TTL",
            min=60,
            max=86_400,
            help="With Redis: seconds a say's cid is remembered, so that the same say sent "
            "again (a retry) is not stored twice. One small key per message in Redis.",
        ),
    ] = _SERVE.cid_ttl_s,
) -> None:
    """Run the chat server (echo at /ws, chat at /ws/{client_id}, a page at /)."""
    from wschat.server.chat.engine import is_redis
    from wschat.server.runner import serve as run_server
    from wschat.server.settings import ServerSettings

    if db is not None and not is_redis(broker):
        _check_db(db)

    settings = ServerSettings(
        host=host,
        port=port,
        max_message_bytes=max_message_size,
        outbox_size=outbox_size,
        outbox_bytes=outbox_bytes,
        ping_interval_s=ping_interval,
        ping_timeout_s=ping_timeout,
        shutdown_timeout_s=shutdown_timeout,
        log_level=log_level.value,
        log_format=log_format.value,
        drain_s=drain_seconds,
        drain_batch=drain_batch,
        db=db or str(_default_db()),
        history_size=history_size,
        db_timeout_s=db_timeout,
        replay_count=replay_count,
        replay_max=replay_max,
        presence_grace_s=presence_grace,
        dm_keep=dm_keep,
        presence_limit=presence_limit,
        rooms_listed=rooms_listed,
        secret=secret or None,
        allow_origins=tuple(allow_origin or ()),
        rate_per_s=rate,
        burst=burst,
        max_connections=max_connections,
        max_connections_per_ip=max_connections_per_ip,
        handshake_timeout_s=handshake_timeout,
        max_header_bytes=max_header_bytes,
        max_headers=max_headers,
        http_timeout_s=http_timeout,
        max_http_connections=max_http_connections,
        max_fragments=max_fragments,
        fragment_timeout_s=fragment_timeout,
        control_rate_per_s=control_frame_rate,
        write_buffer_bytes=write_buffer,
        broker=broker,
        node_ttl_s=node_ttl,
        redis_wait=redis_wait,
        cid_ttl_s=cid_ttl,
    )
    with _exit_codes():
        try:
            if workers > 1:
                from wschat.server.workers import serve_workers

                serve_workers(settings, workers)
            else:
                run_server(settings)
        except OSError as exc:
            _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


@app.command()
def token(
    name: Annotated[str, typer.Argument(help="The name the token lets its holder chat as.")],
    secret: Annotated[
        str,
        typer.Option(
            envvar="WSCHAT_SECRET",
            help="The server's --secret.",
            show_default=False,
            prompt=True,
            hide_input=True,
        ),
    ],
    ttl: Annotated[str, typer.Option(help="How long the token is valid: 90s, 15m, 1h, 7d.")] = "1h",
) -> None:
    """Print a signed token for NAME (send it as 'Authorization: Bearer TOKEN')."""
    from wschat.auth import issue_token, parse_ttl

    with _exit_codes():
        typer.echo(issue_token(name, secret, parse_ttl(ttl)))


@app.command()
def join(
    name: Annotated[str, typer.Argument(help="Your name in the chat.")],
    url: Annotated[
        str, typer.Option(envvar="WSCHAT_URL", help="The server: ws://HOST:PORT or wss://HOST.")
    ] = "ws://127.0.0.1:8000",
    room: Annotated[str, typer.Option(help="The room to enter.")] = "lobby",
    json_lines: Annotated[
        bool,
        typer.Option("--json", help="Print each event as a JSON line (implies the pipe mode)."),
    ] = False,
    token: Annotated[
        str | None,
        typer.Option(envvar="WSCHAT_TOKEN", help="Sent as 'Authorization: Bearer TOKEN'."),
    ] = None,
    cafile: Annotated[
        str | None, typer.Option(help="CA certificates (PEM) to verify a wss:// server with.")
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Do not verify the wss:// server's certificate.")
    ] = False,
    header: Annotated[
        list[str] | None,
        typer.Option("--header", "-H", help="Extra handshake header 'Name: value'; repeatable."),
    ] = None,
    bell: Annotated[
        bool,
        typer.Option(
            "--bell/--no-bell", help="Ring the bell for a line naming you and for a DM to you."
        ),
    ] = True,
    history: Annotated[
        bool,
        typer.Option(
            "--history/--no-history",
            help="Show the room's recent messages on joining; --no-history shows only what is "
            "said from then on (for a pipe, e.g. in CI logs).",
        ),
    ] = True,
) -> None:
    """Chat in the terminal; with a pipe, send stdin's lines and print events as lines.

    In a terminal: Enter sends, Alt-Enter starts a new line, PageUp/PageDown or the mouse
    wheel scroll (Alt-M turns the mouse off to select text), Tab completes, Ctrl-C clears
    the line and quits on an empty one (exit 130), Ctrl-D or /quit quits (0). Lines never
    sent are printed as 'unsent: ...' at the end, and the exit status is then 1. TERM=dumb
    gets plain lines and a plain prompt; NO_COLOR turns colours off.
    """
    from wschat.client.launcher import JoinOptions
    from wschat.client.launcher import join as run_client

    options = JoinOptions(
        name=name,
        url=url,
        room=room,
        json_lines=json_lines,
        token=token,
        cafile=cafile,
        insecure=insecure,
        headers=tuple(header or ()),
        bell=bell,
        history=history,
    )
    with _exit_codes():
        status = run_client(options)
    raise typer.Exit(status)


_BENCH = BenchConfig()  # the defaults of every bench flag
bench_app = typer.Typer(
    help="Load-test a WebSocket server; 'wschat bench compare' sets reports side by side.",
    no_args_is_help=False,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(bench_app, name="bench")


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    n: Annotated[int, typer.Option("-n", min=1, help="Number of connections to open.")] = _BENCH.n,
    url: Annotated[
        str, typer.Option(help="Server base URL; /ws and /ws/{id} are appended.")
    ] = _BENCH.url,
    scenario: Annotated[
        Scenario,
        typer.Option(
            case_sensitive=False,
            help="connect: open and hold; echo: round trips on /ws; fanout: --senders send to "
            "everyone in one room; chat: everyone sends and receives everything.",
        ),
    ] = _BENCH.scenario,
    protocol: Annotated[
        Protocol,
        typer.Option(
            case_sensitive=False,
            help="auto offers the wschat.v1 subprotocol and falls back to plain text; v1 "
            "requires it; plain never offers it.",
        ),
    ] = _BENCH.protocol,
    size: Annotated[
        int, typer.Option(min=1, help="Characters per message (padded).")
    ] = _BENCH.size,
    duration: Annotated[
        float, typer.Option(min=0.1, help="Seconds of sending (connect: of holding).")
    ] = _BENCH.duration_s,
    messages: Annotated[
        int, typer.Option(min=0, help="Messages per sender; 0 sends until --duration.")
    ] = _BENCH.messages,
    rate: Annotated[
        float | None,
        typer.Option(
            min=0,
            help="Messages per second per sender, open loop: latency counts from each "
            "message's intended send time. 0: closed loop, each sender waits for its own "
            f"message before the next. \\[default: {default_rate(Scenario.FANOUT):g} for "
            "fanout and chat (under wschat serve's default rate limit), 0 for echo]",
            show_default=False,
        ),
    ] = None,
    senders: Annotated[
        int, typer.Option(min=0, help="fanout: how many connections send.")
    ] = _BENCH.senders,
    ramp: Annotated[
        float, typer.Option(min=0, help="Spread opening the connections over this many seconds.")
    ] = _BENCH.ramp_s,
    room: Annotated[
        str | None, typer.Option(help="Room to use; default a fresh one per run.")
    ] = None,
    connect_timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds one connection may take to open.")
    ] = _BENCH.connect_timeout_s,
    drain_timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for messages still in flight.")
    ] = _BENCH.drain_timeout_s,
    spread: Annotated[
        bool | None,
        typer.Option(
            "--spread/--no-spread",
            help="Bind sockets to many 127.0.0.0/8 source addresses, at most 100 per address "
            "(default: for a loopback target).",
            show_default=False,
        ),
    ] = None,
    processes: Annotated[
        int,
        typer.Option(
            min=1,
            help="Spread the connections and senders over this many processes (more than one "
            "process's descriptor limit, every core); the report merges their histograms and "
            "counts exactly. fanout and chat keep ONE room shared by all processes: every "
            "receiver hears every sender, and loss is checked across processes.",
        ),
    ] = 1,
    room_per_process: Annotated[
        bool,
        typer.Option(
            "--room-per-process",
            help="With --processes, fanout and chat: give each process its own room (its "
            "receivers hear its own senders), for rooms of -n/N each, e.g. many connections "
            "over several server workers.",
        ),
    ] = False,
    source_offset: Annotated[int, typer.Option(min=0, hidden=True)] = 0,
    # --processes children of a shared room (see wschat.bench.barrier)
    run_id: Annotated[str | None, typer.Option(hidden=True)] = None,
    index_offset: Annotated[int, typer.Option(min=0, hidden=True)] = 0,
    sync_fds: Annotated[str | None, typer.Option(hidden=True)] = None,
    concurrency: Annotated[int, typer.Option(min=1, hidden=True)] = 200,
    histograms: Annotated[bool, typer.Option(hidden=True)] = False,
    json_path: Annotated[
        Path | None,
        typer.Option("--json", help="Write the wschat.bench/1 JSON report here ('-': stdout)."),
    ] = None,
    html_path: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Write a self-contained HTML report here (charts as inline SVG; no network).",
        ),
    ] = None,
    fail_if: Annotated[
        str | None,
        typer.Option(
            help="Exit 3 unless these hold, e.g. 'p99<50ms,errors<0.1%'. Metrics: p50 p90 p99 "
            "p99.9 max mean (tcp.p99, upgrade.p99), errors lost duplicates reordered unsent "
            "refused (count or %), connections, throughput."
        ),
    ] = None,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress",
            help="Live progress on stderr (default: when it is a terminal).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Load-test a WebSocket server: latency percentiles, throughput, loss, errors.

    Exit codes: 0 done, 1 could not run (no server, limits), 2 bad usage, 3 --fail-if failed,
    130 interrupted (the report so far is printed and written, marked partial).
    """
    if ctx.invoked_subcommand is not None:
        return  # bench compare: the run's flags are not used
    with _exit_codes():
        config = BenchConfig(
            url=url,
            n=n,
            scenario=scenario,
            protocol=protocol,
            size=size,
            duration_s=duration,
            messages=messages,
            rate=default_rate(scenario) if rate is None else rate,
            senders=senders,
            ramp_s=ramp,
            room=room,
            connect_timeout_s=connect_timeout,
            drain_timeout_s=drain_timeout,
            spread=spread,
            source_offset=source_offset,
            concurrency=concurrency,
            run_id=run_id,
            index_offset=index_offset,
            sync_fds=_fd_pair(sync_fds) if sync_fds is not None else None,
        )
        from wschat.bench.command import Outcome
        from wschat.bench.command import bench as run_bench

        outcome = run_bench(
            config, json_path, fail_if, progress, html_path, histograms, processes,
            room_per_process,
        )  # fmt: skip
    codes = {
        Outcome.OK: ExitCode.OK,
        Outcome.FAIL_IF: ExitCode.FAIL_IF,
        Outcome.INTERRUPTED: ExitCode.INTERRUPTED,
    }
    raise typer.Exit(codes[outcome])


def _fd_pair(text: str) -> tuple[int, int]:
    """Parse the hidden ``--sync-fds READ,WRITE`` a ``--processes`` parent passes its children."""
    try:
        read, write = (int(part) for part in text.split(","))
    except ValueError:
        raise typer.BadParameter("READ,WRITE descriptors", param_hint="--sync-fds") from None
    return read, write


@bench_app.command("compare")
def bench_compare(
    reports: Annotated[
        list[Path],
        typer.Argument(help="Two or more --json reports; the first is the baseline."),
    ],
    html_path: Annotated[
        Path | None,
        typer.Option("--html", help="Also write the comparison as one HTML page, series overlaid."),
    ] = None,
) -> None:
    """Print runs side by side from their --json reports, with ratios to the first."""
    if len(reports) < 2:
        _fail("compare needs at least two reports", ExitCode.USAGE)
    from wschat.bench.command import compare as run_compare

    with _exit_codes():
        run_compare(reports, html_path)


def main() -> None:
    """Entry point of the ``wschat`` script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(ExitCode.INTERRUPTED)
    except WschatError as exc:
        typer.secho(f"wschat: {exc}", fg="red", err=True)
        sys.exit(exit_code(exc))
