"""Look-alike names: UTS #39 skeletons from Unicode's confusables data, and refused names."""

from __future__ import annotations

import unicodedata

import disarm
import pytest

from wschat.errors import ProtocolError
from wschat.names import confusable_keys, refusal
from wschat.protocol import check_name


def conflict(a: str, b: str) -> bool:
    return bool(confusable_keys(a) & confusable_keys(b))


def refused_or_conflicts(name: str, held: str) -> bool:
    """What the server does with ``name`` while ``held`` is online: 4003 or 4009."""
    try:
        checked = check_name(name)
    except ProtocolError:
        return True
    return conflict(checked, held)


# Issue 15: each was accepted beside "admin" and renders like it.
ISSUE_15 = [
    "admin\u2800",  # braille pattern blank
    "admin\u3164",  # hangul filler
    "adm\u034fin",  # combining grapheme joiner
    "\u1d00dmin",  # latin letter small capital a
    "adm\u0269n",  # latin small letter iota
    "adm\u04cfn",  # cyrillic small letter palochka
    "\ua4eedmin",  # lisu letter a
]


@pytest.mark.parametrize("name", ISSUE_15)
def test_issue_15_names_are_refused_or_look_like_admin(name: str) -> None:
    assert refused_or_conflicts(name, "admin")


def _sources(letter: str) -> list[str]:
    """Every character the confusables data folds onto ``letter`` (capital I is ``l`` there)."""
    found = []
    for cp in range(0x110000):
        char = chr(cp)
        if unicodedata.category(char) in ("Cn", "Cs", "Co") or char == letter:
            continue
        folds = disarm.find_confusables(char)
        if folds and (folds[0][2] == letter or (folds[0][2] == letter.upper() != "I")):
            found.append(char)
    return found


GENERATED = [
    ("admin"[:i] + char + "admin"[i + 1 :], f"U+{ord(char):04X}->{letter}")
    for i, letter in enumerate("admin")
    for char in _sources(letter)
]


def test_the_generated_set_covers_every_letter() -> None:
    assert {label[-1] for _, label in GENERATED} == set("admin")
    assert len(GENERATED) > 100


@pytest.mark.parametrize(("name", "label"), GENERATED, ids=[label for _, label in GENERATED])
def test_every_confusable_of_a_letter_of_admin_is_caught(name: str, label: str) -> None:
    assert refused_or_conflicts(name, "admin"), label


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("alice", "\u0430lice"),  # Cyrillic a
        ("alice", "ALICE"),
        ("Bob", "\u0412\u041e\u0412"),  # Cyrillic VE O VE
        ("paypal", "paypa1"),
        ("Ian", "lan"),  # capital I and small L
        ("kappa", "\u03ba\u03b1\u03c1\u03c1\u03b1"),  # Greek kappa alpha rho rho alpha
        ("bob", "\uff42\uff4f\uff42"),  # fullwidth
        ("admin", "\u1d00dmin"),
        ("admin", "adm\u0269n"),
        ("admin", "\ua4eedmin"),
    ],
)
def test_look_alikes_conflict(a: str, b: str) -> None:
    assert conflict(a, b)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("alice", "alicia"),
        ("bob", "rob"),
        ("ian", "lan"),
        # UTS #39 keeps marks: an accent is visible (the old hand table dropped every mark).
        ("jose", "jos\u00e9"),
        ("zoe", "zo\u00eb"),
        ("\u0438\u0432\u0430\u043d", "\u0438\u0432\u0430\u0438"),  # Cyrillic ivan / ivai
        ("\u7530\u4e2d", "\u5c71\u7530"),  # Han: tanaka / yamada
    ],
)
def test_different_names_do_not(a: str, b: str) -> None:
    assert not conflict(a, b)


@pytest.mark.parametrize(
    "name",
    [
        "jos\u00e9",
        "zo\u00eb",
        "Bj\u00f6rk",
        "\u0438\u0432\u0430\u043d",  # Cyrillic
        "\u03b1\u03bb\u03ad\u03be\u03b7\u03c2",  # Greek
        "\u7530\u4e2d",  # Han
        "\u7530\u4e2d\u305f\u308d\u3046",  # Japanese: Han and Hiragana are one writing system
        "\uae40\ubbfc\uc218",  # Hangul
        "x_y-1",
    ],
)
def test_ordinary_names_are_allowed(name: str) -> None:
    assert refusal(name) is None
    assert check_name(name) == unicodedata.normalize("NFKC", name)
    assert not refused_or_conflicts(name, "admin")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("admin\u2800", "blank"),
        ("admin\u3164", "blank"),
        ("admin\uffa0", "blank"),
        ("\u115fadmin", "blank"),
        ("adm\u034fin", "invisible"),
        ("ad\u00admin", "forbidden"),  # soft hyphen: a format character, refused as before
        ("adm\ufe0fin", "invisible"),  # variation selector 16
        ("\u0301admin", "combining"),
        ("\u0301\u0302", "combining"),
        ("adm\u04cfn", "writing systems"),
        ("\ua4eedmin", "writing systems"),
        ("\u0430lice", "writing systems"),
    ],
)
def test_refused_names_say_why(name: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        check_name(name)
    assert reason in caught.value.detail
