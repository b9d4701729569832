"""Origin matching: exact, normalised, and never fooled by look-alike hosts."""

from __future__ import annotations

import pytest

from wschat.origin import normalise_origin, origin_allowed

ALLOWED = frozenset({"https://chat.example.com"})


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("https://Chat.Example.com", "https://chat.example.com"),
        ("https://chat.example.com:443", "https://chat.example.com"),
        ("http://localhost:8000", "http://localhost:8000"),
        ("http://[::1]:8000", "http://[::1]:8000"),
        ("null", None),
        ("file://", None),
        ("https://user@chat.example.com", None),
        ("https://chat.example.com/path", None),
        ("javascript:alert(1)", None),
        ("https://chat.example.com:99999", None),
    ],
)
def test_normalise_origin(raw: str, normal: str | None) -> None:
    assert normalise_origin(raw) == normal


@pytest.mark.parametrize(
    ("origin", "host", "ok"),
    [
        (None, "127.0.0.1:8000", True),  # not a browser
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),  # the server's own page
        ("https://127.0.0.1:8000", "127.0.0.1:8000", True),  # behind a TLS proxy
        ("http://127.0.0.1:8001", "127.0.0.1:8000", False),  # another port is another origin
        ("https://chat.example.com", "127.0.0.1:8000", True),  # --allow-origin
        ("https://chat.example.com.evil.net", "127.0.0.1:8000", False),
        ("https://evilchat.example.com", "127.0.0.1:8000", False),
        ("http://chat.example.com", "127.0.0.1:8000", False),  # scheme matters
        ("https://127.0.0.1:8000.evil.net", "127.0.0.1:8000", False),
        ("null", "127.0.0.1:8000", False),
        ("", "127.0.0.1:8000", False),
        ("http://127.0.0.1:8000", None, False),
    ],
)
def test_origin_allowed(origin: str | None, host: str | None, ok: bool) -> None:
    assert origin_allowed(origin, host, ALLOWED) is ok


def test_star_allows_every_origin() -> None:
    assert origin_allowed("https://anything.example", "h", frozenset({"*"}))
