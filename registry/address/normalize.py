"""Normalise free-text Chinese addresses into one canonical spelling before parsing.

Pure functions (no database, no I/O beyond the traditional→simplified tables that
``opencc`` loads once). :func:`normalize` chains the steps, each also public:

1. :func:`to_halfwidth` — NFKC (full-width ``１５０２ ３－２ （）＃`` → ASCII), dash variants
   → ``-``, ``○`` → ``〇``, ASCII letters upper-cased (``a座`` = ``A座``), ``3一2`` → ``3-2``;
2. :func:`to_simplified` — traditional → simplified (``號 區 樓`` → ``号 区 楼``);
3. :func:`strip_noise` — bracketed asides, vague-location words, whitespace and punctuation;
4. :func:`numerals_to_arabic` — Chinese numerals of address parts → Arabic;
5. :func:`unify_markers` — one marker per part, dash patterns spelled out;
6. :func:`strip_admin_prefix` — country, province and city prefixes and duplicated levels.

The result reads ``district street community road house compound building unit floor room``
with the markers ``号 期 栋 单元 楼 室``, e.g. ``武昌区中南路99号3栋2单元1502室``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

# --- 1. width ---------------------------------------------------------------------------

_WIDTH_TABLE = str.maketrans(
    {c: "-" for c in "‐‑‒–—―−﹣─━"}
    | {"○": "〇", "◯": "〇"}
    | {chr(c): chr(c - 32) for c in range(ord("a"), ord("z") + 1)}
)
_HAN_ONE_AS_DASH = re.compile(r"(?<=[0-9])一(?=[0-9])")


def to_halfwidth(text: str) -> str:
    """Full-width and variant forms → ASCII: ``３－２－１５０２`` → ``3-2-1502``.

    NFKC folds full-width digits, letters and punctuation (``＃－（）`` → ``#-()``); dash
    variants (``—`` ``–`` ``－``) become ``-``, a Han ``一`` typed between digits is a dash,
    ``○`` is the numeral ``〇``, and ASCII letters are upper-cased so ``a座`` = ``A座``.
    """
    s = unicodedata.normalize("NFKC", text).translate(_WIDTH_TABLE)
    return _HAN_ONE_AS_DASH.sub("-", s) if "一" in s else s


# --- 2. script --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Simplifier:
    """opencc ``t2s``, with a character table for the inputs its phrases cannot change.

    ``convert`` costs ~40 µs per address; ``str.translate`` with the character table gives
    the same result in ~1 µs unless the text holds one of the few phrases whose conversion
    differs from character by character (``乾隆``, ``反覆``), listed in ``phrases``.
    ``trigger`` holds every character either could change; text without one is left as is.
    ``again`` maps the few results that ``t2s`` converts once more (``薴`` → ``苧`` → ``苎``),
    so that the conversion is idempotent.
    """

    convert: Callable[[str], str]
    table: dict[int, str] | None = None
    trigger: frozenset[str] | None = None
    phrases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    again: dict[int, str] = field(default_factory=dict)

    def __call__(self, text: str) -> str:
        if self.table is None or self.trigger is None:
            once = self.convert(text)
            return once if once == text else self.convert(once)
        if self.trigger.isdisjoint(text):
            return text
        for i, c in enumerate(text):
            for phrase in self.phrases.get(c, ()):
                if text.startswith(phrase, i):
                    return self.convert(text).translate(self.again)
        return text.translate(self.table).translate(self.again)


def _dictionary(name: str) -> dict[str, str]:
    """One opencc dictionary file: key → first value."""
    text = resources.files("opencc").joinpath("dictionary", name).read_text("utf-8")
    pairs = (line.split("\t", 1) for line in text.splitlines() if "\t" in line)
    return {key: values.split(" ")[0] for key, values in pairs}


@cache
def _simplifier() -> _Simplifier:
    """Built on first use: the opencc converter and its tables (fall back to opencc alone)."""
    from opencc import OpenCC

    convert = OpenCC("t2s").convert
    try:
        chars = {k: v for k, v in _dictionary("TSCharacters.txt").items() if k != v}
        phrases = _dictionary("TSPhrases.txt")
    except (OSError, ValueError):
        return _Simplifier(convert)
    table = str.maketrans(chars)
    divergent = [k for k, v in phrases.items() if k.translate(table) != v]
    by_first: dict[str, list[str]] = {}
    for phrase in divergent:
        by_first.setdefault(phrase[0], []).append(phrase)
    trigger = set(chars)
    for phrase in divergent:  # a character of each that converts differently in the phrase
        value = phrases[phrase]
        if len(value) != len(phrase):
            trigger.update(phrase)
        else:
            pairs = zip(phrase.translate(table), value, phrase, strict=True)
            trigger.update(k for t, v, k in pairs if t != v)
    again = str.maketrans({v: chars[v] for v in chars.values() if v in chars})
    by_char = {c: tuple(ps) for c, ps in by_first.items()}
    return _Simplifier(convert, table, frozenset(trigger), by_char, again)


def to_simplified(text: str) -> str:
    """Traditional → simplified Chinese as opencc ``t2s``: ``中南路99號`` → ``中南路99号``."""
    return text if text.isascii() else _simplifier()(text)


# --- 3. noise ---------------------------------------------------------------------------

_NUMERAL_CHARS = "〇零一二三四五六七八九十百千"
_DIGITISH = f"0-9{_NUMERAL_CHARS}"
_OPEN, _CLOSE = "([{【〔〖<（［｛", ")]}】〕〗>）］｝"
_ASIDE = re.compile(rf"[{re.escape(_OPEN)}]([^{re.escape(_OPEN + _CLOSE)}]{{0,40}})"
                    rf"[{re.escape(_CLOSE)}]")  # fmt: skip
_KEEP_ASIDE = re.compile(
    rf"[{_DIGITISH}]+(?:期|栋|幢|座|号楼|号|单元|门|楼|层|室|户)"
    r"|小区|花园|公寓|家园|新村|大厦|雅居|名都"
)
_NOISE_WORDS = re.compile("斜对面|对面|附近|旁边|隔壁|周边|周围|一带|门口|楼下|旁")
_SEP_BETWEEN_DIGITS = re.compile(rf"(?<=[{_DIGITISH}])(?:[^\w#]|_)+(?=[{_DIGITISH}])")
_SEP = re.compile(r"(?:[^\w#-]|_)+")
_LONE_DASH = re.compile(rf"-+(?![{_DIGITISH}])|(?<![{_DIGITISH}])-+")


def _aside(match: re.Match[str]) -> str:
    """A bracketed aside is dropped, unless it names an address part: ``(二期)`` stays."""
    inner = match.group(1)
    return inner if _KEEP_ASIDE.search(inner) else ""


def strip_noise(text: str) -> str:
    """Drop bracketed asides, vague-location words, whitespace and punctuation.

    ``梅苑小区(北门)旁边, 3栋`` → ``梅苑小区3栋``. An aside is kept (without its brackets)
    when it holds a numbered part or a compound (``(二期)``, ``【梅苑小区】``). Separators
    go as in :func:`collapse`: between two numbers they become one ``-`` (``3 2 1502`` →
    ``3-2-1502``), and ``#`` stays (it marks a building).
    """
    s = collapse(drop_asides(text))
    for _ in range(3):  # removing one may join another: 附附近近
        cleared = _NOISE_WORDS.sub("", s)
        if cleared == s:
            break
        s = cleared
    return s


def drop_asides(text: str) -> str:
    """Drop bracketed asides: ``梅苑小区(北门)`` → ``梅苑小区``, but ``(二期)`` → ``二期``."""
    s = text
    for _ in range(3):  # innermost first, for nested brackets
        if not any(c in s for c in _OPEN):
            break
        s = _ASIDE.sub(_aside, s)
    return s


def collapse(text: str) -> str:
    """Drop whitespace and punctuation but ``#``: ``3 2 1502`` → ``3-2-1502``.

    A run of separators between two digits or numerals becomes one ``-``; other dashes go;
    ``(`` ``)`` go but what they enclose stays (:func:`strip_noise` drops asides first).
    """
    s = _SEP.sub("", _SEP_BETWEEN_DIGITS.sub("-", text))
    return _LONE_DASH.sub("", s) if "-" in s else s


# --- 4. numerals ------------------------------------------------------------------------

_DIGIT_VALUE = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0}
_UNIT_VALUE = {"十": 10, "百": 100, "千": 1000}
_N = f"[{_NUMERAL_CHARS}]"
#: markers after which a number is an address part (longest first)
NUMBER_MARKERS = "号楼|号院|号|栋|幢|座|单元|门|楼|层|室|户|巷|期|弄|组|排|区|#|-"
_NUM_BEFORE_MARKER = re.compile(rf"第?({_N}+)(?={NUMBER_MARKERS})")
_NUM_AFTER_DASH = re.compile(rf"(?<=-)({_N}+)")
_NUM_AFTER_PART = re.compile(rf"(?<=[栋元门楼层幢座#])({_N}+)$")
_ORDINAL = re.compile(rf"第(?=[0-9]+(?:{NUMBER_MARKERS}))")


def chinese_number(text: str) -> str | None:
    """The Arabic digits of a Chinese numeral, or None when ``text`` is not one.

    Digit by digit when there is no 十/百/千 (``二〇一`` → ``201``, ``一五〇二`` → ``1502``);
    otherwise positional (``十五`` → ``15``, ``一千五百零二`` → ``1502``, ``一百零五`` → ``105``,
    colloquial ``一百一`` → ``110``).
    """
    if not text:
        return None
    if not any(c in _UNIT_VALUE for c in text):
        if all(c in _DIGIT_VALUE for c in text):
            return "".join(str(_DIGIT_VALUE[c]) for c in text)
        return None
    total, digit, last_unit, zero = 0, None, None, False
    for c in text:
        if c in _UNIT_VALUE:
            unit = _UNIT_VALUE[c]
            if last_unit is not None and unit >= last_unit:
                return None
            total += (1 if digit is None else digit) * unit
            digit, last_unit, zero = None, unit, False
        elif c in _DIGIT_VALUE and _DIGIT_VALUE[c] == 0:
            if digit is not None:
                return None
            zero = True
        elif c in _DIGIT_VALUE:
            if digit is not None:
                return None
            digit = _DIGIT_VALUE[c]
        else:
            return None
    if digit is not None:  # 一百一 is 110, 一千五 is 1500; 一百零一 is 101
        step = last_unit // 10 if last_unit and last_unit >= 100 and not zero else 1
        total += digit * step
    return str(total)


def _convert(match: re.Match[str]) -> str:
    number = chinese_number(match.group(1))
    return match.group(0) if number is None else number


def numerals_to_arabic(text: str) -> str:
    """Chinese numerals → Arabic where they number an address part, not inside names.

    A run of numerals is converted only when it is followed by a marker of a numbered
    part (:data:`NUMBER_MARKERS`: ``号 号楼 栋 幢 座 单元 门 楼 层 室 户 巷 期 弄 组 排 区 #``),
    is next to a dash (``三-二-一五〇二``), or ends the text after a building, unit or floor
    (``一单元一〇一``). A leading ``第`` goes with it. So ``三栋`` → ``3栋``, ``武珞路三巷`` →
    ``武珞路3巷``, ``二〇一室`` → ``201室``, while ``三角路 二七路 六渡桥 一环 四季美`` stay.
    """
    if not any(c in _DIGIT_VALUE or c in _UNIT_VALUE for c in text):
        return _ORDINAL.sub("", text) if "第" in text else text
    s = _NUM_BEFORE_MARKER.sub(_convert, text)
    if "-" in s:
        s = _NUM_AFTER_DASH.sub(_convert, s)
    s = _NUM_AFTER_PART.sub(_convert, s)
    return _ORDINAL.sub("", s) if "第" in s else s


# --- 5. markers -------------------------------------------------------------------------

_BUILDING = re.compile(r"(?<![A-Z0-9])([0-9]+|[A-Z][0-9]*)(?:号楼|(?:号|#)?[栋幢座]楼*|#楼?)")
_UNIT_GATE = re.compile(r"(?<=栋)([0-9]+)门|([0-9]+)门(?=[0-9])")
_FLOOR = re.compile(r"([0-9]+)层")
_DASH3 = re.compile(r"(?<![0-9-])([0-9]+)-([0-9]+)-([0-9]+)(?:室|号|户)?(?![0-9-])")
_BUILDING_DASH = re.compile(r"([0-9]+|[A-Z][0-9]*)栋([0-9]+)-([0-9]+)(?:室|号|户)?(?![0-9-])")
_DASH_UNIT = re.compile(r"(?<![0-9-])([0-9]+)-([0-9]+)单元")
_HOUSE_DASH = re.compile(r"(?<=[路街道巷弄里])([0-9]+)-([0-9]+)号")
_HOUSE_SUB = re.compile(r"([0-9]+)号(?:之|附)([0-9]+)号?")
_COMPOUND_DASH = re.compile(
    r"(?<=[期区苑园村寓庭府城居都])([0-9]+)-([0-9]+)(?:室|号|户)?(?![0-9-])"
)
_ROOM_TAIL = re.compile(r"(?<=[栋元楼])([0-9]+[A-Z]?)(?:号|户)?(?![0-9A-Z栋单楼层室期号户-])")
_ROOM_HU = re.compile(r"([0-9]+)户")
_STRAY_DASH = re.compile(r"-(?![0-9])|(?<![0-9])-")
_STRAY_HASH = re.compile(r"(?<![0-9A-Z])#")


@cache
def _fill(template: str) -> Callable[[re.Match[str]], str]:
    """A fast replacement: ``template.format`` of the groups (``re``'s ``\\1`` is slow)."""
    return lambda m: template.format(*m.groups())


def unify_markers(text: str) -> str:
    """One marker per part, dash patterns spelled out, in the ``3栋2单元1502室`` form.

    After a building number ``号楼 幢 座 # 栋`` → ``栋``; ``门`` after a building or before a
    room → ``单元``; ``层`` → ``楼``; ``户``, and ``号`` after a building/unit/floor → ``室``;
    digits ending the text after a unit or floor get ``室``. Dash patterns: ``3-2-1502`` →
    ``3栋2单元1502室``, ``3栋2-1502`` → ``3栋2单元1502室``, ``3-2单元`` → ``3栋2单元``,
    ``路99-1号`` / ``99号之1`` → ``99号附1号``, ``小区3-202`` → ``小区3栋202室``.
    """
    s = text
    if "-" in s:
        s = _STRAY_DASH.sub("", s)
    if "#" in s:
        s = _STRAY_HASH.sub("", s)
    s = _BUILDING.sub(_fill("{}栋"), s)
    if "门" in s:
        s = _UNIT_GATE.sub(lambda m: (m.group(1) or m.group(2)) + "单元", s)
    if "层" in s:
        s = _FLOOR.sub(_fill("{}楼"), s)
    if "-" in s:
        s = _DASH3.sub(_fill("{}栋{}单元{}室"), s)
        s = _BUILDING_DASH.sub(_fill("{}栋{}单元{}室"), s)
        s = _DASH_UNIT.sub(_fill("{}栋{}单元"), s)
        s = _HOUSE_DASH.sub(_fill("{}号附{}号"), s)
        s = _COMPOUND_DASH.sub(_fill("{}栋{}室"), s)
    if "之" in s or "附" in s:
        s = _HOUSE_SUB.sub(_fill("{}号附{}号"), s)
    if "户" in s:
        s = _ROOM_HU.sub(_fill("{}室"), s)
    return _ROOM_TAIL.sub(_fill("{}室"), s)


# --- 6. administrative prefix -----------------------------------------------------------

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff"
_PROVINCES = (
    "北京|天津|上海|重庆|河北|山西|辽宁|吉林|黑龙江|江苏|浙江|安徽|福建|江西|山东|河南|湖北|"
    "湖南|广东|海南|四川|贵州|云南|陕西|甘肃|青海|台湾|内蒙古|广西|西藏|宁夏|新疆|香港|澳门"
)
#: a district after a city: a name ending in 区/县 that is not a 小区, 东区, 校区, ...
DISTRICT_AHEAD = rf"[{_HAN}]{{1,6}}?(?<![小社园校片景厂营东西南北中])[区县]"
#: the cities whose short name (``武汉``) is stripped before a district
CITIES = ("武汉",)
_CITY_NAMES = "|".join(CITIES)
_COUNTRY = re.compile("^(?:中华人民共和国|中国)")
_PROVINCE = re.compile(
    rf"^(?:{_PROVINCES})(?:壮族自治区|回族自治区|维吾尔自治区|自治区|特别行政区|省|市)"
    rf"|^(?:{_PROVINCES})(?=[{_HAN}]{{2,3}}市|{_CITY_NAMES})"
)
_CITY = re.compile(
    rf"^(?:{_CITY_NAMES})市"
    rf"|^[{_HAN}]{{2,3}}市(?!场)(?={DISTRICT_AHEAD})"
    rf"|^(?:{_CITY_NAMES})(?={DISTRICT_AHEAD})"
)
_DUPLICATE = re.compile(rf"([{_HAN}]{{2,8}}?(?:省|市|区|县|街道|镇|乡))\1+")


def strip_admin_prefix(text: str) -> str:
    """Drop duplicated levels and the country, province and city: keep district onwards.

    ``湖北省武汉市洪山区…`` → ``洪山区…``; ``武汉市武汉市洪山区洪山区…`` → ``洪山区…``.
    A city is stripped by name when it is one of :data:`CITIES` (``武汉市``, or ``武汉``
    before a district), and any other ``XX市`` only when a district follows.
    """
    s = _DUPLICATE.sub(_fill("{}"), text)
    s = _COUNTRY.sub("", s)
    s = _PROVINCE.sub("", s)
    for _ in range(3):
        stripped = _CITY.sub("", s)
        if stripped == s:
            break
        s = stripped
    return s


# --- all --------------------------------------------------------------------------------


def normalize(text: str) -> str:
    """The canonical spelling of a free-text address (all steps above, in order).

    ``湖北省武汉市武昌區中南路９９號（北門）3-2-1502`` → ``武昌区中南路99号3栋2单元1502室``.
    """
    s = to_halfwidth(text)
    s = to_simplified(s)
    s = strip_noise(s)
    s = numerals_to_arabic(s)
    s = unify_markers(s)
    return strip_admin_prefix(s)
