"""The browser page: its routes (``/``, ``/favicon.ico``, ``/static``) and the headers that
every plain HTTP response carries (issue 16).

The page is static files in the package (``static/``), served as they are: no build step, no
CDN. ``PageHeaders`` wraps the FastAPI app (never the chat sockets, which ``routing`` takes
first) and adds to each response:

- a strict ``Content-Security-Policy``: scripts, styles, images and sockets from this origin
  only, no inline script (the article's ``echo.html`` keeps its one inline script, allowed by
  its SHA-256 hash and by nothing else), and ``frame-ancestors 'none'``;
- ``X-Frame-Options: DENY`` (the same for older browsers): a foreign page cannot frame the chat
  and, with ``?name=``, pick the name and room for the user;
- ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``;
- ``Cache-Control: no-cache`` on the page and its files: the browser keeps them but asks
  (``ETag``/``Last-Modified``) before reuse, so an upgraded server never runs an old script.

Imports FastAPI and Starlette's public API only; knows nothing of chat.
"""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

from fastapi import FastAPI
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers, MutableHeaders

from wschat.server.transport.asgi import ASGIApp, AsgiEvent, Receive, Scope, Send

STATIC = resources.files("wschat.server").joinpath("static")
ECHO_PAGE = "/static/echo.html"
PAGE_PATHS = ("/", "/favicon.ico")

# A Host header that can be named in the policy as it is (a name or an address, and a port).
HOST = re.compile(r"(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def policy(script_src: str, host: str) -> str:
    """Return the Content-Security-Policy for a page served to ``host`` (the Host header).

    ``script_src`` is the page's script sources. Sockets may go to this origin only: ``'self'``
    covers ``ws:``/``wss:`` to the same host in CSP Level 3, and older browsers (Safari before
    15.4) need them named, so a well-formed ``host`` is named too.
    """
    connect = f"'self' ws://{host} wss://{host}" if HOST.fullmatch(host) else "'self'"
    return (
        f"default-src 'none'; script-src {script_src}; style-src 'self'; img-src 'self'; "
        f"connect-src {connect}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def inline_scripts(html: str) -> str:
    """Return the script sources allowing exactly the inline scripts of ``html``."""
    digests = [
        base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        for body in re.findall(r"<script>(.*?)</script>", html, flags=re.DOTALL)
    ]
    return " ".join(f"'sha256-{digest}'" for digest in digests) or "'none'"


class PageHeaders:
    """ASGI middleware: the security and cache headers above, on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.echo_scripts = inline_scripts(STATIC.joinpath("echo.html").read_text("utf-8"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        scripts = self.echo_scripts if path == ECHO_PAGE else "'self'"
        csp = policy(scripts, Headers(scope=scope).get("host", ""))
        cached = path in PAGE_PATHS or path.startswith("/static/")

        async def send_with_headers(message: AsgiEvent) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = csp
                headers["X-Frame-Options"] = "DENY"
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "no-referrer"
                if cached:
                    headers["Cache-Control"] = "no-cache"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def add_page_routes(app: FastAPI) -> None:
    """Serve the chat page at ``/``, its icon at ``/favicon.ico`` and its files at ``/static``."""
    page = STATIC.joinpath("index.html").read_text("utf-8")
    icon = STATIC.joinpath("favicon.svg")

    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse)
    async def index() -> str:
        return page

    @app.api_route("/favicon.ico", methods=["GET", "HEAD"], include_in_schema=False)
    async def favicon() -> FileResponse:
        # Browsers ask for /favicon.ico whatever the page's <link rel=icon> says.
        return FileResponse(str(icon), media_type="image/svg+xml")

    # The page's script, style and icon; echo.html is the article's page (plain /ws echo).
    app.mount("/static", StaticFiles(packages=[("wschat.server", "static")]), name="static")
