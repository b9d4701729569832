"""The ``wschat`` command line: parse flags, call one function, map errors to exit codes.

Each command imports its own stack inside its body, so ``wschat join`` never loads FastAPI
and ``wschat --help`` loads neither. Only this module turns exceptions into a red line on
stderr and an exit code: 1 for a wschat error, 2 for bad usage, 130 for Ctrl-C.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from wschat import __version__
from wschat.errors import WschatError

app = typer.Typer(
    name="wschat",
    help="A real-time chat server, a terminal chat client and a WebSocket load tester.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _default_db() -> Path:
    import platformdirs

    return platformdirs.user_data_path("wschat") / "history.sqlite3"


def _fail(message: str, code: int = 1) -> NoReturn:
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
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(envvar="WSCHAT_PORT", min=0, max=65535, help="Port; 0 picks a free one.")
    ] = 8000,
    max_message_size: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_MAX_MESSAGE_SIZE",
            min=1,
            help="Largest incoming frame in bytes; larger closes 1009.",
        ),
    ] = 64 * 1024,
    outbox_size: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_OUTBOX_SIZE",
            min=1,
            help="Frames queued per connection before a slow reader is closed with 4001.",
        ),
    ] = 256,
    ping_interval: Annotated[
        float,
        typer.Option(
            envvar="WSCHAT_PING_INTERVAL", min=0, help="Seconds between pings; 0 turns pings off."
        ),
    ] = 20.0,
    ping_timeout: Annotated[
        float,
        typer.Option(
            envvar="WSCHAT_PING_TIMEOUT", min=0, help="Seconds to wait for a pong before closing."
        ),
    ] = 20.0,
    shutdown_timeout: Annotated[
        float,
        typer.Option(
            envvar="WSCHAT_SHUTDOWN_TIMEOUT",
            min=0,
            help="On SIGTERM/Ctrl-C, seconds to let clients read their 1001 close before aborting.",
        ),
    ] = 5.0,
    log_level: Annotated[
        str,
        typer.Option(envvar="WSCHAT_LOG_LEVEL", help="critical, error, warning, info or debug."),
    ] = "info",
    db: Annotated[
        str | None,
        typer.Option(
            envvar="WSCHAT_DB",
            help="SQLite history file; ':memory:' keeps none. [default: history.sqlite3 in the user data dir]",
            show_default=False,
        ),
    ] = None,
    history_size: Annotated[
        int, typer.Option(envvar="WSCHAT_HISTORY_SIZE", min=1, help="Messages kept per room.")
    ] = 10_000,
    replay_count: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_REPLAY_COUNT",
            min=0,
            help="Messages a v1 client gets on entering a room without ?since=.",
        ),
    ] = 50,
    presence_grace: Annotated[
        float,
        typer.Option(
            envvar="WSCHAT_PRESENCE_GRACE",
            min=0,
            help="Seconds a dropped v1 client keeps its name and place before 'left' is sent.",
        ),
    ] = 5.0,
    broker: Annotated[
        str,
        typer.Option(
            envvar="WSCHAT_BROKER",
            help="'memory' (one process), or redis://HOST:PORT/DB to share rooms, names and "
            "history with every wschat process using that Redis.",
        ),
    ] = "memory",
    workers: Annotated[
        int,
        typer.Option(
            envvar="WSCHAT_WORKERS",
            min=1,
            help="Worker processes sharing the port; more than 1 needs --broker redis://...",
        ),
    ] = 1,
    node_ttl: Annotated[
        float,
        typer.Option(
            envvar="WSCHAT_NODE_TTL",
            min=0.3,
            help="With Redis: seconds after which a dead process's users leave everyone's presence.",
        ),
    ] = 10.0,
) -> None:
    """Run the chat server (echo at /ws, chat at /ws/{client_id}, a page at /)."""
    from wschat.server.engine import is_redis
    from wschat.server.runner import serve as run_server
    from wschat.server.settings import ServerSettings

    if workers > 1 and not is_redis(broker):
        _fail(
            "--workers needs --broker redis://...: with the in-memory broker each worker "
            "would be a separate chat",
            code=2,
        )

    settings = ServerSettings(
        host=host,
        port=port,
        max_message_bytes=max_message_size,
        outbox_size=outbox_size,
        ping_interval_s=ping_interval,
        ping_timeout_s=ping_timeout,
        shutdown_timeout_s=shutdown_timeout,
        log_level=log_level.lower(),
        db=db or str(_default_db()),
        history_size=history_size,
        replay_count=replay_count,
        presence_grace_s=presence_grace,
        broker=broker,
        node_ttl_s=node_ttl,
    )
    try:
        if workers > 1:
            from wschat.server.workers import serve_workers

            serve_workers(settings, workers)
        else:
            run_server(settings)
    except OSError as exc:
        _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")


@app.command()
def join(
    name: Annotated[str, typer.Argument(help="Your name in the chat.")],
) -> None:
    """Chat in the terminal (not built yet)."""
    _fail("'wschat join' is not built yet: see issue 4", code=2)


@app.command()
def bench(
    n: Annotated[int, typer.Option("-n", help="Number of connections.")] = 500,
) -> None:
    """Load-test a WebSocket server (not built yet)."""
    _fail("'wschat bench' is not built yet: see issue 5", code=2)


def main() -> None:
    """Entry point of the ``wschat`` script."""
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except WschatError as exc:
        typer.secho(f"wschat: {exc}", fg="red", err=True)
        sys.exit(1)
