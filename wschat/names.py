"""Look-alike names: UTS #39 skeletons from Unicode's confusables data, and what a name may hold.

Two names *conflict* when one could be mistaken for the other on screen. The data is
Unicode's own ``confusables.txt`` (17.0.0) as shipped by the ``disarm`` package, whose
``skeleton_key`` is the UTS #39 §4 skeleton made a fixed point under case folding; we add
nothing by hand. A name has two keys, and two names conflict when they share one:

- ``case:`` + ``casefold(NFKC(name))``: the same name in another case (``ALICE``/``alice``);
- ``skel:`` + ``skeleton_key(NFKC(name))``, i.e. NFKC, drop default-ignorables, map each character to
  its confusables prototype *before* folding case (the UTS #39 skeleton is case-sensitive:
  capital ``I`` looks like ``l``), then case-fold, re-map and NFKC until nothing changes.
  Digits take part (``digit_policy="tr39"``: ``0``/``O``, ``1``/``l``).

Some names are refused outright (``refusal``): a character the skeleton deletes (the
Default_Ignorable_Code_Points such as U+034F, U+200B-U+200F, U+2060-U+206F, U+FE00-U+FE0F,
and the blanks and fillers U+2800, U+3164, U+FFA0, U+115F, U+1160; not the ignorable marks
U+17B4/U+17B5 and U+180B-U+180F, which disarm keeps), a combining mark at
the start (so also a name of marks only), and letters from more than one writing system
(UTS #39 §5.1 augmented script sets: Japanese Han+kana or Korean Han+Hangul are one).

Pure functions. Standard library and ``disarm`` (a data package with a compiled core; it
loads no framework, ``tests/test_layout.py`` checks) only.
"""

from __future__ import annotations

import functools
import unicodedata

import disarm

CONFUSABLES_VERSION: str = disarm.CONFUSABLES_VERSION  # the confusables.txt release in use


def name_key(name: str) -> str:
    """Return the UTS #39 skeleton key of ``name``: equal keys read the same on screen."""
    return disarm.skeleton_key(unicodedata.normalize("NFKC", name), digit_policy="tr39")


def confusable_keys(name: str) -> frozenset[str]:
    """Return the keys under which ``name`` is indexed; two names conflict if any key is shared.

    The single process (``rooms.Presence``) and every node of a cluster index held names by
    these keys, so a look-alike is refused whichever node holds the original.
    """
    folded = unicodedata.normalize("NFKC", name).casefold()
    return frozenset({"case:" + folded, "skel:" + name_key(name)})


def refusal(name: str) -> str | None:
    """Return why ``name`` may not be used (a lowercase phrase), or None if it may.

    The caller refuses the name (4003, ``INVALID_NAME``) with the phrase as its reason.
    """
    for char in name:
        if _deleted(char):
            return f"contains an invisible or blank character U+{ord(char):04X}"
    if name and unicodedata.category(name[0]).startswith("M"):
        return f"starts with a combining mark U+{ord(name[0]):04X}"
    if disarm.is_mixed_script(name):
        scripts = ", ".join(s.name.lower() for s in disarm.detect_scripts(name))
        return f"mixes writing systems ({scripts})"
    return None


@functools.lru_cache(maxsize=4096)
def _deleted(char: str) -> bool:
    """Return whether the skeleton deletes ``char`` (cached: a name is checked per character,
    and names repeat their characters; 4096 entries bound what odd names can make it hold)."""
    return not disarm.skeleton_key(char)
