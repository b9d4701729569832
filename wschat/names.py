"""Look-alike names: a small skeleton in the spirit of Unicode TS #39 §4 (confusables).

Two names *conflict* when one could be mistaken for the other on screen: equal when
case-folded, or equal after mapping look-alike letters from other scripts (Cyrillic a,
Greek omicron), digits and marks (``0``/``O``, ``1``/``l``, ``é``/``e``) and letter pairs
(``rn``/``m``) onto one representative. The table is a hand-picked subset of the Unicode
confusables data covering the Latin look-alikes that matter for chat names; control,
zero-width and bidi characters are refused earlier by ``protocol.check_name``.

Pure functions, standard library only.
"""

from __future__ import annotations

import unicodedata

# Case-sensitive first: uppercase Cyrillic/Greek letters look like Latin capitals whose
# lowercase forms differ (Cyrillic capital EN is
# Latin ``H``, but its small form is not ``h``).
_UPPER = {
    "\u0410": "A",  # CYRILLIC CAPITAL LETTER A
    "\u0412": "B",  # CYRILLIC CAPITAL LETTER VE
    "\u0415": "E",  # CYRILLIC CAPITAL LETTER IE
    "\u041a": "K",  # CYRILLIC CAPITAL LETTER KA
    "\u041c": "M",  # CYRILLIC CAPITAL LETTER EM
    "\u041d": "H",  # CYRILLIC CAPITAL LETTER EN
    "\u041e": "O",  # CYRILLIC CAPITAL LETTER O
    "\u0420": "P",  # CYRILLIC CAPITAL LETTER ER
    "\u0421": "C",  # CYRILLIC CAPITAL LETTER ES
    "\u0422": "T",  # CYRILLIC CAPITAL LETTER TE
    "\u0425": "X",  # CYRILLIC CAPITAL LETTER HA
    "\u0423": "Y",  # CYRILLIC CAPITAL LETTER U
    "\u0405": "S",  # CYRILLIC CAPITAL LETTER DZE
    "\u0406": "l",  # CYRILLIC CAPITAL LETTER BYELORUSSIAN-UKRAINIAN I
    "\u0408": "J",  # CYRILLIC CAPITAL LETTER JE
    "\u051a": "Q",  # CYRILLIC CAPITAL LETTER QA
    "\u051c": "W",  # CYRILLIC CAPITAL LETTER WE
    "\u04c0": "l",  # CYRILLIC LETTER PALOCHKA
    "\u0391": "A",  # GREEK CAPITAL LETTER ALPHA
    "\u0392": "B",  # GREEK CAPITAL LETTER BETA
    "\u0395": "E",  # GREEK CAPITAL LETTER EPSILON
    "\u0396": "Z",  # GREEK CAPITAL LETTER ZETA
    "\u0397": "H",  # GREEK CAPITAL LETTER ETA
    "\u0399": "l",  # GREEK CAPITAL LETTER IOTA
    "\u039a": "K",  # GREEK CAPITAL LETTER KAPPA
    "\u039c": "M",  # GREEK CAPITAL LETTER MU
    "\u039d": "N",  # GREEK CAPITAL LETTER NU
    "\u039f": "O",  # GREEK CAPITAL LETTER OMICRON
    "\u03a1": "P",  # GREEK CAPITAL LETTER RHO
    "\u03a4": "T",  # GREEK CAPITAL LETTER TAU
    "\u03a5": "Y",  # GREEK CAPITAL LETTER UPSILON
    "\u03a7": "X",  # GREEK CAPITAL LETTER CHI
    "I": "l",  # LATIN CAPITAL LETTER I
}
_LOWER = {
    "\u0430": "a",  # CYRILLIC SMALL LETTER A
    "\u0435": "e",  # CYRILLIC SMALL LETTER IE
    "\u043e": "o",  # CYRILLIC SMALL LETTER O
    "\u0440": "p",  # CYRILLIC SMALL LETTER ER
    "\u0441": "c",  # CYRILLIC SMALL LETTER ES
    "\u0443": "y",  # CYRILLIC SMALL LETTER U
    "\u0445": "x",  # CYRILLIC SMALL LETTER HA
    "\u0455": "s",  # CYRILLIC SMALL LETTER DZE
    "\u0456": "i",  # CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I
    "\u0458": "j",  # CYRILLIC SMALL LETTER JE
    "\u04bb": "h",  # CYRILLIC SMALL LETTER SHHA
    "\u0501": "d",  # CYRILLIC SMALL LETTER KOMI DE
    "\u051b": "q",  # CYRILLIC SMALL LETTER QA
    "\u051d": "w",  # CYRILLIC SMALL LETTER WE
    "\u04cf": "l",  # CYRILLIC SMALL LETTER PALOCHKA
    "\u0261": "g",  # LATIN SMALL LETTER SCRIPT G
    "\u04af": "y",  # CYRILLIC SMALL LETTER STRAIGHT U
    "\u057d": "u",  # ARMENIAN SMALL LETTER SEH
    "\u0578": "n",  # ARMENIAN SMALL LETTER VO
    "\u0585": "o",  # ARMENIAN SMALL LETTER OH
    "\u03b1": "a",  # GREEK SMALL LETTER ALPHA
    "\u03bf": "o",  # GREEK SMALL LETTER OMICRON
    "\u03c1": "p",  # GREEK SMALL LETTER RHO
    "\u03bd": "v",  # GREEK SMALL LETTER NU
    "\u03b9": "i",  # GREEK SMALL LETTER IOTA
    "\u03ba": "k",  # GREEK SMALL LETTER KAPPA
    "\u03c4": "t",  # GREEK SMALL LETTER TAU
    "\u03c5": "u",  # GREEK SMALL LETTER UPSILON
    "\u03c7": "x",  # GREEK SMALL LETTER CHI
    "\u03f2": "c",  # GREEK LUNATE SIGMA SYMBOL
    "\u0251": "a",  # LATIN SMALL LETTER ALPHA
    "\u0131": "i",  # LATIN SMALL LETTER DOTLESS I
    "\u2113": "l",  # SCRIPT SMALL L
    "0": "o",  # DIGIT ZERO
    "1": "l",  # DIGIT ONE
    "|": "l",  # VERTICAL LINE
    "!": "l",  # EXCLAMATION MARK
    "$": "s",  # DOLLAR SIGN
    "5": "s",  # DIGIT FIVE
    "@": "a",  # COMMERCIAL AT
}
_TABLE = str.maketrans({**_UPPER, **_LOWER})
_PAIRS = (("rn", "m"), ("vv", "w"), ("cl", "d"))


def skeleton(name: str) -> str:
    """Return the look-alike skeleton of ``name``: equal skeletons read the same."""
    text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", name))
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.translate(_TABLE).casefold().translate(_TABLE)
    for pair, single in _PAIRS:
        text = text.replace(pair, single)
    return text


def confusable_keys(name: str) -> frozenset[str]:
    """Return the keys under which ``name`` is indexed; two names conflict if any key is shared."""
    return frozenset({"case:" + unicodedata.normalize("NFKC", name).casefold(), skeleton(name)})
