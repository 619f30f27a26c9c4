"""Fødselsnummer masking: valid numbers (checksum + date) go, look-alikes stay."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stdnum.no import fodselsnummer

from assistant.understand.pii import FNR_MASK, find_fnr, mask_fnr, mask_personal_numbers


def make_fnr(birth: str, start: int = 100) -> str:
    """A synthetic number that passes stdnum's checks, built from its own check-digit functions.

    ``birth`` is DDMMYY (day + 40 for a D-number). The individual number is searched from
    ``start`` because some individual numbers give check digit 10, which no number can carry.
    """
    for individual in range(start, 500):
        first9 = f"{birth}{individual:03d}"
        k1 = fodselsnummer.calc_check_digit1(first9)
        if len(k1) != 1:
            continue
        k2 = fodselsnummer.calc_check_digit2(first9 + k1)
        if len(k2) != 1:
            continue
        number = first9 + k1 + k2
        assert fodselsnummer.is_valid(number)
        return number
    raise AssertionError("no valid number for this date")


FNR = make_fnr("150385")
FNR_OTHER = make_fnr("010190", start=200)
D_NUMBER = make_fnr("410190")  # D-number: day 01 + 40


def test_generated_numbers_are_valid_and_distinct() -> None:
    assert len({FNR, FNR_OTHER, D_NUMBER}) == 3
    assert int(D_NUMBER[0]) >= 4


def test_finds_and_masks_plain_number() -> None:
    text = f"Mitt fødselsnummer er {FNR}, takk."
    spans = find_fnr(text)
    assert spans == [(text.index(FNR), text.index(FNR) + 11)]
    assert mask_fnr(text) == f"Mitt fødselsnummer er {FNR_MASK}, takk."


def test_masks_six_plus_five_with_space() -> None:
    spaced = f"{FNR[:6]} {FNR[6:]}"
    text = f"fnr: {spaced}"
    assert find_fnr(text) == [(5, 5 + len(spaced))]
    assert mask_fnr(text) == f"fnr: {FNR_MASK}"


def test_masks_d_number() -> None:
    assert mask_fnr(f"D-nummer {D_NUMBER}") == f"D-nummer {FNR_MASK}"


def test_number_failing_checksum_is_left_alone() -> None:
    assert not fodselsnummer.is_valid("12345678901")
    text = "Ordrenummer 12345678901 gjelder meg."
    assert find_fnr(text) == []
    assert mask_fnr(text) == text


def test_off_by_one_digit_is_left_alone() -> None:
    broken = FNR[:-1] + str((int(FNR[-1]) + 1) % 10)
    assert not fodselsnummer.is_valid(broken)
    assert mask_fnr(broken) == broken


@pytest.mark.parametrize(
    "template",
    ["1{n}", "{n}7", "47{n}", "{n}0000", "kontonummer 9{n}9"],
)
def test_digits_inside_a_longer_number_are_left_alone(template: str) -> None:
    text = template.format(n=FNR)
    assert find_fnr(text) == []
    assert mask_fnr(text) == text


def test_several_numbers_and_surrounding_text_preserved() -> None:
    text = f"Meg: {FNR}\nBarnet mitt: {FNR_OTHER[:6]} {FNR_OTHER[6:]}.\nTlf 22 22 22 22"
    masked = mask_fnr(text)
    assert FNR not in masked and FNR_OTHER[6:] not in masked
    assert masked == f"Meg: {FNR_MASK}\nBarnet mitt: {FNR_MASK}.\nTlf 22 22 22 22"


def test_mask_personal_numbers_is_the_entry_point() -> None:
    text = f"Slett alt om {FNR}."
    assert mask_personal_numbers(text) == f"Slett alt om {FNR_MASK}."
    assert mask_personal_numbers("") == ""


def test_empty_and_no_digits() -> None:
    assert find_fnr("") == []
    assert mask_fnr("Hei, ingen tall her.") == "Hei, ingen tall her."


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789", min_size=11, max_size=11))
def test_eleven_digits_masked_exactly_when_stdnum_says_valid(digits: str) -> None:
    masked = mask_fnr(f"nr {digits} slutt")
    if fodselsnummer.is_valid(digits):
        assert masked == f"nr {FNR_MASK} slutt"
    else:
        assert masked == f"nr {digits} slutt"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120), st.booleans(), st.text(max_size=120))
def test_only_the_valid_numbers_are_replaced(before: str, spaced: bool, after: str) -> None:
    number = f"{FNR[:6]} {FNR[6:]}" if spaced else FNR
    text = f"{before} {number} {after}"
    spans = find_fnr(text)
    masked = mask_fnr(text)
    assert (text.index(f" {number} ") + 1, text.index(f" {number} ") + 1 + len(number)) in spans
    assert masked.count(FNR_MASK) - text.count(FNR_MASK) == len(spans)
    rebuilt, cursor = [], 0
    for start, end in spans:
        rebuilt += [text[cursor:start], FNR_MASK]
        cursor = end
    assert masked == "".join(rebuilt) + text[cursor:]


# -- every spelling people use ----------------------------------------------------------------

SEPARATORS = [" ", "  ", "\t", ".", "-", "\u2013", "\u2014", "\u2212", "\u2011", "\u00a0",
              "\u200b", "\n", " \n", "\r\n", " - ", "\u00ad"]
H_NUMBER = make_fnr("014590")  # H-number: month 05 + 40


def spell(number: str, cuts: list[int], separators: list[str], fullwidth: bool) -> str:
    """The number split at `cuts` and joined with `separators`, maybe in fullwidth digits."""
    if fullwidth:
        number = "".join(chr(0xFF10 + int(d)) for d in number)
    parts, previous = [], 0
    for cut in sorted(set(cuts)):
        parts.append(number[previous:cut])
        previous = cut
    parts.append(number[previous:])
    out = parts[0]
    for index, part in enumerate(parts[1:]):
        out += separators[index % len(separators)] + part
    return out


@settings(max_examples=400, deadline=None)
@given(
    number=st.sampled_from([FNR, FNR_OTHER, D_NUMBER, H_NUMBER]),
    cuts=st.lists(st.integers(min_value=1, max_value=10), max_size=5),
    separators=st.lists(st.sampled_from(SEPARATORS), min_size=1, max_size=3),
    fullwidth=st.booleans(),
    before=st.text(alphabet="abcæøå ,:;()!?\n", max_size=30),
    after=st.text(alphabet="abcæøå ,:;()!?\n", max_size=30),
)
def test_every_spelling_of_a_number_is_masked(number, cuts, separators, fullwidth, before, after):
    text = f"{before} {spell(number, cuts, separators, fullwidth)} {after}"
    masked = mask_personal_numbers(text)
    assert FNR_MASK in masked
    assert not any(ch.isdigit() for ch in masked), masked


@pytest.mark.parametrize("spelling", [
    f"{FNR[:6]}.{FNR[6:]}", f"{FNR[:6]}  {FNR[6:]}", f"{FNR[:6]}\t{FNR[6:]}",
    f"{FNR[:6]}\n{FNR[6:]}", f"{FNR[:2]} {FNR[2:4]} {FNR[4:6]} {FNR[6:]}",
    f"{FNR[:6]}\u2013{FNR[6:]}", f"{FNR[:6]}\u200b{FNR[6:]}",
    "".join(chr(0xFF10 + int(d)) for d in FNR), f"{FNR[:6]} {FNR[6:9]} {FNR[9:]}",
])
def test_the_spellings_the_probe_found(spelling):
    assert mask_personal_numbers(f"fnr: {spelling}.") == f"fnr: {FNR_MASK}."


def test_h_numbers_are_masked():
    assert mask_personal_numbers(f"H-nummer {H_NUMBER}") == f"H-nummer {FNR_MASK}"


def test_a_number_inside_a_longer_grouped_number_is_left_alone():
    text = f"konto {FNR[:6]}{FNR[6:]}9 og ordre 1{FNR[:6]} {FNR[6:]}"
    assert mask_personal_numbers(text) == text
