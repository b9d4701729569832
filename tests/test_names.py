"""Look-alike names: the skeleton catches script mixing, case, digits and marks."""

from __future__ import annotations

import pytest

from wschat.names import confusable_keys


def conflict(a: str, b: str) -> bool:
    return bool(confusable_keys(a) & confusable_keys(b))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("alice", "\u0430lice"),  # Cyrillic a
        ("alice", "ALICE"),
        ("Bob", "\u0412\u041e\u0412"),  # Cyrillic VE O VE
        ("paypal", "paypa1"),
        ("Ian", "lan"),  # capital I and small L
        ("modern", "rnodern"),
        ("jose", "jos\u00e9"),
        ("jose", "jose\u0301"),  # combining acute
        ("kappa", "\u03ba\u03b1\u03c1\u03c1\u03b1"),  # Greek kappa alpha rho rho alpha
        ("bob", "\uff42\uff4f\uff42"),  # fullwidth
    ],
)
def test_look_alikes_conflict(a: str, b: str) -> None:
    assert conflict(a, b)


@pytest.mark.parametrize(("a", "b"), [("alice", "alicia"), ("bob", "rob"), ("ian", "lan")])
def test_different_names_do_not(a: str, b: str) -> None:
    assert not conflict(a, b)
