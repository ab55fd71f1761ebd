"""Names of districts, streets and communities, with their aliases, for the address parser.

Built from the registry's community rows. :meth:`Gazetteer.match_prefix` reads the admin
name that a (normalised) text starts with: first the known names and aliases, longest
first, by dictionary look-up per prefix length (no loop over the names); then, if none
matches, generic patterns (``…区``, ``…街道/镇/乡``, ``…社区/村``), which give a name
without a code. An empty gazetteer still reads names by the generic patterns.

Aliases: ``洪山区`` / ``洪山``; ``中南路街道`` / ``中南路街`` / ``中南路街道办事处``;
``梅苑社区`` / ``梅苑社区居委会`` / ``梅苑社区居民委员会`` / ``梅苑居委会`` / ``梅苑居委`` /
``梅苑``; ``XX村`` / ``XX村委会`` / ``XX村委`` / ``XX村民委员会`` / ``XX``. A *short*
alias (``洪山``, ``梅苑``, ``中南路街``) is accepted only when what follows cannot continue
it into a road, compound or admin name: ``洪山路`` is a road, ``梅苑小区`` a compound,
``中南二路`` a road. Generic district names include functional zones (``东湖新技术开发区``,
``…高新区``, ``东湖风景区``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from registry.address.normalize import (
    DISTRICT_AHEAD,
    HOME,
    collapse,
    drop_asides,
    numerals_to_arabic,
    to_halfwidth,
    to_simplified,
)

Level = Literal["district", "street", "community"]
LEVELS: tuple[Level, ...] = ("district", "street", "community")

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff"
ROAD_SUFFIXES = "大道|大街|胡同|路|街|巷|弄|道|里"
COMPOUND_SUFFIXES = (
    "住宅小区|小区|花园|公寓|家园|新村|山庄|别墅|宿舍|雅居|名居|名都|嘉园|佳园|华庭|华府|公馆|"
    "新城|花城|大厦|广场|中心|社区|苑|城|庭|府|园|院|居"
)
_LONG_WORDS = "|".join(w for w in COMPOUND_SUFFIXES.split("|") if len(w) > 1)
_ONE_CHAR_WORDS = "".join(w for w in COMPOUND_SUFFIXES.split("|") if len(w) == 1)
#: what may not follow a short alias: it would make the alias part of a longer name
#: (``洪山路``, ``梅苑小区``, ``中南二路``, ``梅苑1期``); ``梅苑`` + ``东苑`` is let through
_CONTINUES = re.compile(
    rf"[{_HAN}]?(?:{ROAD_SUFFIXES}|{_LONG_WORDS}|区|县|镇|乡|村)"
    rf"|[{_ONE_CHAR_WORDS}号期栋室楼0-9A-Z#-]|单元"
)
#: what may not follow a generic 镇/乡/村/社区 name: ``水乡小区``, ``古镇路`` (but a
#: junction may: ``珞南街道街道口``)
_CONTINUES_NAME = re.compile(rf"(?!街道口)(?:{ROAD_SUFFIXES}|{COMPOUND_SUFFIXES})")
#: the endings of a full (unguarded) name at each level
_FULL: dict[Level, re.Pattern[str]] = {
    "district": re.compile("(?:区|县|市)$"),
    "street": re.compile("(?:街道|镇|乡|办事处|管理处)$"),
    "community": re.compile("(?:社区|村|居委会|居委|委员会|村委)$"),
}
_COMMUNITY_SUFFIX = re.compile(
    "(社区居民委员会|社区居委会|社区委员会|社区居委|居民委员会|居委会|居委|村民委员会|村委会|村委"
    "|社区|村)$"
)
_GENERIC: dict[Level, re.Pattern[str]] = {
    "district": re.compile(rf"{DISTRICT_AHEAD}(?:人民政府)?"),
    "street": re.compile(rf"[{_HAN}]{{2,8}}?(?:街道办事处|街道办|街道(?!口)|镇|乡)(?:人民政府)?"),
    "community": re.compile(
        rf"[{_HAN}]{{2,8}}?(?:社区居民委员会|社区居委会|社区居委|社区|居民委员会|居委会|居委"
        r"|村民委员会|村委会|村委|村)"
    ),
}


def name_form(name: str) -> str:
    """A name as it appears in normalised text: ``三眼桥社區（东）`` → ``三眼桥社区``."""
    return numerals_to_arabic(collapse(drop_asides(to_simplified(to_halfwidth(name)))))


@dataclass(frozen=True, slots=True)
class Place:
    """One district, street or community, with its parents' codes and names."""

    level: Level
    name: str
    code: str | None
    street_code: str | None = None
    street_name: str | None = None
    district_code: str | None = None
    district_name: str | None = None


@dataclass(frozen=True, slots=True)
class AdminMatch:
    """The admin name a text starts with: ``length`` characters, read as ``name``.

    ``places`` are the gazetteer's places with that alias (empty for a generic match),
    narrowed to those ``within`` the given parent when any is; ``outside`` is true when
    none was and all are kept. ``code`` is set only when exactly one place is left.
    """

    level: Level
    name: str
    length: int
    alias: str
    places: tuple[Place, ...] = ()
    outside: bool = False
    short: bool = False

    @property
    def place(self) -> Place | None:
        return self.places[0] if len(self.places) == 1 and not self.outside else None

    @property
    def code(self) -> str | None:
        return self.place.code if self.place else None


def _generic_name(level: Level, text: str) -> str:
    """The canonical spelling of a generically matched name (no 办事处, 居委会, 人民政府)."""
    name = text.removesuffix("人民政府")
    if level == "street":
        return name.removesuffix("办事处").removesuffix("办")
    if level == "community":
        return _community_parts(name)[2]
    return name


def _community_parts(name: str) -> tuple[str, str | None, str]:
    """(base, kind, canonical): ``梅苑社区居委会`` → (``梅苑``, ``社区``, ``梅苑社区``)."""
    m = _COMMUNITY_SUFFIX.search(name)
    if not m or m.start() == 0:
        return name, None, name
    base = name[: m.start()]
    kind = "村" if m.group(1).startswith("村") else "社区"
    if kind == "村" and base.endswith("村") and len(base) > 1:  # 解放村村委会
        base = base[:-1]
    return base, kind, base + kind


def _aliases(place: Place, row_name: str) -> Iterable[tuple[str, bool]]:
    """The aliases of a place, each with whether it is short (guarded; see the module).

    A name without its level's usual ending (a street called ``百步亭花园``) is short too,
    and one-character aliases are never made.
    """
    name = name_form(row_name)
    yield name, not _FULL[place.level].search(name)
    if place.level == "district":
        base = name[:-1] if name[-1:] in ("区", "县", "市") else ""
        if len(base) >= 2:
            yield base, True
    elif place.level == "street":
        for suffix in ("办事处", "办"):
            yield name + suffix, False
        if name.endswith("街道") and not name.endswith("街街道"):
            yield name[:-1], True
            yield name[:-1] + "办事处", False
    else:
        base, kind, canonical = _community_parts(name)
        if kind is None:  # a table name shortened to its stem, like ``XX`` for XX居委会
            base, kind, canonical = name, "社区", name + "社区"
        yield canonical, False
        if kind == "社区":
            forms = ("社区居委会", "社区居民委员会", "社区居委", "居委会", "居民委员会", "居委")
        else:
            forms = ("村委会", "村民委员会", "村委")
        for suffix in forms:
            yield base + suffix, False
        yield base, True


class Gazetteer:
    """Districts, streets and communities by name and alias, from community rows.

    ``home`` is the (province, city) the communities are in, ``("湖北省", "武汉市")`` by
    default: the parser drops prefixes naming it, also short (``湖北武汉``, ``武汉``),
    and records any other province or city (``ParsedAddress.city``).
    """

    def __init__(
        self, rows: Iterable[Sequence[str | None]] = (), home: tuple[str, str] = HOME
    ) -> None:
        """``rows``: (community code, community name, street code, street name, district
        code, district name), as in the registry's community table; missing parts may be
        None or empty."""
        self.home = home
        self._index: dict[Level, dict[str, list[tuple[Place, bool]]]] = {lv: {} for lv in LEVELS}
        self._seen: set[tuple[Level, str | None, str]] = set()
        for row in rows:
            self._add_row(tuple(row) + (None,) * (6 - len(row)))
        self._communities = sum(1 for level, _, _ in self._seen if level == "community")
        self._lengths: dict[Level, tuple[int, ...]] = {
            lv: tuple(sorted({len(a) for a in self._index[lv]}, reverse=True)) for lv in LEVELS
        }

    def _add_row(self, row: Sequence[str | None]) -> None:
        c_code, c_name, s_code, s_name, d_code, d_name = (v or None for v in row[:6])
        if d_name:
            self._add(Place("district", d_name, d_code), d_name)
        if s_name:
            self._add(Place("street", s_name, s_code, None, None, d_code, d_name), s_name)
        if c_name:
            community = Place("community", c_name, c_code, s_code, s_name, d_code, d_name)
            self._add(community, c_name)

    def _add(self, place: Place, row_name: str) -> None:
        key = (place.level, place.code, place.name)
        if key in self._seen:
            return
        self._seen.add(key)
        index = self._index[place.level]
        for alias, short in _aliases(place, row_name):
            if len(alias) < 2:
                continue
            entries = index.setdefault(alias, [])
            if all(p.code != place.code or p.name != place.name for p, _ in entries):
                entries.append((place, short))

    def __len__(self) -> int:
        """The number of communities."""
        return self._communities

    def lookup(self, name: str, level: Level) -> tuple[Place, ...]:
        """The places of ``level`` called ``name`` (any alias, short ones included)."""
        return tuple(p for p, _ in self._index[level].get(name_form(name), ()))

    def match_prefix(
        self,
        text: str,
        level: Level,
        *,
        pos: int = 0,
        within: str | None = None,
        generic: bool = True,
    ) -> AdminMatch | None:
        """The ``level`` name that ``text[pos:]`` starts with, or None.

        ``text`` is normalised (:func:`registry.address.normalize.normalize`). ``within``
        is the code of a parent (district or street) already read: places under it are
        preferred, so a name shared by two streets resolves when its district is known.
        ``generic=False`` reads only the gazetteer's own names, not the generic patterns.
        """
        index = self._index[level]
        for length in self._lengths[level]:
            alias = text[pos : pos + length]
            if len(alias) < length:
                continue
            entries = index.get(alias)
            if not entries:
                continue
            short = all(s for _, s in entries)
            if short and _CONTINUES.match(text, pos + length):
                continue
            return self._resolve(level, alias, entries, within, short)
        if not generic:
            return None
        m = _GENERIC[level].match(text, pos)
        if not m or (level != "district" and _CONTINUES_NAME.match(text, m.end())):
            return None
        if level == "community" and m.group().endswith("新村"):
            return None
        return AdminMatch(level, _generic_name(level, m.group()), m.end() - pos, m.group())

    @staticmethod
    def _resolve(
        level: Level,
        alias: str,
        entries: list[tuple[Place, bool]],
        within: str | None,
        short: bool,
    ) -> AdminMatch:
        places = tuple(p for p, _ in entries)
        inside = tuple(p for p in places if within in (p.district_code, p.street_code))
        outside = within is not None and not inside
        chosen = inside or places
        names = {p.name for p in chosen}
        name = chosen[0].name if len(names) == 1 else _generic_name(level, alias)
        return AdminMatch(level, name, len(alias), alias, chosen, outside, short)
