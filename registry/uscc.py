"""GB 32100 unified social credit codes (统一社会信用代码): validation and synthetic codes.

18 characters from ``0-9`` and the capitals without I, O, Z, S, V: a registration
authority code (1), an entity category (2), the 6-digit administrative division code
(3-8), the 9-character organization code of GB 11714 (9-17, its own check character
last) and the GB 32100 check character (18). The GB 32100 check is an error; a wrong
GB 11714 check inside is only a warning, since registries have issued such codes.
"""

from __future__ import annotations

from dataclasses import dataclass

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # GB 32100: no I, O, Z, S, V
VALUES = {char: value for value, char in enumerate(ALPHABET)}
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)  # GB 11714 over the organization code's 8 chars
LENGTH = 18


class UsccError(ValueError):
    """Not a valid code; the message says why in one line."""


@dataclass(frozen=True)
class Uscc:
    """A validated code, upper case, with a warning if its organization code is odd."""

    value: str
    warning: str | None = None

    @property
    def division(self) -> str:
        """The administrative division code of the registering authority (3-8)."""
        return self.value[2:8]


def check_character(first17: str) -> str:
    """The GB 32100 check character over 17 characters of :data:`ALPHABET`."""
    total = sum(VALUES[char] * weight for char, weight in zip(first17, WEIGHTS, strict=True))
    return ALPHABET[(31 - total % 31) % 31]


def org_check_character(body: str) -> str:
    """The GB 11714 check character over an organization code's first 8 characters
    (digits as themselves, letters A-Z as 10-35): 11 - sum mod 11, 10 -> X, 11 -> 0."""
    total = sum(
        (int(c) if c.isdigit() else ord(c) - ord("A") + 10) * w
        for c, w in zip(body, ORG_WEIGHTS, strict=True)
    )
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


def parse_uscc(raw: str) -> Uscc:
    """Validate ``raw`` (surrounding spaces ignored, lower case accepted) or raise
    :class:`UsccError` with the reason."""
    value = raw.strip().upper()
    if len(value) != LENGTH:
        raise UsccError(f"must have {LENGTH} characters, has {len(value)}")
    for position, char in enumerate(value, 1):
        if char not in VALUES:
            raise UsccError(
                f"character {char!r} is not allowed at position {position} "
                "(0-9 and A-Y without I, O, S, V, Z)"
            )
        if 3 <= position <= 8 and not char.isdigit():
            raise UsccError(
                f"character {char!r} is not allowed at position {position} "
                "(positions 3-8 are the administrative division code, digits only)"
            )
    expected = check_character(value[:17])
    if value[17] != expected:
        raise UsccError(f"check character is {value[17]}, should be {expected}")
    warning = None
    org_expected = org_check_character(value[8:16])
    if value[16] != org_expected:
        warning = (
            f"organization code {value[8:17]} has check character {value[16]}, "
            f"GB 11714 gives {org_expected}"
        )
    return Uscc(value, warning)


def is_valid(raw: str) -> bool:
    try:
        parse_uscc(raw)
    except UsccError:
        return False
    return True


def make_uscc(division: str, serial: int, authority: str = "9", category: str = "1") -> str:
    """A checksum-valid synthetic code for fixtures and tests: ``division`` (6 digits),
    an 8-digit organization code body from ``serial``, both check characters."""
    if not (len(division) == 6 and division.isdigit()):
        raise ValueError(f"division must be 6 digits, not {division!r}")
    if not 0 <= serial < 10**8:
        raise ValueError("serial must be from 0 to 99999999")
    body = f"{serial:08d}"
    first17 = f"{authority}{category}{division}{body}{org_check_character(body)}"
    return first17 + check_character(first17)
