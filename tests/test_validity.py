"""GB 11643 / GB 32100 checks: published examples, edge cases, and SQL == Python."""

from __future__ import annotations

import datetime as dt
import random

import duckdb
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.validity import (
    CREDIT_ALPHABET,
    credit_code_check_char,
    credit_code_valid_sql,
    is_valid_credit_code,
    is_valid_resident_id,
    make_credit_code,
    make_resident_id,
    resident_id_check_char,
    resident_id_sex,
    resident_id_valid_sql,
)

# --- published examples ------------------------------------------------------------------------


def test_resident_id_published_examples():
    # The example of GB 11643-1999 itself (Beijing Chaoyang, 1949-12-31, sequence 002).
    assert resident_id_check_char("11010519491231002") == "X"
    assert is_valid_resident_id("11010519491231002X")
    assert is_valid_resident_id("34052419800101001X")
    assert not is_valid_resident_id("340524198001010013")


def test_credit_code_published_check_characters():
    # Widely cited example, and three real early codes whose printed check character
    # is known NOT to match GB 32100; the computed one (1, R, J) is published beside them.
    assert is_valid_credit_code("91350100M000100Y43")
    assert credit_code_check_char("91350100M0001TGQX") == "1"
    assert credit_code_check_char("91350211M0000XUF4") == "R"
    assert credit_code_check_char("91350203M0001FUE2") == "J"
    assert not is_valid_credit_code("91350100M0001TGQXM")


def test_credit_check_by_hand():
    first17 = "9137081100000000A"  # values: 9,1,3,7,0,8,1,1,0...,0,10
    total = 9 * 1 + 1 * 3 + 3 * 9 + 7 * 27 + 0 * 19 + 8 * 26 + 1 * 16 + 1 * 17 + 10 * 28
    assert credit_code_check_char(first17) == CREDIT_ALPHABET[(31 - total % 31) % 31]


# --- resident ID rules -------------------------------------------------------------------------


def test_resident_id_normalisation():
    assert is_valid_resident_id("  11010519491231002x\n")
    assert is_valid_resident_id("\u300011010519491231002X\t")
    assert not is_valid_resident_id("\u200b11010519491231002X")  # zero-width space is not blank
    assert not is_valid_resident_id("11010519491231002X0")
    assert not is_valid_resident_id("1101051949123100X")
    assert not is_valid_resident_id(None)  # type: ignore[arg-type]
    assert not is_valid_resident_id(110105194912310020)  # type: ignore[arg-type]
    # Fullwidth / Arabic-Indic digits are digits to Python, not to GB 11643.
    assert not is_valid_resident_id("１1010519491231002X")


@pytest.mark.parametrize(
    "area, birth, why",
    [
        ("990105", "19491231", "no province 99"),
        ("110105", "19490231", "no 31 February"),
        ("110105", "18991231", "before 1900"),
        ("110105", "29990101", "in the future"),
        ("110105", "19491331", "month 13"),
    ],
)
def test_resident_id_structure_refused(area, birth, why):
    first17 = f"{area}{birth}002"
    value = first17 + resident_id_check_char(first17)
    assert not is_valid_resident_id(value), why


def test_make_resident_id_and_sex():
    man = make_resident_id("370811", dt.date(1990, 5, 17), 123)
    woman = make_resident_id("370811", dt.date(1990, 5, 17), 124)
    assert man.startswith("37081119900517123") and is_valid_resident_id(man)
    assert resident_id_sex(man) == "M" and resident_id_sex(woman) == "F"
    with pytest.raises(ValueError):
        make_resident_id("990811", dt.date(1990, 5, 17), 1)
    with pytest.raises(ValueError):
        make_resident_id("370811", dt.date(1990, 5, 17), 1000)
    with pytest.raises(ValueError):
        make_resident_id("370811", dt.date(1899, 5, 17), 1)


def test_check_char_needs_seventeen():
    with pytest.raises(ValueError):
        resident_id_check_char("1234")
    with pytest.raises(ValueError):
        credit_code_check_char("9137081100000000I")  # I is not in the alphabet


# --- credit code rules -------------------------------------------------------------------------


def test_credit_code_alphabet_and_area():
    code = make_credit_code("91370811MA3C00001")
    assert is_valid_credit_code(code) and is_valid_credit_code(" " + code.lower() + " ")
    for bad in "IOZSV":
        assert not is_valid_credit_code(code[:10] + bad + code[11:])
    with pytest.raises(ValueError):
        make_credit_code("913708A1MA3C00001")  # area code must be digits
    assert not is_valid_credit_code(code[:17])
    assert not is_valid_credit_code(None)  # type: ignore[arg-type]


# --- single-character errors are always caught (property) -----------------------------------


@settings(max_examples=200, deadline=None)
@given(
    days=st.integers(0, 40_000),
    seq=st.integers(0, 999),
    pos=st.integers(0, 17),
    delta=st.integers(1, 9),
)
def test_any_single_digit_change_is_caught(days, seq, pos, delta):
    good = make_resident_id("370883", dt.date(1910, 1, 1) + dt.timedelta(days=days), seq)
    chars = list(good)
    if chars[pos] == "X":
        chars[pos] = str(delta)
    else:
        chars[pos] = str((int(chars[pos]) + delta) % 10)
    assert not is_valid_resident_id("".join(chars))


@settings(max_examples=200, deadline=None)
@given(body=st.text(CREDIT_ALPHABET, min_size=9, max_size=9), pos=st.integers(0, 17))
def test_any_single_char_change_in_credit_code_is_caught(body, pos):
    good = make_credit_code("92370826" + body)
    new = CREDIT_ALPHABET[(CREDIT_ALPHABET.index(good[pos]) + 7) % 31]
    assert not is_valid_credit_code(good[:pos] + new + good[pos + 1 :])


# --- SQL agrees with Python --------------------------------------------------------------------


def _corrupt(rng: random.Random, value: str, alphabet: str) -> str:
    kind = rng.randrange(9)
    i = rng.randrange(len(value))
    if kind == 0:  # substitute one character
        return value[:i] + rng.choice(alphabet) + value[i + 1 :]
    if kind == 1 and i < len(value) - 1:  # swap neighbours
        return value[:i] + value[i + 1] + value[i] + value[i + 2 :]
    if kind == 2:
        return value[:i] + value[i + 1 :]
    if kind == 3:
        return value + rng.choice(alphabet)
    if kind == 4:
        return (
            rng.choice([" ", "\t", "\u3000", "\n", "\u2003"])
            + value.lower()
            + rng.choice(["", " \r\n"])
        )
    if kind == 5:
        return "".join(rng.choice(alphabet + "IOZSV") for _ in range(18))
    if kind == 6:
        return value[:i] + "中" + value[i + 1 :]
    if kind == 7:
        return ""
    return value


def _random_resident_ids(rng: random.Random, n: int) -> list[str | None]:
    out: list[str | None] = []
    for _ in range(n):
        area = rng.choice(["370811", "110105", "820000", "710000", "440305"])
        born = dt.date(1900, 1, 1) + dt.timedelta(days=rng.randrange(46_000))
        good = make_resident_id(area, born, rng.randrange(1000))
        if rng.random() < 0.05:
            # structurally wrong but with a correct check character
            first17 = (
                rng.choice(["99", "37"])
                + area[2:]
                + rng.choice(["19000229", "18991231", "20991231", "20000229", "19841301"])
            )
            first17 += good[14:17]
            out.append(first17 + resident_id_check_char(first17))
        elif rng.random() < 0.5:
            out.append(good)
        else:
            out.append(_corrupt(rng, good, "0123456789Xx"))
    return [*out, None]


def _random_credit_codes(rng: random.Random, n: int) -> list[str | None]:
    out: list[str | None] = []
    for _ in range(n):
        first17 = (
            rng.choice("159Y")
            + rng.choice("123")
            + rng.choice(["370811", "370883", "110105"])
            + "".join(rng.choice(CREDIT_ALPHABET) for _ in range(9))
        )
        good = make_credit_code(first17)
        out.append(good if rng.random() < 0.5 else _corrupt(rng, good, CREDIT_ALPHABET))
    return [*out, None]


def _sql_verdicts(values: list[str | None], sql: str) -> list[bool | None]:
    con = duckdb.connect()
    con.register("vals", pa.table({"i": list(range(len(values))), "x": values}))
    return [row[0] for row in con.sql(f"SELECT {sql} FROM vals ORDER BY i").fetchall()]


def test_resident_id_sql_agrees_with_python():
    values = _random_resident_ids(random.Random(11643), 10_000)
    got = _sql_verdicts(values, resident_id_valid_sql("x"))
    want = [None if v is None else is_valid_resident_id(v) for v in values]
    assert got == want
    assert 0.3 < sum(bool(w) for w in want) / len(want) < 0.8  # both kinds are present


def test_credit_code_sql_agrees_with_python():
    values = _random_credit_codes(random.Random(32100), 10_000)
    got = _sql_verdicts(values, credit_code_valid_sql("x"))
    want = [None if v is None else is_valid_credit_code(v) for v in values]
    assert got == want
    assert 0.3 < sum(bool(w) for w in want) / len(want) < 0.8


def test_sql_takes_an_expression_and_keeps_null():
    con = duckdb.connect()
    row = con.execute(
        f"SELECT {resident_id_valid_sql('a || b')}, {credit_code_valid_sql('NULL')},"
        f" {resident_id_valid_sql('CAST(NULL AS VARCHAR)')}"
        " FROM (VALUES ('110105194912', '31002X')) t(a, b)"
    ).fetchone()
    assert row == (True, None, None)
