"""The browser page, in a real browser: Debian's chromium driven by Playwright.

One headless chromium serves the whole module (each test opens its own pages in a fresh
context). The other party in a chat is the real terminal client (``wschat join`` in pipe
mode) or a ``wschat.v1`` client over the websockets library where a test needs to read
events exactly.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    WebSocketRoute,
    expect,
    sync_playwright,
)
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect

from tests.conftest import Server, serve_while
from tests.helpers import CHROMIUM, CHROMIUM_ARGS

WAIT_MS = 10_000

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            timeout=30_000,
        )
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    yield context
    context.close()


def open_chat(context: BrowserContext, server: Server, name: str, room: str) -> Page:
    """Open the page as ``name`` in ``room`` and wait until it is connected."""
    page = context.new_page()
    page.goto(f"{server.http}/")
    page.fill("#name", name)
    page.fill("#room", room)
    page.click("#connect")
    expect(page.locator("#state")).to_have_attribute("data-state", "connected")
    return page


def send(page: Page, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")
    expect(page.locator("#input")).to_have_value("")


def texts(page: Page) -> list[str]:
    """The visible text of each message line, without its timestamp."""
    return [t.strip() for t in page.locator("#messages li .text").all_inner_texts()]


def members(page: Page) -> list[str]:
    return page.locator("#members li").all_inner_texts()


@contextmanager
def v1(server: Server, name: str, **query: Any) -> Iterator[ClientConnection]:
    """Connect a wschat.v1 client as ``name`` (its welcome read); close it on exit."""
    qs = "&".join(f"{k}={quote(str(v))}" for k, v in query.items())
    url = f"{server.ws}/ws/{quote(name, safe='')}?{qs}"
    # max_queue=None: a test that leaves events unread still closes at once (with the default
    # 16 the reader stops, never sees the server's close frame and waits out close_timeout).
    with ws_connect(url, subprotocols=["wschat.v1"], open_timeout=5, max_queue=None) as ws:  # type: ignore[list-item]
        welcome = json.loads(ws.recv(timeout=5))
        assert welcome["type"] == "welcome", welcome
        yield ws


def next_of(ws: ClientConnection, kind: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while True:
        event: dict[str, Any] = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if event["type"] == kind:
            return event


def say(ws: ClientConnection, text: str) -> None:
    ws.send(json.dumps({"type": "say", "text": text}))


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One ``wschat serve`` for the tests that need no flags (each uses its own names and
    rooms: ``tag``); those that stop a server or need flags start their own."""
    yield from serve_while(tmp_path_factory)


def test_two_pages_and_a_v1_client_chat(shared: Server, tag: str, context: BrowserContext) -> None:
    server, room = shared, f"r-{tag}"
    a, b, c = f"alice-{tag}", f"bob-{tag}", f"carol-{tag}"
    alice = open_chat(context, server, a, room)
    bob = open_chat(context, server, b, room)
    expect(alice.locator("#members li")).to_have_text([a, b])
    with v1(server, c, room=room) as carol:
        expect(alice.locator("#members li")).to_have_text([a, b, c])
        expect(bob.locator("#members li")).to_have_text([a, b, c])

        send(alice, "hello from alice")
        expect(bob.locator("#messages li.message .text")).to_have_text(["hello from alice"])
        assert next_of(carol, "message")["text"] == "hello from alice"
        time_text = bob.locator("#messages li.message time").first.inner_text()
        assert re.fullmatch(r"\d\d:\d\d:\d\d", time_text), time_text

        say(carol, "hi from the terminal")
        assert next_of(carol, "message")["text"] == "hi from the terminal"  # carol's own echo
        for page in (alice, bob):
            expect(page.locator("#messages li.message .from")).to_have_text([a, c])
            expect(page.locator("#messages li.message .text").last).to_have_text(
                "hi from the terminal"
            )

        send(bob, "/me waves")
        expect(alice.locator("#messages li.action .text")).to_have_text([f"* {b} waves"])
        event = next_of(carol, "message")
        assert (event["text"], event.get("action")) == ("waves", True)

        # Clicking a member prefills a DM; the DM reaches its target and its sender only.
        alice.get_by_role("button", name=b, exact=True).click()
        expect(alice.locator("#input")).to_have_value(f"/msg {b} ")
        alice.press("#input", "End")
        alice.type("#input", "just for you")
        alice.press("#input", "Enter")
        expect(bob.locator("#messages li.dm .text")).to_have_text(["just for you"])
        expect(bob.locator("#messages li.dm .from")).to_have_text([f"{a} → {b}"])
        expect(alice.locator("#messages li.dm .text")).to_have_text(["just for you"])

        send(alice, f"/msg {c} psst")
        dm = next_of(carol, "dm")
        assert (dm["from"], dm["text"]) == (a, "psst")
    expect(alice.locator("#members li")).to_have_text([a, b])
    expect(alice.locator("#messages li.system .text").last).to_have_text(f"{c} left")
    assert texts(bob).count("hello from alice") == 1


def test_join_another_room_and_leave(shared: Server, tag: str, context: BrowserContext) -> None:
    server, one, two = shared, f"one-{tag}", f"two-{tag}"
    a, d = f"alice-{tag}", f"dave-{tag}"
    alice = open_chat(context, server, a, one)
    with v1(server, d, room=two) as dave:
        say(dave, f"earlier in {two}")
        next_of(dave, "message")
        send(alice, f"/join {two}")
        expect(alice.locator("#room-title")).to_have_text(f"#{two}")
        expect(alice.locator("#messages li.message .text")).to_have_text([f"earlier in {two}"])
        expect(alice.locator("#members li")).to_have_text([a, d])
        assert next_of(dave, "joined")["name"] == a
        alice.click("#leave")
        expect(alice.locator("#state")).to_have_attribute("data-state", "offline")
        assert next_of(dave, "left")["name"] == a


def test_xss_payloads_are_shown_as_text(shared: Server, tag: str, context: BrowserContext) -> None:
    server, room, a = shared, f"xss-{tag}", f"alice-{tag}"
    page = open_chat(context, server, a, room)
    payload = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    name = f"<u>mallory-{tag}"  # a valid name (no space, no slash) that is also an HTML tag
    with v1(server, name, room=room) as mallory:
        expect(page.locator("#members li")).to_have_text([name, a])
        say(mallory, payload)
        expect(page.locator("#messages li.message .text")).to_have_text([payload])
        expect(page.locator("#messages li.message .from")).to_have_text([name])
        send(page, payload)
        expect(page.locator("#messages li.message .text")).to_have_text([payload, payload])
        assert page.locator("#messages img, #messages script, #messages u, #members u").count() == 0
        assert page.evaluate("window.pwned") is None


def page_then_stop(server_factory: Any, context: BrowserContext, db: str) -> tuple[Server, Page]:
    """Open alice's page in #r, have carol say ``m1`` (shown, id 1), then stop the server:
    the page is left reconnecting."""
    first: Server = server_factory("--db", db, "--drain-seconds", "0")
    page = open_chat(context, first, "alice", "r")
    with v1(first, "carol", room="r") as carol:
        say(carol, "m1")
        expect(page.locator("#messages li.message .text")).to_have_text(["m1"])
    first.stop()
    expect(page.locator("#state")).to_have_attribute("data-state", "reconnecting")
    return first, page


def test_page_recovers_after_a_restart_without_loss(
    server_factory: Any, context: BrowserContext, tmp_path: Path
) -> None:
    db = str(tmp_path / "history.sqlite3")
    first, page = page_then_stop(server_factory, context, db)
    expect(page.locator("#state")).to_contain_text("reconnecting in")
    # Lines typed while offline are queued, shown as such, and sent once on reconnect.
    send(page, "q1")
    send(page, "/me q2")
    expect(page.locator("#messages li.pending .text")).to_have_text(["q1", "* alice q2"])
    time.sleep(1.5)  # stay down long enough for the page's backoff to grow past a restart

    second: Server = server_factory("--db", db, "--port", str(first.port))
    with v1(second, "carol", room="r") as carol:
        for text in ("m2", "m3", "m4"):
            say(carol, text)
        expect(page.locator("#state")).to_have_attribute("data-state", "connected")
        expect(page.locator("#messages li.pending")).to_have_count(0)
        say(carol, "m5")
        expect(page.locator("#messages li.message .text").last).to_have_text("m5")
    shown = sorted(page.locator("#messages li.message .text").all_inner_texts())
    assert shown == ["* alice q2", "m1", "m2", "m3", "m4", "m5", "q1"]
    ids = page.locator("#messages li.message").evaluate_all("els => els.map(e => e.dataset.id)")
    assert ids == ["1", "2", "3", "4", "5", "6", "7"]  # each queued line stored exactly once
    # The page came back with ?since= and its resume token (redacted in the log).
    second.stop(signal.SIGTERM)
    assert re.search(r"WebSocket /ws/alice\?room=r&since=1&resume=\*\*\*", second.log())


def test_page_shows_a_capped_replay_as_missed_messages(
    server_factory: Any, context: BrowserContext, tmp_path: Path
) -> None:
    """After a restart, more was stored than ``--replay-max`` lets through: the page shows the
    newest page and says that messages were missed (``welcome.gap``), with no error."""
    db = tmp_path / "history.sqlite3"
    first, page = page_then_stop(server_factory, context, str(db))
    with sqlite3.connect(db) as conn:  # 20 more while the page was away
        conn.executemany(
            "INSERT INTO messages (room, id, sender, text, ts) VALUES ('r', ?, 'carol', ?, 0)",
            ((i, f"m{i}") for i in range(2, 22)),
        )
    server_factory("--db", str(db), "--port", str(first.port), env={"WSCHAT_REPLAY_MAX": "5"})
    expect(page.locator("#state")).to_have_attribute("data-state", "connected", timeout=20_000)
    expect(page.locator("#messages li.message .text")).to_have_text(
        ["m1", "m17", "m18", "m19", "m20", "m21"]
    )
    expect(page.locator("#messages li.system .text").last).to_have_text(
        "some messages were missed (no longer stored, or too many to replay)"
    )
    expect(page.locator("#messages li.error")).to_have_count(0)


def test_query_joins_at_once_and_a_taken_name_is_explained(
    shared: Server, tag: str, context: BrowserContext
) -> None:
    server, name, room = shared, f"alice-{tag}", f"r-{tag}"
    first = context.new_page()
    first.goto(f"{server.http}/?name={name}&room={room}")
    expect(first.locator("#state")).to_have_text(f"connected as {name} in #{room}")
    second = context.new_page()
    second.goto(f"{server.http}/?name={name}&room={room}")
    expect(second.locator("#state")).to_have_attribute("data-state", "offline")
    expect(second.locator("#login-error")).to_contain_text("taken")
    expect(second.locator("#login")).to_be_visible()
    second.fill("#name", "a b")
    second.click("#connect")
    expect(second.locator("#login-error")).to_contain_text("spaces or slashes")
    expect(first.locator("#state")).to_have_attribute("data-state", "connected")


def open_signed(
    context: BrowserContext, server: Server, name: str, secret: str, ttl_s: float = 3600
) -> Page:
    """Open the page as ``name`` with a token in its fragment; wait until it is connected."""
    from wschat.auth import issue_token

    page = context.new_page()
    page.goto(f"{server.http}/?name={name}#token={issue_token(name, secret, ttl_s=ttl_s)}")
    expect(page.locator("#state")).to_have_attribute("data-state", "connected")
    return page


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A ``--secret page-secret`` server for the two token tests (own names via tag)."""
    yield from serve_while(tmp_path_factory, "--secret", "page-secret")


def test_a_signed_token_in_the_fragment_lets_the_page_in(
    context: BrowserContext, signed: Server, tag: str
) -> None:
    server = signed
    page = open_signed(context, server, f"alice-{tag}", "page-secret")
    send(page, "signed in")
    expect(page.locator("#messages")).to_contain_text("signed in")
    # Without the token the server refuses the handshake: the page never connects.
    other = context.new_page()
    other.goto(f"{server.http}/?name=bob-{tag}")
    time.sleep(1.0)
    expect(other.locator("#state")).not_to_have_attribute("data-state", "connected")
    assert "page-secret" not in server.log()


def test_an_expired_token_takes_the_page_offline_for_good(
    context: BrowserContext, signed: Server, tag: str
) -> None:
    """Closed 4011 at the token's exp, the page says why and does not reconnect (issue 15)."""
    server, name = signed, f"alice-{tag}"
    state = open_signed(context, server, name, "page-secret", ttl_s=3).locator("#state")
    expect(state).to_have_attribute("data-state", "offline")
    expect(state).to_contain_text("your token expired")
    time.sleep(1.5)  # the backoff's first retry would come within a second
    expect(state).to_have_attribute("data-state", "offline")
    assert server.log().count(f"open {name} ") == 1


def test_a_page_and_the_terminal_client_chat(
    shared: Server, tag: str, context: BrowserContext
) -> None:
    import queue
    import subprocess
    import sys
    import threading

    server, room, a, t = shared, f"t-{tag}", f"alice-{tag}", f"term-{tag}"
    page = open_chat(context, server, a, room)
    term = subprocess.Popen(
        [sys.executable, "-m", "wschat", "join", t, "--url", server.ws, "--room", room],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert term.stdin is not None and term.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in term.stdout], daemon=True).start()  # type: ignore[union-attr]
    try:
        expect(page.locator("#members li")).to_have_text([a, t])
        term.stdin.write("hello from the terminal\n")
        term.stdin.flush()
        expect(page.locator("#messages li.message .text")).to_have_text(["hello from the terminal"])
        send(page, "hello from the page")
        deadline = time.monotonic() + 10
        seen: list[str] = []
        while not any(f"{a}: hello from the page" in x for x in seen):
            seen.append(lines.get(timeout=max(0.01, deadline - time.monotonic())))
    finally:
        term.stdin.close()
        term.wait(15)
        term.stdout.close()
    expect(page.locator("#members li")).to_have_text([a])


# --- issue 16: the page as a chat app --------------------------------------------------------


def events_until_message(ws: ClientConnection) -> list[dict[str, Any]]:
    """Every event up to and including the next ``message``."""
    seen = [json.loads(ws.recv(timeout=5))]
    while seen[-1]["type"] != "message":
        seen.append(json.loads(ws.recv(timeout=5)))
    return seen


def test_a_reload_resumes_the_session_and_the_form_hides(
    shared: Server, context: BrowserContext
) -> None:
    """Reloading a bookmarked /?name=rita keeps the name: no "taken", nobody sees a leave/join;
    the join form is gone while joined (it stayed visible and a second Join left a ghost).
    Lines queued while the socket is down survive a reload and are sent once it is back."""
    with v1(shared, "ben", room="reload") as ben:
        page = context.new_page()
        page.goto(f"{shared.http}/?name=rita&room=reload")
        expect(page.locator("#state")).to_have_text("connected as rita in #reload")
        expect(page.locator("#login")).to_be_hidden()
        assert next_of(ben, "joined")["name"] == "rita"
        page.reload()
        expect(page.locator("#state")).to_have_text("connected as rita in #reload")
        expect(page.locator("#login")).to_be_hidden()
        expect(page.locator("#messages li.error")).to_have_count(0)
        send(page, "back after a reload")
        seen = events_until_message(ben)
        assert [(e["type"], e.get("text")) for e in seen] == [("message", "back after a reload")]
        expect(page.locator("#members li")).to_have_text(["ben", "rita"])

        # Lines queued while the socket is down survive a reload too. The page's sockets go
        # to a stand-in that never answers (Playwright's WebSocket route), then to the server.
        stand_ins: list[WebSocketRoute] = []
        online = False

        def route(ws: WebSocketRoute) -> None:
            if online:
                ws.connect_to_server()
            else:
                stand_ins.append(ws)

        def stand_in(n: int) -> WebSocketRoute:
            """Wait for the page's n-th socket to reach the stand-in (handlers run in calls)."""
            for _ in range(100):
                if len(stand_ins) >= n:
                    return stand_ins[n - 1]
                page.wait_for_timeout(50)
            raise AssertionError(f"the page opened {len(stand_ins)} sockets, not {n}")

        page.route_web_socket(re.compile(r"/ws/rita"), route)
        page.reload()
        stand_in(1)
        send(page, "typed while offline")
        page.reload()
        expect(page.locator("#messages li.pending .text")).to_have_text(["typed while offline"])
        online = True
        stand_in(2).close(code=1012)  # the page reconnects, to the real server this time
        # Route handlers run while Playwright is waiting: wait on the page first.
        expect(page.locator("#messages li.pending")).to_have_count(0)
        assert next_of(ben, "message")["text"] == "typed while offline"
        expect(page.locator("#messages li.message .text").last).to_have_text("typed while offline")


def errors(page: Page) -> Any:
    return page.locator("#messages li.error .text")


def enter(page: Page, text: str) -> None:
    """Type ``text`` and press Enter; a refused line stays in the box."""
    page.fill("#input", text)
    page.press("#input", "Enter")


def test_commands_long_input_scrolling_copy_and_unread(
    shared: Server, context: BrowserContext
) -> None:
    """Unknown commands and over-long input are answered on the page and never sent; //
    escapes; /help, /who and /nick answer; the "new messages" cue, copied lines, the unread
    count in the title, nick colours, date separators, DMs kept across /join."""
    console: list[str] = []
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=shared.http)
    with v1(shared, "bob", room="cmd") as bob:
        page = open_chat(context, shared, "alice", "cmd")
        page.on("console", lambda msg: console.append(msg.text))
        expect(page.locator("#empty")).to_have_text("No messages in #cmd yet. Say hello!")
        # Labelled input, a log, and a badge that is not a live region (its countdown ticks).
        expect(page.get_by_role("textbox", name="Message")).to_be_focused()
        expect(page.get_by_role("log", name="Messages")).to_be_visible()
        assert page.eval_on_selector("#state", "e => e.closest('[aria-live], [role]')") is None
        expect(page.get_by_role("status")).to_have_text("connected as alice in #cmd")
        enter(page, "/mgs bob the wifi password is hunter2")
        expect(errors(page).last).to_contain_text("unknown command /mgs (did you mean /msg?)")
        enter(page, "/nick bobby")
        expect(errors(page).last).to_contain_text("a name cannot change")
        send(page, "/help")
        expect(page.locator("#messages li.system .text")).to_contain_text(
            ["/msg NAME TEXT \u2013 send a direct message"]
        )
        send(page, "/who")
        expect(page.locator("#messages li.system .text").last).to_have_text(
            "members of #cmd (2): alice, bob"
        )
        send(page, "/rooms")
        expect(page.locator("#messages li.system .text").last).to_contain_text("#cmd (2)")
        page.fill("#input", "x" * 60_000)  # a long paste: refused, never cut
        expect(page.locator("#counter")).to_have_text("60000/4000")
        page.press("#input", "Enter")
        expect(errors(page).last).to_contain_text("too long: 60000 characters")
        assert len(page.input_value("#input")) == 60_000
        send(page, "//slash text")
        assert next_of(bob, "message")["text"] == "/slash text"  # the first and only one

        # Scrolled up, a new line shows the cue; sending jumps to the bottom.
        for n in range(30):
            say(bob, f"line {n}")
        expect(page.locator("#messages li.message .text").last).to_have_text("line 29")
        page.eval_on_selector("#messages", "box => { box.scrollTop = 0; }")
        say(bob, "below the fold")
        expect(page.locator("#jump")).to_be_visible()
        send(page, "mine")
        expect(page.locator("#jump")).to_be_hidden()
        expect(page.locator("#messages li.message .text").last).to_be_in_viewport()

        # Copying two lines gives "time name: text" lines.
        page.eval_on_selector(
            "#messages",
            """box => { const lines = box.querySelectorAll("li.message");
                const range = document.createRange();
                range.setStartBefore(lines[lines.length - 2]);
                range.setEndAfter(lines[lines.length - 1]);
                getSelection().removeAllRanges(); getSelection().addRange(range); }""",
        )
        page.keyboard.press("Control+C")
        copied = page.evaluate("navigator.clipboard.readText()").strip().splitlines()
        assert [re.sub(r"^\d\d:\d\d:\d\d ", "", x) for x in copied] == [
            "bob: below the fold",
            "alice: mine",
        ], copied
        assert all(re.match(r"\d\d:\d\d:\d\d \S", x) for x in copied), copied

        # Unread lines count in the title while the tab is hidden.
        page.evaluate("""() => { Object.defineProperty(document, "hidden", {value: true,
            configurable: true}); }""")
        say(bob, "while you were away")
        expect(page).to_have_title("(1) #cmd \u2013 wschat")
        page.evaluate("""() => { Object.defineProperty(document, "hidden", {value: false,
            configurable: true}); document.dispatchEvent(new Event("visibilitychange")); }""")
        expect(page).to_have_title("#cmd \u2013 wschat")

        froms = page.locator("#messages li.message .from")
        assert re.search(r"\bnick-\d\b", froms.first.get_attribute("class") or "")
        expect(page.locator("#messages li.day")).to_have_count(1)

        bob.send(json.dumps({"type": "dm", "to": "alice", "text": "kept across rooms"}))
        expect(page.locator("#messages li.dm .text")).to_have_text(["kept across rooms"])
        send(page, "/join elsewhere")
        expect(page.locator("#room-title")).to_have_text("#elsewhere")
        expect(page.locator("#messages li.dm .text")).to_have_text(["kept across rooms"])
        expect(page.locator("#empty")).to_have_text("No messages in #elsewhere yet. Say hello!")
    assert not [x for x in console if "Content Security Policy" in x], console


# The WCAG 2 contrast of every visible text node's element against the first opaque background
# behind it, and of the input's placeholder; computed from the page's computed styles.
CONTRAST_JS = """() => {
  const rgba = (c) => { const v = c.match(/[\\d.]+/g).map(Number); return v.length > 3 ? v : [...v, 1]; };
  const lum = ([r, g, b]) => {
    const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const ratio = (a, b) => { const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p); return (x + 0.05) / (y + 0.05); };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c[3] > 0) return c;
    }
    return [255, 255, 255, 1];
  };
  const found = [];
  for (const el of document.body.querySelectorAll("*")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length || getComputedStyle(el).visibility === "hidden") continue;
    const what = el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + (el.className ? "." + String(el.className).replace(/ /g, ".") : "");
    found.push([what, ratio(rgba(getComputedStyle(el).color), background(el))]);
  }
  const input = document.getElementById("input");
  found.push(["::placeholder", ratio(rgba(getComputedStyle(input, "::placeholder").color), background(input))]);
  return found;
}"""


def low_contrast(page: Page) -> dict[str, float]:
    """The elements whose text is below 4.5:1 (WCAG AA for normal text), by selector."""
    found: list[tuple[str, float]] = page.evaluate(CONTRAST_JS)
    assert len(found) > 20, found
    return {what: round(ratio, 2) for what, ratio in found if ratio < 4.5}


def test_layout_contrast_dark_mode_and_phone(
    shared: Server, context: BrowserContext, tmp_path: Path
) -> None:
    """Every text is AA in light and dark; at 390x844 nothing scrolls sideways and the member
    list is a drawer. Screenshots of both sizes in both schemes land in the test's tmp_path."""
    with v1(shared, "bea", room="look") as bea, v1(shared, "cat", room="look") as cat:
        page = open_chat(context, shared, "ann", "look")
        page.set_viewport_size({"width": 1280, "height": 800})
        say(bea, "a long line that wraps " * 12)
        say(cat, "hello from carol")
        bea.send(json.dumps({"type": "dm", "to": "ann", "text": "a direct message"}))
        send(page, "/me waves")
        enter(page, "/bogus")
        expect(page.locator("#messages li.error")).to_have_count(1)
        expect(page.locator("#messages li.dm")).to_have_count(1)
        expect(page.locator("#messages li.message")).to_have_count(3)
        colour = "e => getComputedStyle(e).color"
        for scheme, red in (("light", "rgb(179, 38, 30)"), ("dark", "rgb(255, 138, 128)")):
            page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
            assert low_contrast(page) == {}, scheme
            assert page.eval_on_selector("#messages li.error .text", colour) == red
            page.screenshot(path=tmp_path / f"page-1280-{scheme}.png")

        page.set_viewport_size({"width": 390, "height": 844})
        width = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
        assert width[0] <= width[1], width
        assert page.locator("#messages").bounding_box()["width"] >= 360  # type: ignore[index]
        expect(page.locator("#sidebar")).to_be_hidden()
        page.click("#members-toggle")
        expect(page.locator("#members li")).to_have_text(["ann", "bea", "cat"])
        page.screenshot(path=tmp_path / "page-390-drawer.png")
        page.click("#members-close")
        expect(page.locator("#sidebar")).to_be_hidden()
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)  # type: ignore[arg-type]
            assert low_contrast(page) == {}, scheme
            page.screenshot(path=tmp_path / f"page-390-{scheme}.png")


def test_security_headers_favicon_and_the_echo_page_under_its_policy(
    shared: Server, context: BrowserContext
) -> None:
    """The page and its files carry a CSP without inline script, refuse framing and sniffing;
    /favicon.ico is no 404; the article's echo page still works under its own policy."""
    import urllib.request

    for path in ("/", "/static/app.js", "/static/style.css", "/favicon.ico", "/static/echo.html"):
        with urllib.request.urlopen(shared.http + path, timeout=5) as response:
            headers = response.headers
            assert response.status == 200, path
        csp = headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, (path, csp)
        assert "unsafe-inline" not in csp, (path, csp)
        assert headers["X-Frame-Options"] == "DENY", path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Cache-Control"] == "no-cache", path
    assert headers["Content-Security-Policy"].count("'sha256-") == 1  # echo.html's one script

    page = context.new_page()
    page.goto(f"{shared.http}/static/echo.html")
    page.fill("#msg", "echo me")
    page.press("#msg", "Enter")
    expect(page.locator("#messages li")).to_contain_text(["echo me"])
