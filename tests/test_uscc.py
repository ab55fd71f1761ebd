"""GB 32100 unified social credit codes: registry/uscc.py, with python-stdnum as an oracle."""

from __future__ import annotations

import random

import pytest
from stdnum.cn import uscc as stdnum_uscc

from registry.uscc import (
    ALPHABET,
    UsccError,
    check_character,
    is_valid,
    make_uscc,
    org_check_character,
    parse_uscc,
)

# codes published as valid examples (python-stdnum's doctests and Chinese references)
PUBLISHED = ("91350100M000100Y43", "91110000600037341L")


@pytest.mark.parametrize("code", PUBLISHED)
def test_published_codes_are_valid(code: str) -> None:
    parsed = parse_uscc(code)
    assert parsed.value == code
    assert parsed.warning is None  # their organization codes pass GB 11714 too
    assert stdnum_uscc.is_valid(code)


def test_check_character_by_hand() -> None:
    # 91350100M000100Y4: values 9 1 3 5 0 1 0 0 M=21 0 0 0 1 0 0 Y=30 4, times the
    # weights 1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28:
    # 9+3+27+135+0+26+0+0+420+0+0+0+8+0+0+900+112 = 1640; 1640 mod 31 = 28; 31-28 = 3
    assert check_character("91350100M000100Y4") == "3"
    # GB 11714 over M000100Y: M=22, Y=34; 22*3 + 1*5 + 34*2 = 139; 139 mod 11 = 7; 11-7 = 4
    assert org_check_character("M000100Y") == "4"


def test_lower_case_and_spaces_are_normalised() -> None:
    assert parse_uscc(" 91350100m000100y43 ").value == "91350100M000100Y43"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("91350100M000100Y4", "must have 18 characters, has 17"),
        ("91350100M000100Y433", "must have 18 characters, has 19"),
        ("91350100M0001O0Y43", "character 'O' is not allowed at position 14"),
        ("91350100M000100I43", "character 'I' is not allowed at position 16"),
        ("9135A100M000100Y43", "character 'A' is not allowed at position 5"),
        ("91350100M000100Y44", "check character is 4, should be 3"),
        ("91350100M000100Y4S", "character 'S' is not allowed at position 18"),
    ],
)
def test_invalid_codes_say_why(code: str, reason: str) -> None:
    with pytest.raises(UsccError) as caught:
        parse_uscc(code)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)
    assert not is_valid(code)


def test_wrong_organization_check_is_a_warning() -> None:
    # organization code 600037342 instead of ...341: GB 11714 gives 1 (see
    # test_check_character_by_hand for the method); the GB 32100 check is recomputed
    first17 = "91110000600037342"
    code = first17 + check_character(first17)
    parsed = parse_uscc(code)
    assert parsed.warning is not None and "GB 11714 gives 1" in parsed.warning
    assert stdnum_uscc.is_valid(code)  # stdnum checks only GB 32100


def test_agrees_with_stdnum_on_random_codes() -> None:
    # random 17-character bodies with digits at 1-8 (stdnum insists on those) and
    # random check characters: both must accept exactly the same ones
    rng = random.Random(32100)
    agreed = valid = 0
    for _ in range(3000):
        head = "".join(rng.choice("0123456789") for _ in range(8))
        tail = "".join(rng.choice(ALPHABET) for _ in range(10))
        code = head + tail
        if rng.random() < 0.5:
            code = code[:17] + check_character(code[:17])
        ours = is_valid(code)
        assert ours == stdnum_uscc.is_valid(code), code
        agreed += 1
        valid += ours
    assert agreed == 3000 and 1000 < valid < 2000  # about half were given their check


def test_synthetic_codes_are_valid() -> None:
    codes = {make_uscc("420111", n) for n in range(500)}
    assert len(codes) == 500
    for code in codes:
        assert parse_uscc(code).warning is None
        assert stdnum_uscc.is_valid(code)
        assert parse_uscc(code).division == "420111"
    with pytest.raises(ValueError):
        make_uscc("42011", 1)
