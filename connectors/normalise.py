"""One normal form for the items both sides of a private set intersection compare.

ECDH-PSI compares items bit for bit: ``" 37080219900101123x"`` and
``"37080219900101123X"`` are different points on the curve. The platform's column
and an operator's list are typed by different people in different systems, so
both sides pass every item through :func:`normalise` before it is encrypted.
The function is pure Python (no platform import), because the operator's client
runs it on its own machine and the platform runs the same code on its column:

* full-width forms (U+FF01 to U+FF5E, and the ideographic space U+3000) become
  their half-width ASCII twins, so ``"３７０８"`` is ``"3708"``;
* leading and trailing white space is trimmed (after the conversion, so a
  full-width space is trimmed too);
* an item of exactly 18 ASCII letters and digits (the shape of a GB 11643
  resident ID and of a GB 32100 unified social credit code) is upper-cased:
  the check character ``x`` of an ID number becomes ``X``, and a credit code,
  which uses upper-case letters only, loses any lower case.

Nothing else changes: inner spaces, punctuation and other scripts are kept, so two
items that differ in substance never collapse into one. An empty result (a blank
cell) is dropped by :func:`normalise_all`.
"""

from __future__ import annotations

from collections.abc import Iterable

FULL_WIDTH_OFFSET = 0xFEE0  # U+FF01 '！' - U+0021 '!'
_HALF = {code: code - FULL_WIDTH_OFFSET for code in range(0xFF01, 0xFF5F)}
_HALF[0x3000] = 0x20  # ideographic space
ID_LENGTH = 18


def to_half_width(text: str) -> str:
    """Full-width ASCII forms (and the ideographic space) as half-width ASCII."""
    return text.translate(_HALF)


def normalise(item: object) -> str:
    """The normal form of one item (see the module docstring); ``""`` for a blank."""
    text = to_half_width(str(item)).strip()
    if len(text) == ID_LENGTH and text.isascii() and text.isalnum():
        text = text.upper()
    return text


def normalise_all(items: Iterable[object]) -> list[str]:
    """The distinct normal forms of ``items`` in first-seen order; blanks and None dropped."""
    seen: dict[str, None] = {}
    for item in items:
        if item is None:
            continue
        text = normalise(item)
        if text:
            seen.setdefault(text, None)
    return list(seen)
