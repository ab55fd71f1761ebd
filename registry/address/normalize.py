"""Normalise free-text Chinese addresses into one canonical spelling before parsing.

Pure functions (no database, no I/O beyond the traditional→simplified tables that
``opencc`` loads once). :func:`normalize` chains the steps, each also public:

1. :func:`to_halfwidth` — NFKC (full-width ``１５０２ ３－２ （）＃`` → ASCII), dash variants
   → ``-``, ``○`` → ``〇``, ASCII letters upper-cased (``a座`` = ``A座``), ``3一2`` → ``3-2``;
2. :func:`to_simplified` — traditional → simplified (``號 區 樓`` → ``号 区 楼``);
3. :func:`strip_noise` — bracketed asides, form labels (``现住址:``), landmarks
   (``光谷广场附近``), neighbourhood clauses (``对面是超市``), whitespace and punctuation;
4. :func:`numerals_to_arabic` — Chinese numerals of address parts → Arabic;
5. :func:`unify_markers` — one marker per part, dash patterns spelled out;
6. :func:`split_admin_prefix` — country, province and city prefixes and duplicated levels;
   the home ones (:data:`HOME`, 湖北省武汉市) go, another is returned
   (:func:`normalize_with_city`).

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
_HAN = r"\u3400-\u4dbf\u4e00-\u9fff"
#: form labels that may open the text: ``现住址:`` ``地址 `` ``家住``
LABELS = (
    "现居住地址", "现住地址", "现住址", "居住地址", "户籍地址", "家庭住址", "家庭地址", "联系地址",
    "详细地址", "通讯地址", "通信地址", "住址", "地址",
)  # fmt: skip
_LABEL = re.compile(rf"^(?:(?:{'|'.join(LABELS)})(?:是|为)?|(?:现住|家住|暂住|居住)在?)")
_NEAR = "斜对面|对面|附近|旁边|隔壁|旁"
#: a closing clause about the neighbourhood: ``对面是超市``, ``附近有学校``
_NEIGHBOUR_CLAUSE = re.compile(rf"(?<!^)(?:{_NEAR}|周边|周围)(?:就是|是|有|为).*$")
#: names of an area that a leading landmark keeps: ``洪山区`` in ``洪山区光谷广场附近…``
_AREA = rf"[{_HAN}]{{1,7}}?(?<![小社园校片景厂营东西南北中超])(?:省|市(?!场)|区|县)"
#: a leading landmark: ``光谷广场附近`` before the real address (which holds a number)
_LANDMARK = re.compile(  # the areas as an atomic group: no backtracking into them
    rf"^((?>(?:{_AREA})*))[{_HAN}A-Z]{{2,12}}?(?:{_NEAR})(?=[{_HAN}][^0-9]*[0-9])"
)
_SEP_BETWEEN_DIGITS = re.compile(rf"(?<=[{_DIGITISH}])(?:[^\w#]|_)+(?=[{_DIGITISH}])")
_SEP = re.compile(r"(?:[^\w#-]|_)+")
_LONE_DASH = re.compile(rf"-+(?![{_DIGITISH}])|(?<![{_DIGITISH}])-+")


def _aside(match: re.Match[str]) -> str:
    """A bracketed aside is dropped, unless it names an address part: ``(二期)`` stays."""
    inner = match.group(1)
    return inner if _KEEP_ASIDE.search(inner) else ""


def strip_noise(text: str) -> str:
    """Drop bracketed asides, labels, landmarks, vague-location words and punctuation.

    ``梅苑小区(北门)旁边, 3栋`` → ``梅苑小区3栋``. An aside is kept (without its brackets)
    when it holds a numbered part or a compound (``(二期)``, ``【梅苑小区】``). Separators
    go as in :func:`collapse`: between two numbers they become one ``-`` (``3 2 1502`` →
    ``3-2-1502``), and ``#`` stays (it marks a building). Then go a leading form label
    (:data:`LABELS`, ``家住``: ``现住址:中南路…`` → ``中南路…``), a closing clause about
    the neighbourhood (``…302室 对面是超市`` → ``…302室``), a leading landmark before an
    address with a number (``光谷广场附近鲁磨路41号`` → ``鲁磨路41号``; an area before
    it stays: ``洪山区光谷广场附近…`` → ``洪山区…``), and the remaining vague-location
    words (``光谷广场附近`` → ``光谷广场``).
    """
    s = collapse(drop_asides(text))
    s = _LABEL.sub("", s)
    if s.startswith(LABELS):  # 住址:地址:…
        s = _LABEL.sub("", s)
    s = _NEIGHBOUR_CLAUSE.sub("", s)
    s = _LANDMARK.sub(_fill("{}"), s)
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

#: the home province and city of the registry: prefixes naming them are dropped silently
HOME: tuple[str, str] = ("湖北省", "武汉市")
_MUNICIPALITIES = ("北京", "天津", "上海", "重庆")
_REGIONS = {
    "内蒙古": "内蒙古自治区", "广西": "广西壮族自治区", "西藏": "西藏自治区",
    "宁夏": "宁夏回族自治区", "新疆": "新疆维吾尔自治区", "香港": "香港特别行政区",
    "澳门": "澳门特别行政区",
}  # fmt: skip
_PROVINCES = (
    "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏", "浙江", "安徽", "福建", "江西", "山东",
    "河南", "湖北", "湖南", "广东", "海南", "四川", "贵州", "云南", "陕西", "甘肃", "青海", "台湾",
)  # fmt: skip
#: provinces by short name, with their full names
PROVINCES: dict[str, str] = (
    {m: m + "市" for m in _MUNICIPALITIES} | {p: p + "省" for p in _PROVINCES} | _REGIONS
)
_PROVINCE_NAMES = "|".join(PROVINCES)
_PROVINCE_SUFFIX = "壮族自治区|回族自治区|维吾尔自治区|自治区|特别行政区|省|市"
_SHORT = re.compile(rf"(.{{2,}}?)(?:{_PROVINCE_SUFFIX}|地区|自治州)")
#: a district-level functional zone: ``东湖新技术开发区``, ``东湖风景区``, ``XX高新区``
ZONE = (
    rf"(?:(?![区县市])[{_HAN}]){{2,10}}?"
    "(?:经济技术开发区|高新技术开发区|经济开发区|技术开发区|开发区|高新区|新区|风景名胜区|风景区)"
)
#: a district after a city: a zone, or a name ending in 区/县 that is not a 小区, 东区, 校区…
DISTRICT_AHEAD = rf"(?:{ZONE}|[{_HAN}]{{1,6}}?(?<![小社园校片景厂营东西南北中])[区县])"
#: what may follow a city's short name (``武汉``) for it to be dropped: an area or a
#: numbered road, but not a word that makes the name another (``武汉大学``, ``武汉大道``)
_AFTER_CITY = (
    rf"(?!大学|大道|大街|路|街)(?={DISTRICT_AHEAD}|[{_HAN}]{{2,8}}?(?:街道|镇|乡|社区|村)"
    rf"|[{_HAN}]{{2,8}}?(?:大道|大街|路|街|巷)[0-9])"
)
_CITY_WORD = rf"[{_HAN}]{{2,4}}(?<![超门夜股都])市(?!场)"
_COUNTRY = re.compile("^(?:中华人民共和国|中国)")
_DUPLICATE = re.compile(rf"([{_HAN}]{{2,8}}?(?:省|市|区|县|街道|镇|乡))\1+")
#: another city after a province, or before a district
_CITY_AFTER_PROVINCE = re.compile(rf"{_CITY_WORD}|[{_HAN}]{{2,10}}?自治州|[{_HAN}]{{2,4}}地区")
_CITY = re.compile(rf"[{_HAN}]{{2,3}}(?<![超门夜股都])市(?!场)(?={DISTRICT_AHEAD})")


def short_name(name: str) -> str:
    """A province or city without its ending: ``湖北省`` → ``湖北``, ``武汉市`` → ``武汉``."""
    m = _SHORT.fullmatch(name)
    return m.group(1) if m else name


@dataclass(frozen=True)
class _Prefixes:
    """The prefix patterns for one home province and city."""

    province_short: str
    province: re.Pattern[str]
    home_city: re.Pattern[str]


@cache
def _prefixes(home: tuple[str, str]) -> _Prefixes:
    """A province (full, or short before a city, the home city or a district) and the home
    city (full, or short before an area or a numbered road)."""
    province, city = home
    city_short = re.escape(short_name(city))
    province_re = re.compile(
        rf"({_PROVINCE_NAMES})(?:({_PROVINCE_SUFFIX})"
        rf"|(?=[{_HAN}]{{2,3}}市|{city_short}|{DISTRICT_AHEAD})(?!路|街|大道|大街|巷|大学))"
    )
    city_re = re.compile(rf"{re.escape(city)}|{city_short}{_AFTER_CITY}")
    return _Prefixes(short_name(province), province_re, city_re)


def split_admin_prefix(text: str, home: tuple[str, str] = HOME) -> tuple[str, str | None]:
    """The text from the district on, and the other province or city its prefix names.

    Duplicated levels and the country go; the home province and city (:data:`HOME`) go
    silently, also without ``省``/``市`` (``湖北武汉珞喻路…``, ``武汉洪山区…``: the short
    city only before an area or a numbered road, so ``武汉大学``, ``武汉大道`` stay).
    Another province or city is returned, most precise first: ``湖北省黄石市雄楚大道…`` →
    (``雄楚大道…``, ``黄石市``), ``北京市海淀区…`` → (``海淀区…``, ``北京市``). A city is
    read after a province, or before a district (``宜昌市西陵区``); else it stays.
    """
    rules = _prefixes(home)
    s = _COUNTRY.sub("", _DUPLICATE.sub(_fill("{}"), text))
    other: str | None = None
    after_province = False
    m = rules.province.match(s)
    if m:
        short, suffix = m.groups()
        if short != rules.province_short:
            other = short + suffix if suffix else PROVINCES[short]
        s, after_province = s[m.end() :], True
    for _ in range(3):
        m = rules.home_city.match(s)
        if m is None:
            m = (_CITY_AFTER_PROVINCE if after_province else _CITY).match(s)
            if m is None:
                break
            other = m.group()
        s, after_province = s[m.end() :], False
    return s, other


def strip_admin_prefix(text: str, home: tuple[str, str] = HOME) -> str:
    """Drop duplicated levels and the country, province and city: keep district onwards.

    ``湖北省武汉市洪山区…`` → ``洪山区…``; ``武汉市武汉市洪山区洪山区…`` → ``洪山区…``;
    ``宜昌市西陵区`` → ``西陵区`` (:func:`split_admin_prefix` tells the city too).
    """
    return split_admin_prefix(text, home)[0]


# --- all --------------------------------------------------------------------------------


def normalize_with_city(text: str, home: tuple[str, str] = HOME) -> tuple[str, str | None]:
    """:func:`normalize`, and the other province or city it dropped (None for the home)."""
    s = to_halfwidth(text)
    s = to_simplified(s)
    s = strip_noise(s)
    s = numerals_to_arabic(s)
    s = unify_markers(s)
    return split_admin_prefix(s, home)


def normalize(text: str, home: tuple[str, str] = HOME) -> str:
    """The canonical spelling of a free-text address (all steps above, in order).

    ``湖北省武汉市武昌區中南路９９號（北門）3-2-1502`` → ``武昌区中南路99号3栋2单元1502室``.
    """
    return normalize_with_city(text, home)[0]
