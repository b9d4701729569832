"""Chat tokens: bound to a name and an expiry, signed with the server's secret."""

from __future__ import annotations

import time

import pytest

from wschat.auth import Reason, issue_token, parse_ttl, verify_token
from wschat.errors import AuthError, ConfigError


def test_a_token_verifies_for_its_name() -> None:
    token = issue_token("alice", "s3cret")
    assert verify_token(token, "s3cret", "alice") == "alice"
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def test_names_compare_normalised() -> None:
    token = issue_token("\uff42ob", "k")  # fullwidth b
    assert verify_token(token, "k", "bob") == "bob"


@pytest.mark.parametrize(
    ("token", "secret", "name", "reason"),
    [
        (None, "k", "alice", Reason.MISSING),
        ("", "k", "alice", Reason.MISSING),
        ("not.a.token", "k", "alice", Reason.INVALID),
        (issue_token("alice", "other"), "k", "alice", Reason.INVALID),
        (issue_token("alice", "k", now=time.time() - 7200), "k", "alice", Reason.EXPIRED),
        (issue_token("alice", "k"), "k", "bob", Reason.WRONG_NAME),
    ],
)
def test_bad_tokens_are_refused(token: str | None, secret: str, name: str, reason: str) -> None:
    with pytest.raises(AuthError) as err:
        verify_token(token, secret, name)
    assert err.value.reason == reason


def test_a_tampered_token_is_refused() -> None:
    header, _payload, signature = issue_token("alice", "k").split(".")
    forged = issue_token("mallory", "k").split(".")[1]
    with pytest.raises(AuthError):
        verify_token(f"{header}.{forged}.{signature}", "k", "mallory")


def test_expiry_is_checked_against_the_given_clock() -> None:
    token = issue_token("alice", "k", ttl_s=60, now=time.time())
    verify_token(token, "k", "alice", now=time.time() + 30)
    with pytest.raises(AuthError):
        verify_token(token, "k", "alice", now=time.time() + 61)


@pytest.mark.parametrize(
    ("raw", "seconds"), [("90", 90), ("30s", 30), ("15m", 900), ("1h", 3600), ("2d", 172800)]
)
def test_parse_ttl(raw: str, seconds: float) -> None:
    assert parse_ttl(raw) == seconds


@pytest.mark.parametrize("raw", ["", "0", "-1h", "1w", "h"])
def test_parse_ttl_rejects(raw: str) -> None:
    with pytest.raises(ConfigError):
        parse_ttl(raw)
