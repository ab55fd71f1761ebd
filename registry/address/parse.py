"""Parse a free-text Chinese address into the components of a standard address and room.

Pure (no database, no I/O) and total: any string gives a :class:`ParsedAddress`. The text
is cut to :data:`MAX_CHARS`, normalised (:mod:`registry.address.normalize`; a province or
city other than the gazetteer's home goes to ``city``), then read left to right in the
order of the standard form, each part optional:

1. district, street, community — by the gazetteer (names and aliases, with codes), else
   by generic patterns (``…区``, ``…开发区``, ``…街道/镇/乡``, ``…社区/村``), names only;
   a known name of a lower level beats a generic one (``东湖风景区街道`` is a street);
2. road (``…路/街/大道/大街/巷/胡同/弄``, weakly ``…道/里``, with a numbered lane:
   ``武珞路3巷``), house number (``99号``, ``99号附1号``), compound (``…小区/花园/苑/…``
   with a phase ``2期``), building (``3栋``), unit (``2单元``), floor (``15楼``), room
   (``1502室``).

A junction before a numbered road is a place, not part of the road: ``街道口珞喻路129号``
reads ``街道口`` to ``rest`` and road ``珞喻路``. Where nothing fits, the text up to the
next number goes to ``rest`` and reading goes on.
The floor is the stated one, else derived from an all-digit room: ``1502`` → 15 (four
digits), ``302`` → 3 (three digits); none from two digits or five and more.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from registry.address.gazetteer import (
    COMPOUND_SUFFIXES,
    LEVELS,
    ROAD_SUFFIXES,
    AdminMatch,
    Gazetteer,
    Level,
)
from registry.address.keys import compound_key, road_key
from registry.address.model import ParsedAddress
from registry.address.normalize import normalize_with_city

#: inputs are cut to this many characters before parsing (a note says so)
MAX_CHARS = 200

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff"
_ROAD_RUN = re.compile(rf"[{_HAN}A-Z](?:[{_HAN}A-Z]|[0-9]{{1,3}}(?=路|街|大道|大街))*")
_ROAD_SUFFIX = re.compile(ROAD_SUFFIXES)
_WEAK_ROAD = frozenset({"道", "里"})
_LANE = re.compile(r"[0-9]+(?:巷|弄|里)")
_NAME_RUN = re.compile(rf"[{_HAN}A-Z]+")
_COMPOUND_SUFFIX = re.compile(COMPOUND_SUFFIXES)
_WEAK_COMPOUND = frozenset({"大厦", "广场", "中心", "社区", "城", "庭", "府", "园", "院", "居"})
_PHASE = re.compile(r"[0-9]+[期区]")
_NUMBERED_COMPOUND = re.compile(r"[0-9]+街坊")  # 青山's 8街坊
_HOUSE = re.compile(r"([0-9]+)号(?:附([0-9]+)号)?")
_BUILDING = re.compile(r"([0-9]+[A-Z]?|[A-Z][0-9]*)栋")
_BUILDING_HAO = re.compile(r"([0-9]+)号(?!附)")
_UNIT = re.compile(r"([0-9]+|[A-Z])单元")
_FLOOR = re.compile(r"([0-9]+)楼")
_ROOM = re.compile(r"([A-Z]?[0-9]+[A-Z]?)室")
_TOKEN_START = re.compile(r"(?<![0-9A-Z])[0-9A-Z]")
#: a junction named after a road (``街道口``, ``中南路口``): a place before a road
_JUNCTION = re.compile(rf"[{_HAN}]{{0,4}}?(?:路|街|道)口")
_NOT_A_ROAD_NAME = re.compile(rf"(?:{ROAD_SUFFIXES}|大)")
_EMPTY = Gazetteer()


def _digit_at(s: str, i: int) -> bool:
    """Whether ``s[i]`` is an ASCII digit (False past the end)."""
    return i < len(s) and "0" <= s[i] <= "9"


@dataclass
class _State:
    """The parts read so far, as keyword arguments of :class:`ParsedAddress`."""

    parts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    rest: list[str] = field(default_factory=list)


def _road(s: str, pos: int) -> tuple[str, int] | None:
    """A road name at ``pos``: the first candidate followed by a number, else one that
    ends the name run, else the first strong one not followed by a compound word."""
    run_match = _ROAD_RUN.match(s, pos)
    if not run_match:
        return None
    run = run_match.group()[:24]
    candidates: list[tuple[int, int, bool]] = []
    for m in _ROAD_SUFFIX.finditer(run):
        name = run[: m.end()]
        if m.start() == 0 or "小区" in name or "社区" in name:
            continue
        lane = _LANE.match(s, pos + m.end())
        end = lane.end() - pos if lane else m.end()
        candidates.append((m.end(), end, m.group() in _WEAK_ROAD))
    for _, end, _ in candidates:
        if _digit_at(s, pos + end):
            return s[pos : pos + end], pos + end
    for suffix_end, end, _ in candidates:
        if suffix_end == len(run) or end != suffix_end:
            return s[pos : pos + end], pos + end
    for suffix_end, end, weak in candidates:
        if not weak and not _COMPOUND_SUFFIX.match(run, suffix_end):
            return s[pos : pos + end], pos + end
    return None


def _compound(s: str, pos: int) -> tuple[str, int] | None:
    """A compound name at ``pos``, with its phase: the longest name ending in a compound
    word; a weak word (``广场``, ``大厦``, ``园``…) only when a number follows it; or a
    numbered 街坊 (``8街坊``)."""
    numbered = _NUMBERED_COMPOUND.match(s, pos)
    if numbered:
        return numbered.group(), numbered.end()
    run_match = _NAME_RUN.match(s, pos)
    if not run_match:
        return None
    run = run_match.group()[:20]
    best = 0
    for m in _COMPOUND_SUFFIX.finditer(run):
        if m.start() == 0:
            continue
        after = s[pos + m.end() : pos + m.end() + 1]
        if m.group() not in _WEAK_COMPOUND or (after.isascii() and after.isalnum()):
            best = m.end()
    phase = _PHASE.match(s, pos + (best or len(run)))
    if not best and not (phase and len(run) >= 2):
        return None
    end = phase.end() if phase else pos + best
    return s[pos:end], end


def _junction(s: str, pos: int) -> int | None:
    """The end of a junction at ``pos`` that a numbered road follows (``街道口珞喻路129号``),
    or None; the road must have a name of its own (``黄道口大道1号`` is one road)."""
    m = _JUNCTION.match(s, pos)
    if m is None or _NOT_A_ROAD_NAME.match(s, m.end()):
        return None
    road = _road(s, m.end())
    return m.end() if road and _digit_at(s, road[1]) else None


def _read_road(s: str, pos: int, state: _State) -> int | None:
    junction = _junction(s, pos)
    road = _road(s, junction or pos)
    if road is None:
        return None
    if junction:
        state.rest.append(s[pos:junction])
    state.parts["road"] = road_key(road[0])
    return road[1]


def _read_house(s: str, pos: int, state: _State) -> int | None:
    m = _HOUSE.match(s, pos)
    if m is None:
        return None
    state.parts["house_number"] = f"{m[1]}附{m[2]}" if m[2] else m[1]
    return m.end()


def _read_compound(s: str, pos: int, state: _State) -> int | None:
    compound = _compound(s, pos)
    if compound is None:
        return None
    state.parts["compound"] = compound_key(compound[0])
    return compound[1]


def _read_building(s: str, pos: int, state: _State) -> int | None:
    m = _BUILDING.match(s, pos)
    if m is None and state.parts.get("compound"):
        m = _BUILDING_HAO.match(s, pos)
        if m:
            state.notes.append(f"{m[0]} after a compound read as building {m[1]}")
    if m is None:
        return None
    state.parts["building"] = m[1]
    return m.end()


def _read_unit(s: str, pos: int, state: _State) -> int | None:
    m = _UNIT.match(s, pos)
    if m is None:
        return None
    state.parts["unit"] = m[1]
    return m.end()


def _read_floor(s: str, pos: int, state: _State) -> int | None:
    """A stated floor needs a room after it, or a building or unit before it."""
    m = _FLOOR.match(s, pos)
    if m is None:
        return None
    has_parent = bool(state.parts.get("building") or state.parts.get("unit"))
    if not _ROOM.match(s, m.end()) and (not has_parent or _digit_at(s, m.end())):
        return None
    state.parts["floor"] = int(m[1])
    return m.end()


def _read_room(s: str, pos: int, state: _State) -> int | None:
    m = _ROOM.match(s, pos)
    if m is None:
        return None
    state.parts["room"] = m[1]
    return m.end()


#: the parts after the admin levels, in the order of the standard form
_READERS: tuple[Callable[[str, int, _State], int | None], ...] = (
    _read_road, _read_house, _read_compound, _read_building, _read_unit, _read_floor,
    _read_room,
)  # fmt: skip


def _read(s: str, pos: int, stage: int, state: _State) -> tuple[int, int] | None:
    """Read the first part of stage ``stage`` or later at ``pos``: (next stage, end)."""
    for i in range(stage, len(_READERS)):
        end = _READERS[i](s, pos, state)
        if end is not None:
            return i + 1, end
    return None


def derive_floor(room: str | None) -> int | None:
    """The floor an all-digit room number implies: ``1502`` → 15, ``302`` → 3, else None."""
    if not room or not room.isascii() or not room.isdigit() or len(room) not in (3, 4):
        return None
    floor = int(room[:-2])
    return floor or None


def _admin(s: str, gazetteer: Gazetteer, state: _State) -> int:
    """Read district, street and community at the start; return where they end."""
    pos = 0
    parent: str | None = None
    found: dict[Level, AdminMatch] = {}
    for i, level in enumerate(LEVELS):
        m = gazetteer.match_prefix(s, level, pos=pos, within=parent)
        if m is None:
            continue
        if level == "community" and m.short and _names_a_place(s, pos, m.length, found):
            continue
        if not m.places and _known_below(s, pos, m.length, LEVELS[i + 1 :], gazetteer):
            continue
        found[level] = m
        pos += m.length
        state.parts[level] = m.name
        state.parts[f"{level}_code"] = m.code
        if m.short:
            state.notes.append(f"{level} {m.name} read from the short name {m.alias}")
        if m.outside:
            state.notes.append(f"{level} {m.name} is not under {parent}: no code")
        elif len(m.places) > 1:
            state.notes.append(f"{level} {m.name}: {len(m.places)} places, no code")
        parent = m.code or parent
    _fill_parents(found, state)
    return pos


def _known_below(
    s: str, pos: int, length: int, levels: tuple[Level, ...], gazetteer: Gazetteer
) -> bool:
    """Whether a known name of a lower level, longer than a generic match, starts at ``pos``:
    ``东湖风景区街道`` is a street of the gazetteer, not the zone ``东湖风景区``."""
    for level in levels:
        known = gazetteer.match_prefix(s, level, pos=pos, generic=False)
        if known is not None and known.length > length:
            return True
    return False


def _names_a_place(s: str, pos: int, length: int, found: dict[Level, AdminMatch]) -> bool:
    """Whether a community's short name at ``pos`` rather begins a numbered road or compound.

    ``光谷步行街1号`` is a road, not 光谷社区 + 步行街. After a street the short name is
    read as the community (``关山街道光谷…``), as the hierarchy expects one there; so is a
    name that is a junction (``街道口`` in ``街道口珞喻路129号``).
    """
    if "street" in found or _JUNCTION.fullmatch(s, pos, pos + length):
        return False
    road = _road(s, pos)
    if road and _digit_at(s, road[1]):
        return True
    compound = _compound(s, pos)
    return bool(compound and _digit_at(s, compound[1]))


def _fill_parents(found: dict[Level, AdminMatch], state: _State) -> None:
    """A resolved community or street names its street and district when the text did not."""
    parts = state.parts
    for level in ("community", "street"):
        match = found.get(level)
        place = match.place if match else None
        if place is None:
            continue
        for parent, name, code in (
            ("street", place.street_name, place.street_code),
            ("district", place.district_name, place.district_code),
        ):
            if name and parent not in found and not parts.get(parent):
                parts[parent], parts[f"{parent}_code"] = name, code
                state.notes.append(f"{parent} {name} from {level} {place.name}")


def parse(text: str, gazetteer: Gazetteer | None = None) -> ParsedAddress:
    """The standard components of a free-text address (see the module for the rules).

    >>> parse("梅苑小区3#2门1502户").room
    '1502'
    """
    state = _State()
    head = text
    if len(text) > MAX_CHARS:
        head = text[:MAX_CHARS]
        state.notes.append(f"input cut to its first {MAX_CHARS} characters")
    gazetteer = _EMPTY if gazetteer is None else gazetteer
    s, city = normalize_with_city(head, gazetteer.home)
    if city:
        state.notes.append(f"{city} is not in {''.join(gazetteer.home)}")
    pos = _admin(s, gazetteer, state)
    stage, rest = 0, state.rest
    while pos < len(s):
        read = _read(s, pos, stage, state)
        if read:
            stage, pos = read
            continue
        nxt = _TOKEN_START.search(s, pos + 1)
        end = nxt.start() if nxt else len(s)
        rest.append(s[pos:end])
        pos = end
    parts = state.parts
    room = parts.get("room")
    derived = derive_floor(room)
    if parts.get("floor") is None and derived is not None:
        parts["floor"] = derived
        state.notes.append(f"floor {derived} derived from room {room}")
    elif derived is not None and derived != parts.get("floor"):
        state.notes.append(f"floor {parts['floor']} stated; room {room} suggests {derived}")
    if rest:
        state.notes.append("unparsed: " + " ".join(rest))
    return ParsedAddress(
        text=text, normalized=s, city=city, rest=" ".join(rest), notes=tuple(state.notes), **parts
    )
