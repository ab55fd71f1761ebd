"""The free-text address normaliser, keys, gazetteer and parser (pure: no database)."""

from __future__ import annotations

import csv
import time
from importlib import resources

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from registry.address.gazetteer import Gazetteer
from registry.address.keys import (
    building_key,
    compound_key,
    compound_variants,
    house_number_key,
    road_key,
    room_key,
    unit_key,
)
from registry.address.model import ParsedAddress
from registry.address.normalize import (
    chinese_number,
    normalize,
    normalize_with_city,
    numerals_to_arabic,
    short_name,
    split_admin_prefix,
    strip_admin_prefix,
    strip_noise,
    to_halfwidth,
    to_simplified,
    unify_markers,
)
from registry.address.parse import MAX_CHARS, derive_floor, parse

# --- normalize ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("１５０２", "1502"),
        ("３－２－１５０２", "3-2-1502"),
        ("＃（北门）", "#(北门)"),
        ("3—2–1502", "3-2-1502"),
        ("ａ座", "A座"),
        ("3一2一1502", "3-2-1502"),
        ("二○一", "二〇一"),
    ],
)
def test_to_halfwidth(text: str, expected: str) -> None:
    assert to_halfwidth(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("中南路99號", "中南路99号"),
        ("武昌區中南路街道梅苑社區3棟2單元", "武昌区中南路街道梅苑社区3栋2单元"),
        ("梅苑小区3栋", "梅苑小区3栋"),
        ("", ""),
    ],
)
def test_to_simplified(text: str, expected: str) -> None:
    assert to_simplified(text) == expected


def test_to_simplified_agrees_with_opencc_on_phrases() -> None:
    from opencc import OpenCC

    convert = OpenCC("t2s").convert
    for text in ("乾隆年間", "反覆", "一目瞭然", "武漢市乾坤大廈", "沈默的街道", "於是"):
        assert to_simplified(text) == convert(text)


@given(st.text(alphabet="號區樓棟單元乾隆覆反沈默於瞭解中南路街道一二三 -", max_size=20))
def test_to_simplified_is_opencc(text: str) -> None:
    from opencc import OpenCC

    assert to_simplified(text) == OpenCC("t2s").convert(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("梅苑小区(北门)3栋", "梅苑小区3栋"),
        ("梅苑小区（东区）3栋", "梅苑小区3栋"),
        ("【备注】梅苑小区 3栋", "梅苑小区3栋"),
        ("中南路99号附近", "中南路99号"),
        ("中南路99号旁边, 梅苑小区", "中南路99号梅苑小区"),
        ("光谷广场对面", "光谷广场"),
        ("梅苑小区(二期)3栋", "梅苑小区二期3栋"),
        ("3 2 1502", "3-2-1502"),
        ("3, 2, 1502", "3-2-1502"),
        ("，。！？、；", ""),
        # form labels at the start
        ("现住址:雄楚大道607号", "雄楚大道607号"),
        ("住址：民族大道101号", "民族大道101号"),
        ("地址 雄楚大道南望苑1栋", "雄楚大道南望苑1栋"),
        ("户籍地址: 珞喻路1号", "珞喻路1号"),
        ("现居住地址 珞喻路1号", "珞喻路1号"),
        ("住址:地址:珞喻路1号", "珞喻路1号"),
        ("家住在鲁磨路41号", "鲁磨路41号"),
        ("暂住雄楚大道621号", "雄楚大道621号"),
        ("珞喻路1号地址", "珞喻路1号地址"),  # only at the start
        # a closing clause about the neighbourhood
        ("鲁巷花园1栋1单元302室 对面是超市", "鲁巷花园1栋1单元302室"),
        ("珞喻路1号旁边是学校", "珞喻路1号"),
        ("珞喻路1号附近有个公园", "珞喻路1号"),
        # a leading landmark before the address
        ("光谷广场附近鲁磨路41号华光小区", "鲁磨路41号华光小区"),
        ("光谷书城旁边珞喻路705号", "珞喻路705号"),
        ("光谷书城旁珞喻路705号", "珞喻路705号"),
        ("光谷广场对面雄楚大道南望苑1栋", "雄楚大道南望苑1栋"),
        ("洪山区光谷广场附近鲁磨路41号", "洪山区鲁磨路41号"),  # the area stays
        ("武汉市光谷广场附近鲁磨路41号", "武汉市鲁磨路41号"),
        ("梅苑小区附近3栋", "梅苑小区3栋"),  # a number follows: not a landmark
        ("光谷广场附近鲁磨路", "光谷广场鲁磨路"),  # no number: nothing to place
    ],
)
def test_strip_noise(text: str, expected: str) -> None:
    assert strip_noise(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("三栋", "3栋"),
        ("十五楼", "15楼"),
        ("二十一号", "21号"),
        ("一千五百零二室", "1502室"),
        ("二〇一室", "201室"),
        ("一〇二室", "102室"),
        ("武珞路三巷", "武珞路3巷"),
        ("南望苑二期", "南望苑2期"),
        ("十号", "10号"),
        ("十一栋", "11栋"),
        ("一百零五室", "105室"),
        ("第三单元", "3单元"),
        ("第3栋", "3栋"),
        ("三-二-一五〇二", "3-2-1502"),
        ("1栋1单元一〇一", "1栋1单元101"),
        # numerals inside names stay
        ("三角路", "三角路"),
        ("万松园", "万松园"),
        ("一环", "一环"),
        ("二七路", "二七路"),
        ("四季美", "四季美"),
        ("六渡桥", "六渡桥"),
        ("民主一路", "民主一路"),
        ("华中科技大学西十二舍", "华中科技大学西十二舍"),
    ],
)
def test_numerals_to_arabic(text: str, expected: str) -> None:
    assert numerals_to_arabic(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("十", "10"),
        ("十一", "11"),
        ("十五", "15"),
        ("二十一", "21"),
        ("一百零五", "105"),
        ("一百一", "110"),
        ("一千五百零二", "1502"),
        ("二〇一", "201"),
        ("一五〇二", "1502"),
        ("十十", None),
        ("一二十", None),
        ("", None),
        ("栋", None),
    ],
)
def test_chinese_number(text: str, expected: str | None) -> None:
    assert chinese_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3号楼", "3栋"),
        ("3幢", "3栋"),
        ("3座", "3栋"),
        ("3#", "3栋"),
        ("A座", "A栋"),
        ("3#2门1502户", "3栋2单元1502室"),
        ("3栋15层1502", "3栋15楼1502室"),
        ("3栋2单元1502号", "3栋2单元1502室"),
        ("3-2-1502", "3栋2单元1502室"),
        ("3-2-1502室", "3栋2单元1502室"),
        ("3栋2-1502", "3栋2单元1502室"),
        ("3-2单元1502", "3栋2单元1502室"),
        ("关南小区3-202", "关南小区3栋202室"),
        ("中南路99-1号", "中南路99号附1号"),
        ("中南路99号之1", "中南路99号附1号"),
        ("中南路99号附1", "中南路99号附1号"),
        ("3栋2单元1502室", "3栋2单元1502室"),
        ("-3栋-", "3栋"),
    ],
)
def test_unify_markers(text: str, expected: str) -> None:
    assert unify_markers(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("湖北省武汉市洪山区关山街道", "洪山区关山街道"),
        ("武汉市武汉市洪山区", "洪山区"),
        ("洪山区洪山区关山街道", "洪山区关山街道"),
        ("中国湖北省武汉市武昌区", "武昌区"),
        ("湖北武汉洪山区", "洪山区"),
        ("武汉洪山区", "洪山区"),
        ("宜昌市西陵区", "西陵区"),
        ("武汉大学东区", "武汉大学东区"),
        ("农贸市场", "农贸市场"),
        ("湖南路", "湖南路"),
        ("湖北武汉珞喻路801号", "珞喻路801号"),
        ("湖北武汉市珞喻路801号", "珞喻路801号"),
        ("武汉珞喻路801号", "珞喻路801号"),
        ("湖北省武汉珞喻路801号", "珞喻路801号"),
        ("武汉大道1号", "武汉大道1号"),  # a road named after the city
        ("武汉路1号", "武汉路1号"),
        ("武汉天地1栋", "武汉天地1栋"),
        ("中百超市1号", "中百超市1号"),
    ],
)
def test_strip_admin_prefix(text: str, expected: str) -> None:
    assert strip_admin_prefix(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("武昌区中南路街道武珞路三巷1号", "武昌区中南路街道武珞路3巷1号"),
        ("中南路99號3-2-1502室", "中南路99号3栋2单元1502室"),
        ("中南路９９号３－２－１５０２", "中南路99号3栋2单元1502室"),
        ("湖北省武汉市武昌區中南路９９號（北門）3-2-1502", "武昌区中南路99号3栋2单元1502室"),
        ("南望苑二期一栋一单元一〇一", "南望苑2期1栋1单元101室"),
        ("  梅苑小区 3栋 2单元 1502  ", "梅苑小区3栋2单元1502室"),
        (
            "现住址:雄楚大道607号鲁巷花园2期（北门）1栋1单元302室 对面是超市",
            "雄楚大道607号鲁巷花园2期1栋1单元302室",
        ),
        ("光谷广场附近鲁磨路41号华光小区2期1栋1单元501室", "鲁磨路41号华光小区2期1栋1单元501室"),
        ("", ""),
    ],
)
def test_normalize(text: str, expected: str) -> None:
    assert normalize(text) == expected
    assert normalize(expected) == expected


@pytest.mark.parametrize(
    ("text", "expected", "city"),
    [
        ("湖北省武汉市洪山区关山街道", "洪山区关山街道", None),
        ("湖北武汉珞喻路801号", "珞喻路801号", None),
        ("湖北省黄石市雄楚大道609号", "雄楚大道609号", "黄石市"),
        ("黄石市雄楚大道609号", "黄石市雄楚大道609号", None),  # no province, no district
        ("北京市海淀区民族大道101号", "海淀区民族大道101号", "北京市"),
        ("北京海淀区民族大道101号", "海淀区民族大道101号", "北京市"),
        ("河南省郑州市金水区", "金水区", "郑州市"),
        ("河南省新郑县", "新郑县", "河南省"),
        ("宜昌市西陵区", "西陵区", "宜昌市"),
        ("广西壮族自治区南宁市青秀区", "青秀区", "南宁市"),
        ("中国湖北省武汉市武昌区", "武昌区", None),
        ("河南路5号", "河南路5号", None),
    ],
)
def test_split_admin_prefix(text: str, expected: str, city: str | None) -> None:
    assert split_admin_prefix(text) == (expected, city)


def test_admin_prefix_of_another_home() -> None:
    changsha = ("湖南省", "长沙市")
    assert short_name("湖南省") == "湖南" and short_name("长沙市") == "长沙"
    assert short_name("广西壮族自治区") == "广西"
    assert split_admin_prefix("湖南长沙岳麓区", changsha) == ("岳麓区", None)
    assert split_admin_prefix("长沙麓山路1号", changsha) == ("麓山路1号", None)
    assert split_admin_prefix("湖北省武汉市洪山区", changsha) == ("洪山区", "武汉市")
    # another city's short name is not known: kept as written, so nothing matches it
    assert split_admin_prefix("湖北武汉珞喻路1号", changsha) == ("湖北武汉珞喻路1号", None)
    assert normalize_with_city("湖北省黄石市雄楚大道609号") == ("雄楚大道609号", "黄石市")


# --- keys ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (road_key, "珞喻路", "珞喻路"),
        (road_key, "武珞路三巷", "武珞路3巷"),
        (road_key, "民主一路", "民主1路"),
        (road_key, "和平2路", "和平2路"),
        (road_key, "二七路", "二七路"),
        (road_key, "三角路", "三角路"),
        (road_key, " 珞喻路 ", "珞喻路"),
        (house_number_key, "743号", "743"),
        (house_number_key, "743號", "743"),
        (house_number_key, "99号附1号", "99附1"),
        (house_number_key, "99-1号", "99附1"),
        (house_number_key, "99号之1", "99附1"),
        (house_number_key, "九十九号", "99"),
        (house_number_key, "743", "743"),
        (compound_key, "南望苑2期", "南望苑2期"),
        (compound_key, "南望苑二期", "南望苑2期"),
        (compound_key, "南望苑（二期）", "南望苑2期"),
        (compound_key, "梅苑小区", "梅苑小区"),
        (building_key, "1栋", "1"),
        (building_key, "1号楼", "1"),
        (building_key, "1幢", "1"),
        (building_key, "一栋", "1"),
        (building_key, "第一栋", "1"),
        (building_key, "1#", "1"),
        (building_key, "A座", "A"),
        (building_key, "a栋", "A"),
        (building_key, "十一栋", "11"),
        (unit_key, "1单元", "1"),
        (unit_key, "一单元", "1"),
        (unit_key, "1", "1"),
        (unit_key, "1门", "1"),
        (room_key, "1502室", "1502"),
        (room_key, "1502", "1502"),
        (room_key, "1502户", "1502"),
        (room_key, "一五〇二", "1502"),
        (room_key, "一千五百零二室", "1502"),
        (room_key, "１５０２", "1502"),
    ],
)
def test_keys(key, value: str, expected: str) -> None:
    assert key(value) == expected
    assert key(expected) == expected


KEYS = (road_key, house_number_key, compound_key, building_key, unit_key, room_key)


@pytest.mark.parametrize("key", KEYS)
def test_keys_are_none_safe(key) -> None:
    assert key(None) is None
    assert key("") is None
    assert key(" ，") is None


ADDRESSY = st.text(
    alphabet="0123456789一二三四五六七八九十百千〇零第号號栋棟幢座#楼层单元門门室户附之-－ 期区"
    "路街巷小区苑AaB（）()",
    max_size=12,
)


@pytest.mark.parametrize("key", KEYS)
@given(value=ADDRESSY)
def test_keys_are_idempotent(key, value: str) -> None:
    once = key(value)
    assert key(once) == once


def test_compound_variants() -> None:
    assert compound_variants("梅苑小区") == ("梅苑小区", "梅苑")
    assert compound_variants("关南小区2期") == ("关南小区2期", "关南2期")
    assert compound_variants("南望苑二期") == ("南望苑2期",)
    assert compound_variants("小区") == ("小区",)
    assert compound_variants(None) == ()
    # a compound with and without 小区 match; phases do not
    assert set(compound_variants("梅苑小区")) & set(compound_variants("梅苑"))
    assert not set(compound_variants("南望苑1期")) & set(compound_variants("南望苑2期"))


# --- gazetteer ----------------------------------------------------------------------------

ROWS = [
    ("420106011004", "梅苑社区", "420106011", "中南路街道", "420106", "武昌区"),
    ("420106011003", "长春社区", "420106011", "中南路街道", "420106", "武昌区"),
    ("420111002046", "华中科技大学社区", "420111002", "关山街道", "420111", "洪山区"),
    ("420111002001", "关山村", "420111002", "关山街道", "420111", "洪山区"),
    ("420111001001", "幸福社区", "420111001", "珞南街道", "420111", "洪山区"),
    ("420106012001", "幸福社区", "420106012", "珞珈山街道", "420106", "武昌区"),
    ("420106013001", "中南社区", "420106013", "水果湖街道", "420106", "武昌区"),
]


@pytest.fixture(scope="module")
def gazetteer() -> Gazetteer:
    return Gazetteer(ROWS)


@pytest.fixture(scope="module")
def wuhan() -> Gazetteer:
    """The 3,495 real communities of Wuhan, names as published (…社区居委会)."""
    text = resources.files("registry").joinpath("data/wuhan_communities.csv").read_text("utf-8")
    rows = list(csv.reader(text.splitlines()))[1:]
    return Gazetteer(rows)


@pytest.mark.parametrize(
    ("text", "level", "name", "code", "length"),
    [
        ("梅苑社区居委会3栋", "community", "梅苑社区", "420106011004", 7),
        ("梅苑社区居民委员会", "community", "梅苑社区", "420106011004", 9),
        ("梅苑社区3栋", "community", "梅苑社区", "420106011004", 4),
        ("梅苑中南路", "community", "梅苑社区", "420106011004", 2),
        ("关山村委会", "community", "关山村", "420111002001", 5),
        ("关山村委3栋", "community", "关山村", "420111002001", 4),
        ("梅苑居委梅苑小区", "community", "梅苑社区", "420106011004", 4),
        ("梅苑居委会梅苑小区", "community", "梅苑社区", "420106011004", 5),
        ("梅苑社区居委3栋", "community", "梅苑社区", "420106011004", 6),
        ("中南路街道梅苑", "street", "中南路街道", "420106011", 5),
        ("中南路街梅苑社区", "street", "中南路街道", "420106011", 4),
        ("中南路街道办事处", "street", "中南路街道", "420106011", 8),
        ("洪山区关山街道", "district", "洪山区", "420111", 3),
        ("洪山关山街道", "district", "洪山区", "420111", 2),
    ],
)
def test_gazetteer_aliases(
    gazetteer: Gazetteer, text: str, level, name: str, code: str, length: int
) -> None:
    match = gazetteer.match_prefix(text, level)
    assert match is not None
    assert (match.name, match.code, match.length) == (name, code, length)


@pytest.mark.parametrize(
    ("text", "level"),
    [
        ("洪山路3号", "district"),  # a road named after the district
        ("洪山广场", "district"),
        ("梅苑小区3栋", "community"),  # a compound named like the community
        ("梅苑1期", "community"),
        ("中南二路", "community"),  # 中南社区's short name inside a road name
        ("中南路99号", "street"),  # a road, not 中南路街道
    ],
)
def test_gazetteer_short_names_do_not_eat_names(gazetteer: Gazetteer, text: str, level) -> None:
    assert gazetteer.match_prefix(text, level) is None


def test_gazetteer_shared_names_resolve_within_parent(gazetteer: Gazetteer) -> None:
    both = gazetteer.match_prefix("幸福社区", "community")
    assert both is not None and both.code is None and len(both.places) == 2
    one = gazetteer.match_prefix("幸福社区", "community", within="420111001")
    assert one is not None and one.code == "420111001001"
    by_district = gazetteer.match_prefix("幸福社区", "community", within="420106")
    assert by_district is not None and by_district.code == "420106012001"
    elsewhere = gazetteer.match_prefix("梅苑社区", "community", within="420111")
    assert elsewhere is not None and elsewhere.outside and elsewhere.code is None


def test_empty_gazetteer_reads_generic_names() -> None:
    empty = Gazetteer()
    assert len(empty) == 0
    for text, level, name in [
        ("洪山区关山街道", "district", "洪山区"),
        ("关山街道办事处珞喻路", "street", "关山街道"),
        ("凤凰镇", "street", "凤凰镇"),
        ("梅苑社区居委会梅苑小区", "community", "梅苑社区"),
        ("梅苑居委会", "community", "梅苑社区"),
        ("关山村委会", "community", "关山村"),
        ("关山村民委员会", "community", "关山村"),
        ("邮科院居委华光小区", "community", "邮科院社区"),
        ("关山村委3栋", "community", "关山村"),
        ("东湖新技术开发区关东街道", "district", "东湖新技术开发区"),
        ("武汉经济技术开发区沌口街道", "district", "武汉经济技术开发区"),
        ("光谷高新区关东街道", "district", "光谷高新区"),
        ("东湖风景区", "district", "东湖风景区"),
        ("长江新区", "district", "长江新区"),
    ]:
        match = empty.match_prefix(text, level)
        assert match is not None and (match.name, match.code) == (name, None), text
    for text, level in [
        ("梅苑小区3栋", "district"),
        ("武汉大学东区", "district"),
        ("水乡小区", "street"),
        ("红旗新村3栋", "community"),
        ("街道口珞喻路", "street"),  # a place, not a street
    ]:
        assert empty.match_prefix(text, level) is None, text


def test_gazetteer_of_wuhan(wuhan: Gazetteer) -> None:
    assert len(wuhan) == 3495
    match = wuhan.match_prefix("梅苑社区", "community", within="420106011")
    assert match is not None and match.code == "420106011004"
    assert match.name == "梅苑社区居委会"  # the table's own name
    street = wuhan.match_prefix("东湖风景区街道", "street", within="420106")
    assert street is not None and street.code is not None
    assert wuhan.lookup("三眼桥社区", "community")


# --- parse --------------------------------------------------------------------------------

FIELDS = (
    "district", "district_code", "street", "street_code", "community", "community_code",
    "road", "house_number", "compound", "building", "unit", "floor", "room", "rest",
)  # fmt: skip


def fields(parsed: ParsedAddress) -> dict[str, object]:
    """The non-empty components of a parse."""
    return {k: v for k in FIELDS if (v := getattr(parsed, k)) not in (None, "")}


ROOM_3_2_1502 = {"building": "3", "unit": "2", "floor": 15, "room": "1502"}

# fmt: off
EXAMPLES: list[tuple[str, dict[str, object]]] = [
    (
        "武昌区中南路街道武珞路三巷1号",
        {"district": "武昌区", "street": "中南路街道", "road": "武珞路3巷", "house_number": "1"},
    ),
    ("梅苑小区3栋2单元1502", {"compound": "梅苑小区", **ROOM_3_2_1502}),
    ("中南路99號3-2-1502室", {"road": "中南路", "house_number": "99", **ROOM_3_2_1502}),
    ("中南路９９号３－２－１５０２", {"road": "中南路", "house_number": "99", **ROOM_3_2_1502}),
    (
        "湖北省武汉市洪山区关山街道珞喻路743号",
        {"district": "洪山区", "street": "关山街道", "road": "珞喻路", "house_number": "743"},
    ),
    (
        "武汉市武汉市洪山区关山街道珞喻路743号",
        {"district": "洪山区", "street": "关山街道", "road": "珞喻路", "house_number": "743"},
    ),
    (
        "洪山区关山街道鲁磨路9号",
        {"district": "洪山区", "street": "关山街道", "road": "鲁磨路", "house_number": "9"},
    ),
    ("珞喻路743号", {"road": "珞喻路", "house_number": "743"}),
    (
        "雄楚大道609号南望苑2期1栋1单元101室",
        {
            "road": "雄楚大道", "house_number": "609", "compound": "南望苑2期",
            "building": "1", "unit": "1", "floor": 1, "room": "101",
        },
    ),
    (
        "南望苑二期一栋一单元一〇一",
        {"compound": "南望苑2期", "building": "1", "unit": "1", "floor": 1, "room": "101"},
    ),
    (
        "关南小区2期2栋3-202",
        {"compound": "关南小区2期", "building": "2", "unit": "3", "floor": 2, "room": "202"},
    ),
    (
        "武昌区中南路99号3-2-1502室",
        {"district": "武昌区", "road": "中南路", "house_number": "99", **ROOM_3_2_1502},
    ),
    ("梅苑小区3#2门1502户", {"compound": "梅苑小区", **ROOM_3_2_1502}),
    (
        "中南路街道梅苑社区居委会梅苑小区3栋",
        {"street": "中南路街道", "community": "梅苑社区", "compound": "梅苑小区", "building": "3"},
    ),
    ("光谷广场附近", {"rest": "光谷广场"}),
    ("华中科技大学西十二舍", {"rest": "华中科技大学西十二舍"}),
    ("", {}),
    ("，。！？…… ", {}),
    ("中南路99号附1号", {"road": "中南路", "house_number": "99附1"}),
    ("中南路99-1号", {"road": "中南路", "house_number": "99附1"}),
    (
        "武昌區中南路街道梅苑社區",
        {"district": "武昌区", "street": "中南路街道", "community": "梅苑社区"},
    ),
    ("梅苑小区十五楼一千五百零二室", {"compound": "梅苑小区", "floor": 15, "room": "1502"}),
    ("梅苑小区3栋二〇一室", {"compound": "梅苑小区", "building": "3", "floor": 2, "room": "201"}),
    ("梅苑小区(北门)3栋（东区）【】2单元", {"compound": "梅苑小区", "building": "3", "unit": "2"}),
    ("梅苑小区3栋2单元15楼", {"compound": "梅苑小区", "building": "3", "unit": "2", "floor": 15}),
    ("梅苑小区3号2单元", {"compound": "梅苑小区", "building": "3", "unit": "2"}),
    ("A座1502", {"building": "A", "floor": 15, "room": "1502"}),
    ("民主一路5号", {"road": "民主1路", "house_number": "5"}),
    ("二七路5号", {"road": "二七路", "house_number": "5"}),
    (
        "和平2路11号金桥雅居3栋",
        {"road": "和平2路", "house_number": "11", "compound": "金桥雅居", "building": "3"},
    ),
    ("江汉路步行街12号", {"road": "江汉路步行街", "house_number": "12"}),
    ("中南路梅苑小区3栋", {"road": "中南路", "compound": "梅苑小区", "building": "3"}),
    ("花园街小区3栋", {"compound": "花园街小区", "building": "3"}),
    ("梅苑小区北门3栋", {"compound": "梅苑小区", "building": "3", "rest": "北门"}),
    ("万达广场B座1205", {"compound": "万达广场", "building": "B", "floor": 12, "room": "1205"}),
    ("梅苑小区3栋10501室", {"compound": "梅苑小区", "building": "3", "room": "10501"}),
    # labels, landmarks and neighbourhood clauses are dropped
    (
        "现住址:雄楚大道607号鲁巷花园2期（北门）1栋1单元302室 对面是超市",
        {
            "road": "雄楚大道", "house_number": "607", "compound": "鲁巷花园2期",
            "building": "1", "unit": "1", "floor": 3, "room": "302",
        },
    ),
    (
        "光谷广场附近鲁磨路41号华光小区2期1栋1单元501室",
        {
            "road": "鲁磨路", "house_number": "41", "compound": "华光小区2期",
            "building": "1", "unit": "1", "floor": 5, "room": "501",
        },
    ),
    (
        "湖北武汉珞喻路801号珞雄小区5栋1单元102室",
        {
            "road": "珞喻路", "house_number": "801", "compound": "珞雄小区",
            "building": "5", "unit": "1", "floor": 1, "room": "102",
        },
    ),
    # a district-level zone, and its street
    (
        "武汉市东湖新技术开发区关东街道民族大道101号",
        {
            "district": "东湖新技术开发区", "street": "关东街道", "road": "民族大道",
            "house_number": "101",
        },
    ),
    # a junction is a place, not part of the road
    ("街道口珞喻路129号", {"road": "珞喻路", "house_number": "129", "rest": "街道口"}),
    (
        "珞南街道街道口珞喻路129号",
        {"street": "珞南街道", "road": "珞喻路", "house_number": "129", "rest": "街道口"},
    ),
    ("中南路口珞喻路1号", {"road": "珞喻路", "house_number": "1", "rest": "中南路口"}),
    ("黄道口大道1号", {"road": "黄道口大道", "house_number": "1"}),
    ("道口路3号", {"road": "道口路", "house_number": "3"}),
]
# fmt: on


@pytest.mark.parametrize(("text", "expected"), EXAMPLES)
def test_parse_without_gazetteer(text: str, expected: dict[str, object]) -> None:
    parsed = parse(text)
    assert fields(parsed) == expected
    assert parsed.text == text


def test_parse_notes() -> None:
    parsed = parse("梅苑小区3栋2单元1502")
    assert "floor 15 derived from room 1502" in parsed.notes
    assert parsed.normalized == "梅苑小区3栋2单元1502室"
    stated = parse("梅苑小区3栋2单元12楼1502")
    assert stated.floor == 12
    assert any("suggests 15" in note for note in stated.notes)
    assert any(note.startswith("unparsed") for note in parse("光谷广场附近").notes)


@pytest.mark.parametrize(
    ("text", "city", "road"),
    [
        ("湖北省黄石市雄楚大道609号南望苑2期1栋1单元101室", "黄石市", "雄楚大道"),
        ("北京市海淀区民族大道101号关南小区2期12栋1单元1001室", "北京市", "民族大道"),
        ("河南省新郑县民族大道101号", "河南省", "民族大道"),
        ("湖北省武汉市洪山区民族大道101号", None, "民族大道"),
        ("湖北武汉民族大道101号", None, "民族大道"),
        ("武汉民族大道101号", None, "民族大道"),
    ],
)
def test_parse_records_another_city(text: str, city: str | None, road: str) -> None:
    parsed = parse(text)
    assert (parsed.city, parsed.road) == (city, road)
    if city:
        assert any(city in note for note in parsed.notes)
    assert parse(text, Gazetteer(ROWS)).city == city


def test_parse_city_of_another_home() -> None:
    changsha = Gazetteer(ROWS, home=("湖南省", "长沙市"))
    assert changsha.home == ("湖南省", "长沙市")
    assert Gazetteer(ROWS).home == ("湖北省", "武汉市")
    wuhan_text = parse("湖北省武汉市洪山区珞喻路743号", changsha)
    assert (wuhan_text.city, wuhan_text.district) == ("武汉市", "洪山区")
    local = parse("湖南长沙麓山路1号", changsha)
    assert (local.city, local.road) == (None, "麓山路")


@pytest.mark.parametrize(
    ("room", "floor"),
    [("1502", 15), ("302", 3), ("0302", 3), ("12", None), ("10501", None), ("A302", None),
     ("002", None), (None, None), ("１５０２", None)],
)  # fmt: skip
def test_derive_floor(room: str | None, floor: int | None) -> None:
    assert derive_floor(room) == floor


def test_parse_caps_long_input() -> None:
    text = "梅苑小区3栋2单元1502" + "附" * 5000
    parsed = parse(text)
    assert parsed.text == text
    assert parsed.room == "1502"
    assert f"input cut to its first {MAX_CHARS} characters" in parsed.notes
    assert parsed.normalized == normalize(text[:MAX_CHARS])


PARSE_WITH_GAZETTEER: list[tuple[str, dict[str, object]]] = [
    (
        "中南路街道梅苑社区居委会梅苑小区3栋",
        {
            "district": "武昌区", "district_code": "420106", "street": "中南路街道",
            "street_code": "420106011", "community": "梅苑社区",
            "community_code": "420106011004", "compound": "梅苑小区", "building": "3",
        },
    ),
    (
        "洪山关山街道珞喻路743号",
        {
            "district": "洪山区", "district_code": "420111", "street": "关山街道",
            "street_code": "420111002", "road": "珞喻路", "house_number": "743",
        },
    ),
    ("洪山路3号", {"road": "洪山路", "house_number": "3"}),
    ("梅苑小区3栋2单元1502", {"compound": "梅苑小区", **ROOM_3_2_1502}),
    (
        "华中科技大学西十二舍",
        {
            "district": "洪山区", "district_code": "420111", "street": "关山街道",
            "street_code": "420111002", "community": "华中科技大学社区",
            "community_code": "420111002046", "rest": "西十二舍",
        },
    ),
    (
        "武昌区幸福社区3栋",
        {
            "district": "武昌区", "district_code": "420106", "street": "珞珈山街道",
            "street_code": "420106012", "community": "幸福社区",
            "community_code": "420106012001", "building": "3",
        },
    ),
    ("幸福社区3栋", {"community": "幸福社区", "building": "3"}),
    (
        "洪山区梅苑社区",
        {"district": "洪山区", "district_code": "420111", "community": "梅苑社区"},
    ),
    (
        "武昌区梅苑居委梅苑小区3栋",
        {
            "district": "武昌区", "district_code": "420106", "street": "中南路街道",
            "street_code": "420106011", "community": "梅苑社区",
            "community_code": "420106011004", "compound": "梅苑小区", "building": "3",
        },
    ),
    (
        "关山村委3栋",
        {
            "district": "洪山区", "district_code": "420111", "street": "关山街道",
            "street_code": "420111002", "community": "关山村",
            "community_code": "420111002001", "building": "3",
        },
    ),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), PARSE_WITH_GAZETTEER)
def test_parse_with_gazetteer(gazetteer: Gazetteer, text: str, expected: dict[str, object]) -> None:
    assert fields(parse(text, gazetteer)) == expected


def test_parse_with_gazetteer_notes(gazetteer: Gazetteer) -> None:
    notes = parse("洪山区梅苑社区", gazetteer).notes
    assert any("not under 420111" in n for n in notes)
    assert any("2 places" in n for n in parse("幸福社区3栋", gazetteer).notes)
    assert any("short name 洪山" in n for n in parse("洪山关山街道", gazetteer).notes)


def test_parse_with_wuhan_gazetteer(wuhan: Gazetteer) -> None:
    parsed = parse("湖北省武汉市武昌区中南路街道梅苑社区中南路99号梅苑小区3-2-1502", wuhan)
    assert fields(parsed) == {
        "district": "武昌区", "district_code": "420106", "street": "中南路街道",
        "street_code": "420106011", "community": "梅苑社区居委会",
        "community_code": "420106011004", "road": "中南路", "house_number": "99",
        "compound": "梅苑小区", **ROOM_3_2_1502,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("光谷步行街1号", {"road": "光谷步行街", "house_number": "1"}),  # not 光谷社区
        (
            "珞南街道街道口珞喻路129号",
            {"street": "珞南街道", "community": "街道口社区居民委员会", "road": "珞喻路"},
        ),
        ("青山区红钢城街道8街坊", {"district": "青山区", "compound": "8街坊"}),
        ("汉南区解放村村委会", {"district": "汉南区", "community": "解放村村委会"}),
        (
            "街道口珞喻路129号",
            {"street": "珞南街道", "community": "街道口社区居民委员会", "road": "珞喻路"},
        ),
        (
            "武汉市洪山区邮科院居委华光小区5栋1单元1701室",
            {
                "district_code": "420111",
                "community": "邮科院社区居民委员会",
                "community_code": "420111002007",
                "compound": "华光小区",
                "room": "1701",
            },
        ),
        # a known street beats the generic zone it is named after
        ("东湖风景区街道梅园社区", {"district": None, "street": "东湖风景区街道"}),
        (
            "武汉市东湖新技术开发区关东街道民族大道101号",
            {"district": "东湖新技术开发区", "district_code": None, "road": "民族大道"},
        ),
    ],
)
def test_parse_short_names_with_wuhan_gazetteer(
    wuhan: Gazetteer, text: str, expected: dict[str, object]
) -> None:
    got = fields(parse(text, wuhan))
    assert {k: got.get(k) for k in expected} == expected


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=300))
def test_parse_never_raises(text: str) -> None:
    assert isinstance(parse(text), ParsedAddress)


@settings(max_examples=500, deadline=None)
@given(
    st.text(
        alphabet="武昌洪山区中南路街道关山梅苑社区居委会村镇乡小区花园苑广场大道巷号號栋棟幢座#单元門门"
        "楼层室户附之期第一二三四五六七八九十百千〇零0123456789AB-－—()（）【】 ,，旁附近对面",
        max_size=60,
    )
)
def test_parse_never_raises_on_addressy_text(text: str) -> None:
    gazetteer = Gazetteer(ROWS)
    parsed = parse(text, gazetteer)
    assert isinstance(parsed, ParsedAddress)
    assert parse(text) == parse(text)  # deterministic
    if parsed.floor is not None:
        assert parsed.floor >= 0


def test_parse_is_fast(wuhan: Gazetteer) -> None:
    """Typical inputs parse in well under 0.1 ms (bound kept loose for busy CI machines)."""
    texts = [text for text, _ in EXAMPLES if text]
    for gazetteer in (None, wuhan):
        start = time.perf_counter()
        rounds = 20
        for _ in range(rounds):
            for text in texts:
                parse(text, gazetteer)
        per_parse = (time.perf_counter() - start) / (rounds * len(texts))
        assert per_parse < 500e-6, per_parse
