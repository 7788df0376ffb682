"""E.164 normalisation: the forms FreeSWITCH and operators write, and hostile input."""

import time

import pytest

from fsrouter.config import normalise_number


@pytest.mark.parametrize(("text", "expected"), [
    ("+49 30 23125000", "+493023125000"),        # Berlin
    ("030 23125000", "+493023125000"),           # Berlin, national form
    ("030/231 250-00", "+493023125000"),         # Berlin, written with separators
    ("0049 30 23125000", "+493023125000"),       # Berlin, 00 international prefix
    ("493023125000", "+493023125000"),           # as a switch delivers it, without '+'
    ("+49 (0)30 23125000", "+493023125000"),     # the (0) some people write
    ("089 41612345", "+498941612345"),           # München
    ("+49 221 1234567", "+492211234567"),        # Köln
    ("0221 1234567", "+492211234567"),           # Köln, national
    ("040 12345678", "+494012345678"),           # Hamburg
    ("0711 1234567", "+497111234567"),           # Stuttgart
    ("032 123456789", "+4932123456789"),         # 032 national number
    ("+49 151 23456789", "+4915123456789"),      # mobile
    ("0176 12345678", "+4917612345678"),         # mobile, national
    ("+44 20 7946 0958", "+442079460958"),       # London
    ("+1 201 555 0123", "+12015550123"),         # USA
    ("0044 20 7946 0958", "+442079460958"),      # UK via 00
    (" +43 1 5871234 ", "+4315871234"),          # Wien, surrounding spaces
])
def test_normalises_to_e164(text, expected):
    assert normalise_number(text, "DE") == expected


def test_default_region_reads_national_numbers():
    assert normalise_number("01 5871234", "AT") == "+4315871234"
    assert normalise_number("01 5871234", "at") == "+4315871234"


@pytest.mark.parametrize(("text", "message"), [
    ("030 12", "not a valid phone number: '030 12'"),
    ("0", "not a valid phone number: '0'"),
    ("+49 30", "not a valid phone number: '+49 30'"),
    ("", "empty phone number"),
    ("   ", "empty phone number"),
    ("anonymous", "not a phone number: character 'a' is not allowed (digits, spaces, "
                  "+ - / ( ) . only)"),
    ("${system(touch /tmp/x)}", "not a phone number: character '$' is not allowed (digits, "
                                "spaces, + - / ( ) . only)"),
    ("030 1234\n5678", "not a phone number: character '\\n' is not allowed (digits, spaces, "
                       "+ - / ( ) . only)"),
    ("030,1234", "not a phone number: character ',' is not allowed (digits, spaces, "
                 "+ - / ( ) . only)"),
    ("+49+30 1234567", "not a phone number: misplaced '+' in '+49+30 1234567'"),
    ("030 1234567+", "not a phone number: misplaced '+' in '030 1234567+'"),
    ("1" * 41, "too long for a phone number (41 characters, at most 40)"),
])
def test_refuses_invalid_and_hostile_input(text, message):
    with pytest.raises(ValueError) as caught:
        normalise_number(text, "DE")
    assert str(caught.value) == message


def test_refuses_non_text():
    with pytest.raises(ValueError, match="must be a phone number as text, got int"):
        normalise_number(4930123, "DE")  # type: ignore[arg-type]


def test_ten_kilobyte_input_is_refused_quickly_without_echo():
    hostile = "${system(x)}" * 900
    start = time.perf_counter()
    with pytest.raises(ValueError) as caught:
        normalise_number(hostile, "DE")
    assert time.perf_counter() - start < 0.01
    assert len(hostile) > 10_000
    assert str(caught.value) == "too long for a phone number (10800 characters, at most 40)"


def test_fast_enough_for_every_call():
    numbers = [f"030 2312{n:04d}" for n in range(2000)]
    start = time.perf_counter()
    for number in numbers:
        normalise_number(number, "DE")
    assert (time.perf_counter() - start) / len(numbers) < 0.0005


@pytest.mark.parametrize("text", ["0676 9876543", "01 5871234", "6769876543"])
def test_without_a_country_a_national_number_is_an_error(text):
    # Issue 19: "0676 9876543" became +496769876543 (read as German) without a word.
    with pytest.raises(ValueError, match="needs defaults.country"):
        normalise_number(text, None)


@pytest.mark.parametrize(("text", "expected"), [
    ("+43 676 9876543", "+436769876543"),
    ("0043 676 9876543", "+436769876543"),   # 00: the ITU international prefix
    ("436769876543", "+436769876543"),       # as switches deliver it, without the +
])
def test_without_a_country_international_numbers_are_fine(text, expected):
    assert normalise_number(text, None) == expected
