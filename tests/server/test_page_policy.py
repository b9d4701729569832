"""The page's Content-Security-Policy as text (``wschat.server.page``): no server, no browser."""

from __future__ import annotations

import pytest

from wschat.server.page import inline_scripts, policy


@pytest.mark.parametrize(
    ("host", "connect"),
    [
        ("127.0.0.1:8000", "connect-src 'self' ws://127.0.0.1:8000 wss://127.0.0.1:8000;"),
        ("[::1]:8000", "connect-src 'self' ws://[::1]:8000 wss://[::1]:8000;"),
        ("chat.example.com", "connect-src 'self' ws://chat.example.com wss://chat.example.com;"),
        # A Host that would add sources or directives of its own is not named at all.
        ("evil; script-src *", "connect-src 'self';"),
        ("a.example b.example", "connect-src 'self';"),
        ("", "connect-src 'self';"),
    ],
)
def test_sockets_may_go_to_the_requested_host_only(host: str, connect: str) -> None:
    csp = policy("'self'", host)
    assert connect in csp
    assert csp.count("script-src") == 1 and "frame-ancestors 'none'" in csp


def test_inline_scripts_are_allowed_by_their_hash_only() -> None:
    assert inline_scripts("<p>no script</p>") == "'none'"
    # echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64
    assert inline_scripts("<script>alert(1)</script>") == (
        "'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI='"
    )
