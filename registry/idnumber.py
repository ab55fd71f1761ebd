"""GB 11643 citizen identity numbers (公民身份号码): validation and synthetic test numbers.

An 18-character number is a 6-digit region code, an 8-digit birth date, a 3-digit
sequence (odd for men) and a check character over the first 17 digits. python-stdnum's
``cn.ric`` rejects some real prefixes, so the check is done here.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Callable
from dataclasses import dataclass
from operator import mul

WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARS = "10X98765432"
_ZERO_WEIGHT = ord("0") * sum(WEIGHTS)  # what the ASCII codes add over the digits

# First two digits of GB/T 2260 province-level codes, plus the residence-permit
# prefixes 81/82/83 (Hong Kong, Macau, Taiwan residents).
KNOWN_PROVINCES = frozenset(
    {
        "11", "12", "13", "14", "15", "21", "22", "23", "31", "32", "33", "34", "35", "36",
        "37", "41", "42", "43", "44", "45", "46", "50", "51", "52", "53", "54", "61", "62",
        "63", "64", "65", "71", "81", "82", "83", "91",
    }
)  # fmt: skip


class IdNumberError(ValueError):
    """The number is not a valid 18-character identity number; the message says why."""


@dataclass(frozen=True)
class IdNumber:
    """A validated identity number, normalised to upper case."""

    value: str
    birth_date: dt.date
    warning: str | None = None

    @property
    def tail(self) -> str:
        """The last four characters: all that masked output may show."""
        return self.value[-4:]


def check_character(first17: str) -> str:
    """The GB 11643 check character for 17 leading (ASCII) digits."""
    if len(first17) != len(WEIGHTS):
        raise ValueError(f"expected 17 digits, got {len(first17)}")
    return CHECK_CHARS[(sum(map(mul, first17.encode("ascii"), WEIGHTS)) - _ZERO_WEIGHT) % 11]


def parse_id_number(raw: str, *, today: dt.date | None = None) -> IdNumber:
    """Validate ``raw`` and return it normalised, or raise :class:`IdNumberError`.

    An unknown province prefix is accepted with a warning (codes change over time);
    the residence-permit prefixes 81/82/83 are accepted without one.
    """
    value = raw.strip().upper()
    if len(value) != 18:
        raise IdNumberError(f"must have 18 characters, has {len(value)}")
    if not value[:17].isascii() or not value[:17].isdigit():
        raise IdNumberError("the first 17 characters must be digits")
    if value[17] not in "0123456789X":
        raise IdNumberError("the check character must be a digit or X")
    expected = check_character(value[:17])
    if value[17] != expected:
        raise IdNumberError(f"check character is {value[17]}, expected {expected}")
    try:
        birth = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise IdNumberError(f"birth date {value[6:14]} is not a calendar date") from None
    today = today or dt.date.today()
    if birth > today or birth.year < 1870:
        raise IdNumberError(f"birth date {birth.isoformat()} is not plausible")
    warning = None
    if value[:2] not in KNOWN_PROVINCES:
        warning = f"region prefix {value[:6]} is not a known province code"
    return IdNumber(value=value, birth_date=birth, warning=warning)


def plain_checker(today: dt.date | None = None) -> Callable[[str], bool]:
    """A fast test for bulk loads: is ``value`` a number :func:`parse_id_number` accepts
    as it is (already normalised), with no warning? False means "ask parse_id_number",
    which says why. Birth dates are remembered, as a district repeats them."""
    today = today or dt.date.today()
    births: dict[str, bool] = {}

    def plausible_birth(digits: str) -> bool:
        try:
            birth = dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
        except ValueError:
            return False
        return birth.year >= 1870 and birth <= today

    def check(value: str) -> bool:
        if len(value) != 18 or value[:2] not in KNOWN_PROVINCES:
            return False
        first17 = value[:17]
        if not (first17.isascii() and first17.isdigit()) or value[17] != check_character(first17):
            return False
        digits = value[6:14]
        known = births.get(digits)
        if known is None:
            known = births[digits] = plausible_birth(digits)
        return known

    return check


def mask(value: str) -> str:
    """Server-side mask that shows only the last four characters.

    The common ``420106********1234`` mask hides exactly the birth date and gives the
    number away to anyone who knows it, so everything but the tail is hidden.
    """
    return "*" * (len(value) - 4) + value[-4:]


def synthetic_id_number(rng: random.Random, region: str = "420106") -> str:
    """A checksum-valid, made-up identity number for test and sample data."""
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 65))
    first17 = f"{region}{birth:%Y%m%d}{rng.randrange(0, 1000):03d}"
    return first17 + check_character(first17)
