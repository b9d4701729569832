"""The contract between the server and its dependencies: every uvicorn and websockets name used.

The transport (``wschat/server/transport``), the runner and the log config touch uvicorn and
websockets only through the names listed here. A release that renames or reshapes one fails
here, in one obvious place, instead of somewhere in the suite. The last tests scan the source:
a new import from either library in ``wschat/server`` cannot slip in without being listed.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
from pathlib import Path

import pytest
import uvicorn
import uvicorn.logging
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol

SERVER = Path(__file__).resolve().parents[2] / "wschat" / "server"

# Every ``from X import Y`` (and ``import X``) of uvicorn or websockets in wschat/server.
IMPORTS = {
    "uvicorn": {""},
    "uvicorn.protocols.http.httptools_impl": {"HttpToolsProtocol"},
    "uvicorn.protocols.http.h11_impl": {"H11Protocol"},
    "websockets.datastructures": {"Headers"},
    "websockets.frames": {"Frame", "Opcode"},
    "websockets.http11": {"Request", "Response"},
    "websockets.protocol": {"State"},
    "websockets.server": {"ServerProtocol"},
}
# Names given as strings (the log config's dictConfig mapping).
STRING_NAMES = ["uvicorn.logging.DefaultFormatter", "uvicorn.logging.AccessFormatter"]


def _params(func: object) -> list[str]:
    return list(inspect.signature(func).parameters)  # type: ignore[arg-type]


def test_uvicorn_config_takes_protocol_classes_and_exposes_the_app() -> None:
    """runner.py passes these keywords; the protocols read ``loaded_app`` and ``root_path``."""
    params = _params(uvicorn.Config.__init__)
    for name in (
        "app",
        "http",
        "ws",
        "interface",
        "lifespan",
        "log_level",
        "log_config",
        "timeout_graceful_shutdown",
        "server_header",
    ):
        assert name in params, name

    class Http(asyncio.Protocol):
        pass

    class Ws(asyncio.Protocol):
        pass

    async def app(scope: object, receive: object, send: object) -> None:
        pass

    config = uvicorn.Config(app, http=Http, ws=Ws, interface="asgi3", log_config=None)
    config.load()
    assert config.http_protocol_class is Http
    assert config.ws_protocol_class is Ws
    assert callable(config.loaded_app)
    assert config.root_path == ""


def test_uvicorn_builds_protocols_with_config_server_state_and_app_state() -> None:
    """uvicorn calls ``http_protocol_class(config=, server_state=, app_state=)``, and the HTTP
    protocol calls ``ws_protocol_class`` the same way on a later upgrade; ours accept both."""
    source = inspect.getsource(uvicorn.Server)
    assert "config.http_protocol_class(" in source
    for keyword in ("config=config", "server_state=self.server_state", "app_state="):
        assert keyword in source, keyword
    upgrade = inspect.getsource(HttpToolsProtocol.handle_websocket_upgrade)
    assert "self.ws_protocol_class(" in upgrade
    assert "server_state=self.server_state" in upgrade
    assert _params(HttpToolsProtocol.__init__)[:4] == [
        "self",
        "config",
        "server_state",
        "app_state",
    ]
    for method in (
        "connection_made",
        "data_received",
        "eof_received",
        "connection_lost",
        "pause_writing",
        "resume_writing",
    ):
        assert callable(getattr(HttpToolsProtocol, method)), method


def test_uvicorn_server_state_and_shutdown_hooks() -> None:
    """Graceful shutdown: ``server_state.connections`` (each gets ``shutdown()``) and
    ``.tasks`` (awaited); runner.py overrides ``Server.startup``/``shutdown`` and reads
    ``started`` and ``servers``; its accept gate (transport/accept.py) replaces the entries of
    ``servers`` and builds the HTTP protocol as uvicorn does (``config``, ``server_state``,
    ``lifespan.state``, ``config.backlog``)."""
    state = ServerState()
    assert isinstance(state.connections, set)
    assert isinstance(state.tasks, set)
    shutdown = inspect.getsource(uvicorn.Server.shutdown)
    assert "connection.shutdown()" in shutdown
    assert "server_state.connections" in inspect.getsource(uvicorn.Server)
    assert _params(uvicorn.Server.startup) == ["self", "sockets"]
    assert _params(uvicorn.Server.shutdown) == ["self", "sockets"]
    assert _params(uvicorn.Server.run) == ["self", "sockets"]
    server = uvicorn.Server(uvicorn.Config(lambda s, r, w: None, log_config=None))
    assert server.started is False
    assert "self.servers" in inspect.getsource(uvicorn.Server.startup)
    startup = inspect.getsource(uvicorn.Server.startup)
    assert "server_state=self.server_state" in startup
    assert "app_state=self.lifespan.state" in startup
    assert isinstance(server.config.backlog, int)


@pytest.mark.parametrize("dotted", STRING_NAMES)
def test_log_config_names_exist(dotted: str) -> None:
    module, _, name = dotted.rpartition(".")
    assert module == uvicorn.logging.__name__
    assert isinstance(getattr(uvicorn.logging, name), type)


def test_websockets_server_protocol_api() -> None:
    """The sans-I/O calls transport/ws.py makes, with the parameters it passes."""
    assert {"max_size", "logger"} <= set(_params(ServerProtocol.__init__))
    for method, params in {
        "receive_data": ["self", "data"],
        "receive_eof": ["self"],
        "events_received": ["self"],
        "data_to_send": ["self"],
        "accept": ["self", "request"],
        "reject": ["self", "status", "text"],
        "send_response": ["self", "response"],
        "send_text": ["self", "data", "fin"],
        "send_binary": ["self", "data", "fin"],
        "send_close": ["self", "code", "reason"],
        "send_ping": ["self", "data"],
        "fail": ["self", "code", "reason"],
    }.items():
        assert _params(getattr(ServerProtocol, method)) == params, method
    assert {State.CONNECTING, State.OPEN, State.CLOSING, State.CLOSED} <= set(State)
    assert {"TEXT", "BINARY", "CONT", "PING", "PONG", "CLOSE"} <= set(Opcode.__members__)


def test_websockets_parses_a_handshake_and_frames_as_the_transport_expects() -> None:
    """Drive a ``ServerProtocol`` as transport/ws.py does and check what it reads back:
    ``Request.path``/``headers``, ``Response`` fields, ``Frame.opcode``/``data``/``fin``,
    ``state``, and the attributes it reads after a close or a failure (``close_rcvd``,
    ``close_sent``, ``parser_exc``)."""
    conn = ServerProtocol(max_size=1024, logger=None)
    conn.receive_data(
        b"GET /ws/a?room=x HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: wschat.v1\r\n\r\n"
    )
    [request] = conn.events_received()
    assert isinstance(request, Request)
    assert request.path == "/ws/a?room=x"
    assert request.headers.get_all("Sec-WebSocket-Protocol") == ["wschat.v1"]
    assert ("Host", "h") in list(request.headers.raw_items())
    response = conn.accept(request)
    assert isinstance(response, Response) and response.status_code == 101
    request.headers.clear()  # done once the scope has its copy (memory: see transport/ws.py)
    assert list(request.headers.raw_items()) == []
    response.headers["Sec-WebSocket-Protocol"] = "wschat.v1"
    conn.send_response(response)
    assert conn.state is State.OPEN
    assert conn.data_to_send()[0].startswith(b"HTTP/1.1 101 ")
    refusal = conn.reject(403, "no")
    assert (refusal.status_code, refusal.reason_phrase, refusal.body) == (403, "Forbidden", b"no")
    assert isinstance(refusal.headers, Headers)

    mask = b"\x00\x00\x00\x00"
    conn.receive_data(b"\x01\x82" + mask + b"hi" + b"\x80\x81" + mask + b"!")
    first, last = conn.events_received()
    assert isinstance(first, Frame) and first.opcode is Opcode.TEXT and not first.fin
    assert last.opcode is Opcode.CONT and last.fin and bytes(last.data) == b"!"

    conn.receive_data(b"\x88\x82" + mask + (1000).to_bytes(2, "big"))
    [close] = conn.events_received()
    assert close.opcode is Opcode.CLOSE
    assert conn.close_rcvd is not None and conn.close_rcvd.code == 1000
    assert conn.data_to_send()[-1] == b""  # the server ends the TCP connection

    failing = ServerProtocol(max_size=4, logger=None)
    failing.receive_data(
        b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    failing.send_response(failing.accept(failing.events_received()[0]))
    failing.receive_data(b"\x81\x85" + mask + b"toolong")
    assert failing.parser_exc is not None
    assert failing.close_sent is not None and failing.close_sent.code == 1009
    assert failing.state is State.CLOSING


def _third_party_imports(path: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            root = node.module.split(".")[0]
            if root in ("uvicorn", "websockets"):
                found.setdefault(node.module, set()).update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in ("uvicorn", "websockets"):
                    found.setdefault(alias.name, set()).add("")
    return found


def test_wschat_server_imports_only_the_listed_names() -> None:
    used: dict[str, set[str]] = {}
    for path in sorted(SERVER.rglob("*.py")):
        for module, names in _third_party_imports(path).items():
            used.setdefault(module, set()).update(names)
    unlisted = {m: n - IMPORTS.get(m, set()) for m, n in used.items()}
    assert {m: n for m, n in unlisted.items() if n} == {}


def test_wschat_server_reads_no_underscore_attribute_of_a_dependency() -> None:
    """No ``x._name`` on objects of uvicorn or websockets: only our own private names."""
    own = set()
    for path in sorted(SERVER.rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                own.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                own.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                own.add(node.id)
            elif isinstance(node, ast.ClassDef):
                pass
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.Assign):
                        for target in item.targets:
                            if isinstance(target, ast.Name) and target.id == "__slots__":
                                value = item.value
                                if isinstance(value, ast.Tuple):
                                    own.update(
                                        e.value
                                        for e in value.elts
                                        if isinstance(e, ast.Constant) and isinstance(e.value, str)
                                    )
    foreign = []
    for path in sorted(SERVER.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and node.attr not in own
            ):
                foreign.append(f"{path.name}:{node.lineno} .{node.attr}")
    assert foreign == []
