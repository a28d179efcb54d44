"""The column form of the subject hash (:func:`subject_hashes`, the scores a model keeps)
gives exactly :func:`subject_hash` of each normalised key: a subject is the same subject in
every service and verification product."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.verification.keys import normalise_key, subject_hash, subject_hashes

SECRET = os.urandom(32)
CASES = [
    "91370800MA3C1234x",  # a lower-case check letter
    "  370802199001011234 ",  # padded
    "\x1c370802\x1f",  # ASCII separators Python counts as whitespace
    "９１３７０８００ＭＡ３Ｃ１２３４ｘ",  # full width
    "\u3000370802\u3000",  # the ideographic space
    "任城区 x",  # not ASCII: the function itself
    12345,  # not text: as its text
    "",
]


def test_each_case_hashes_as_the_one_key_function():
    expected = [subject_hash(SECRET, (normalise_key(k),)) for k in CASES]
    assert subject_hashes(SECRET, CASES) == expected
    # full width is the same subject as half width, the ideographic space as other spaces
    assert expected[3] == expected[0] and expected[4] == expected[2]
    assert len(set(expected)) == len(CASES) - 2


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=30), max_size=20))
def test_any_text_hashes_as_the_one_key_function(keys):
    assert subject_hashes(SECRET, keys) == [subject_hash(SECRET, (normalise_key(k),)) for k in keys]
