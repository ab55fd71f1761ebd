"""Canonical keys: parsed components and the registry's own columns compare by these.

Every key is None-safe (None, or text with nothing left, gives None) and idempotent
(``key(key(x)) == key(x)``). Each starts from :func:`clean`: half-width, simplified,
without whitespace or punctuation, numerals of numbered parts in Arabic. Text a key does
not recognise comes back cleaned rather than dropped, so unusual values still compare.
"""

from __future__ import annotations

import re

from registry.address.normalize import (
    chinese_number,
    collapse,
    numerals_to_arabic,
    to_halfwidth,
    to_simplified,
)

_NUMERAL = "〇零一二三四五六七八九十百千"
_ALL_NUMERALS = re.compile(f"第?([{_NUMERAL}]+)")


def clean(text: str) -> str:
    """Half-width, simplified, no separators, Arabic numerals: ``南望苑（二期）`` → ``南望苑2期``.

    A value that is nothing but a numeral is a number: ``一〇一`` → ``101``.
    """
    s = numerals_to_arabic(collapse(to_simplified(to_halfwidth(text))))
    whole = _ALL_NUMERALS.fullmatch(s)
    if whole:
        return chinese_number(whole.group(1)) or s
    return s


_HAN = r"\u3400-\u4dbf\u4e00-\u9fff"
_SERIES = re.compile(
    rf"(?<=[{_HAN}]{{2}})(?<![{_NUMERAL}])([{_NUMERAL}]{{1,3}})"
    r"(?=(?:路|街|大道|大街)(?:[0-9]+[巷弄里])?$)"
)


def _series(match: re.Match[str]) -> str:
    return chinese_number(match.group(1)) or match.group(1)


def road_key(road: str | None) -> str | None:
    """``武珞路三巷`` → ``武珞路3巷``; ``民主一路`` → ``民主1路``; ``二七路`` stays.

    A road's series number (numerals right before the final 路/街/大道/大街, after a name
    of two or more characters) is folded to Arabic so ``和平二路`` = ``和平2路``; numerals
    that begin a name (``二七路``, ``三角路``) are part of it and stay.
    """
    if road is None:
        return None
    s = clean(road)
    return _SERIES.sub(_series, s) or None


_HOUSE = re.compile(r"(.*?)([0-9]+)号?(?:(?:附|之|-)([0-9]+)号?)?")


def house_number_key(house_number: str | None) -> str | None:
    """``743号`` → ``743``; ``99号附1号`` / ``99-1号`` / ``99号之1`` → ``99附1``."""
    if house_number is None:
        return None
    s = clean(house_number)
    # trailing 号 stripped first, so that what the fallback returns keys to itself
    m = _HOUSE.fullmatch(s.rstrip("号"))
    if not m:
        return s.rstrip("号") or s or None
    prefix, number, sub = m.groups()
    return f"{prefix}{number}附{sub}" if sub else f"{prefix}{number}"


def compound_key(compound: str | None) -> str | None:
    """The compound name as written, cleaned: ``南望苑二期`` → ``南望苑2期``, ``梅苑小区``.

    Generic words are kept (``梅苑小区`` ≠ ``梅苑花园``: different places can share a stem);
    :func:`compound_variants` gives the forms to compare when one side omits ``小区``.
    """
    if compound is None:
        return None
    return clean(compound) or None


_GENERIC = re.compile(r"(.{2,}?)(?:住宅小区|小区|生活区)([0-9]+期)?")


def compound_variants(compound: str | None) -> tuple[str, ...]:
    """The compound key, then the key without a generic ``小区`` (kept before a phase).

    ``梅苑小区`` → ``('梅苑小区', '梅苑')``; ``关南小区2期`` → ``('关南小区2期', '关南2期')``;
    ``南望苑2期`` → ``('南望苑2期',)``. Two compounds match when their variants share one.
    A phase is never dropped: ``南望苑1期`` and ``南望苑2期`` are different compounds.
    """
    key = compound_key(compound)
    if key is None:
        return ()
    m = _GENERIC.fullmatch(key)
    if not m:
        return (key,)
    return (key, m.group(1) + (m.group(2) or ""))


_BUILDING = re.compile(
    r"([0-9]+[A-Z]?|[A-Z][0-9]*)(?:号楼|号栋|号幢|号座|#楼|栋楼|#|幢|座|栋|号|楼)?"
)


def building_key(building: str | None) -> str | None:
    """``1栋`` ``1号楼`` ``1幢`` ``一栋`` ``1#`` ``第一栋`` → ``1``; ``A座`` ``a栋`` → ``A``."""
    if building is None:
        return None
    s = clean(building)
    m = _BUILDING.fullmatch(s)
    return m.group(1) if m else s or None


_UNIT = re.compile(r"([0-9]+|[A-Z])(?:单元|门|单)?")


def unit_key(unit: str | None) -> str | None:
    """``1单元`` ``一单元`` ``1门`` ``1`` → ``1``."""
    if unit is None:
        return None
    s = clean(unit)
    m = _UNIT.fullmatch(s)
    return m.group(1) if m else s or None


_ROOM = re.compile(r"([A-Z]?[0-9]+[A-Z]?)(?:室|号|户|房)?")


def room_key(room: str | None) -> str | None:
    """``1502室`` ``1502`` ``1502号`` ``1502户`` ``一五〇二`` → ``1502``."""
    if room is None:
        return None
    s = clean(room)
    m = _ROOM.fullmatch(s)
    return m.group(1) if m else s or None
