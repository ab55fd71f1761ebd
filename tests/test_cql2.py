"""CQL2-text filters (registry/cql2.py): compiled SQL and bound parameters, results against
a real PostGIS database, and malformed input that must raise FilterError and nothing else."""

from __future__ import annotations

import datetime as dt
import random

import pyproj
import pytest
from geoalchemy2 import Geometry
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    Text,
    cast,
    column,
    func,
    insert,
    select,
    table,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session
from sqlalchemy.sql import operators
from sqlalchemy.sql.elements import BooleanClauseList, ColumnElement

from registry.cql2 import MAX_DEPTH, FilterError, Queryable, to_sql
from registry.models import Building, Community

# ---------------------------------------------------------------- compiled SQL

T = table(
    "t",
    column("name", Text),
    column("floors", BigInteger),
    column("area", Float),
    column("flag", Boolean),
    column("day", Date),
    column("at", DateTime(timezone=True)),
    column("geom", Geometry("MULTIPOLYGON", 4490)),
    column("用途", Text),
    column("in", Text),
)
Q = {
    "name": Queryable(T.c.name, "string"),
    "floors": Queryable(T.c.floors, "integer"),
    "area": Queryable(T.c.area, "number"),
    "flag": Queryable(T.c.flag, "boolean"),
    "day": Queryable(T.c.day, "date"),
    "at": Queryable(T.c.at, "date-time"),
    "geom": Queryable(T.c.geom, "geometry"),
    "用途": Queryable(T.c["用途"], "string"),
    "in": Queryable(T.c["in"], "string"),
    "x": Queryable(T.c.floors, "integer"),
}


def compiled(text: str, srid: int = 4326) -> tuple[str, dict]:
    result = to_sql(text, Q, srid).compile(dialect=postgresql.psycopg.dialect())
    return str(result), result.params


def test_literals_are_bound_parameters_never_sql() -> None:
    evil = "x'); DROP TABLE building; --"
    sql, params = compiled(f"name = '{evil.replace(chr(39), chr(39) * 2)}'")
    assert sql == "t.name = %(param_1)s::VARCHAR"
    assert params == {"param_1": evil}


def test_comparisons_either_way_round() -> None:
    assert compiled("floors >= 3") == ("t.floors >= %(param_1)s::BIGINT", {"param_1": 3})
    assert compiled("3 < floors") == ("%(param_1)s::BIGINT < t.floors", {"param_1": 3})
    assert compiled("area <> -2.5e-3")[1] == {"param_1": -0.0025}
    assert compiled("x = 1")[0] == "t.floors = %(param_1)s::BIGINT"  # one-letter name


def test_and_binds_tighter_than_or_and_not_tighter_than_and() -> None:
    expression = to_sql("x = 1 OR x = 2 AND name = 'a'", Q)
    assert isinstance(expression, BooleanClauseList) and expression.operator is operators.or_
    right = expression.clauses[1]
    assert isinstance(right, BooleanClauseList) and right.operator is operators.and_
    sql, _ = compiled("NOT x = 1 AND (x = 2 OR x = 3)")
    assert sql == (
        "t.floors != %(param_1)s::BIGINT AND "
        "(t.floors = %(param_2)s::BIGINT OR t.floors = %(param_3)s::BIGINT)"
    )


def test_keywords_are_case_insensitive_and_names_may_be_quoted() -> None:
    sql, params = compiled('"name" like \'a%\' and not "floors" between 1 and 2 oR "in" = \'x\'')
    assert "t.name LIKE %(param_1)s::VARCHAR ESCAPE '\\'" in sql
    assert "t.floors NOT BETWEEN" in sql and 't."in" = ' in sql
    assert params == {"param_1": "a%", "param_2": 1, "param_3": 2, "param_4": "x"}
    assert compiled("用途 = '住宅'") == ('t."用途" = %(param_1)s::VARCHAR', {"param_1": "住宅"})


def test_string_escapes() -> None:
    assert compiled("name = 'it''s'")[1] == {"param_1": "it's"}
    assert compiled("name = 'it\\'s'")[1] == {"param_1": "it's"}
    assert compiled("name LIKE 'a\\%b_'")[1] == {"param_1": "a\\%b_"}


def test_advanced_comparisons() -> None:
    sql, params = compiled("floors IN (1, '2', 3.5)")
    assert sql == "t.floors IN (%(param_1)s::BIGINT, %(param_2)s::BIGINT, %(param_3)s)"
    assert params == {"param_1": 1, "param_2": 2, "param_3": 3.5}
    assert compiled("name NOT IN ('a')")[0] == "(t.name NOT IN (%(param_1)s::VARCHAR))"
    assert compiled("name NOT LIKE 'a'")[0].startswith("t.name NOT LIKE")
    assert compiled("floors IS NULL")[0] == "t.floors IS NULL"
    assert compiled("geom IS NOT NULL")[0] == "t.geom IS NOT NULL"
    sql, params = compiled("CASEI(name) = casei('ÄBC')")
    assert sql == "lower(t.name) = lower(%(param_1)s::VARCHAR)" and params == {"param_1": "ÄBC"}


def test_literals_take_their_property_type() -> None:
    assert compiled("flag = true") == ("t.flag = %(param_1)s", {"param_1": True})
    assert compiled("flag")[0] == "t.flag = true"
    assert compiled("NOT flag")[0] == "t.flag != true"
    assert compiled("TRUE")[0] == "true"
    assert compiled("day = DATE('2024-03-01')")[1] == {"param_1": dt.date(2024, 3, 1)}
    assert compiled("day < '2024-03-01'")[1] == {"param_1": dt.date(2024, 3, 1)}
    utc = dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC)
    assert compiled("at > TIMESTAMP('2024-03-01T12:00:00Z')")[1] == {"param_1": utc}
    assert compiled("at > '2024-03-01T12:00:00'")[1] == {"param_1": utc}  # no offset: UTC
    assert "TIMESTAMP WITH TIME ZONE" in compiled("at > TIMESTAMP('2024-03-01T12:00:00Z')")[0]
    assert compiled("area > 1")[1] == {"param_1": 1}
    assert compiled("area < '-2.5e-3'")[1] == {"param_1": -0.0025}
    assert compiled("floors = 0000000000000000000000000000000000042")[1] == {"param_1": 42}


def test_spatial_literal_is_transformed_from_the_filter_crs() -> None:
    sql, params = compiled("S_INTERSECTS(geom, POINT(114.3 30.5))")
    literal = (
        "ST_Transform(ST_GeomFromText(%(param_1)s::VARCHAR, "
        "%(param_2)s::INTEGER), %(ST_Transform_1)s::INTEGER)"
    )
    # the box test first, for the spatial index under row-level security
    assert sql == f"(t.geom && {literal}) AND ST_Intersects(t.geom, {literal})"
    assert params == {"param_1": "POINT(114.3 30.5)", "param_2": 4326, "ST_Transform_1": 4490}
    sql, params = compiled("s_within(BBOX(12700000, 3500000, 12800000, 3600000), geom)", 3857)
    assert sql.startswith("(ST_Transform(ST_GeomFromText(") and sql.endswith(", t.geom)")
    assert ") AND ST_Within(ST_Transform(ST_GeomFromText(" in sql
    assert params["param_1"] == (
        "POLYGON((12700000.0 3500000.0,12800000.0 3500000.0,12800000.0 3600000.0,"
        "12700000.0 3600000.0,12700000.0 3500000.0))"
    )
    assert params["param_2"] == 3857


@pytest.mark.parametrize(
    ("literal", "wkt"),
    [
        ("POINT Z(1 2 3)", "POINT(1.0 2.0)"),
        ("LINESTRING(0.1 0.2, -1e-3 +4)", "LINESTRING(0.1 0.2,-0.001 4.0)"),
        ("MULTIPOINT(1 2, (3 4))", "MULTIPOINT((1.0 2.0),(3.0 4.0))"),
        (
            "MULTILINESTRING((0 0, 1 1),(2 2, 3 3))",
            "MULTILINESTRING((0.0 0.0,1.0 1.0),(2.0 2.0,3.0 3.0))",
        ),
        (
            "polygon((0 0, 4 0, 4 4, 0 0), (1 0.5, 3 0.5, 3 2.5, 1 0.5))",
            "POLYGON((0.0 0.0,4.0 0.0,4.0 4.0,0.0 0.0),(1.0 0.5,3.0 0.5,3.0 2.5,1.0 0.5))",
        ),
        (
            "MULTIPOLYGON(((0 0, 1 0, 1 1, 0 0)), ((5 5, 6 5, 6 6, 5 5)))",
            "MULTIPOLYGON(((0.0 0.0,1.0 0.0,1.0 1.0,0.0 0.0)),((5.0 5.0,6.0 5.0,6.0 6.0,5.0 5.0)))",
        ),
        (
            "GEOMETRYCOLLECTION(POINT(1 2), GEOMETRYCOLLECTION(LINESTRING(0 0, 1 1)))",
            "GEOMETRYCOLLECTION(POINT(1.0 2.0),GEOMETRYCOLLECTION(LINESTRING(0.0 0.0,1.0 1.0)))",
        ),
        ("BBOX(1, 2, 1, 3)", "LINESTRING(1.0 2.0,1.0 3.0)"),
        ("BBOX(1, 2, 0, 3, 4, 5)", "POLYGON((1.0 2.0,3.0 2.0,3.0 4.0,1.0 4.0,1.0 2.0))"),
        (
            "BBOX(170, 1, -170, 2)",  # crosses the antimeridian
            "GEOMETRYCOLLECTION(POLYGON((170.0 1.0,180.0 1.0,180.0 2.0,170.0 2.0,170.0 1.0)),"
            "POLYGON((-180.0 1.0,-170.0 1.0,-170.0 2.0,-180.0 2.0,-180.0 1.0)))",
        ),
        ("POINT(0.30000000000000004 1)", "POINT(0.30000000000000004 1.0)"),  # exact
    ],
)
def test_wkt_literals_are_rewritten_exactly(literal: str, wkt: str) -> None:
    assert compiled(f"S_INTERSECTS(geom, {literal})")[1]["param_1"] == wkt


def test_every_spatial_operator() -> None:
    for op, function in [
        ("S_INTERSECTS", "ST_Intersects"),
        ("S_CONTAINS", "ST_Contains"),
        ("S_WITHIN", "ST_Within"),
        ("S_DISJOINT", "ST_Disjoint"),
        ("S_EQUALS", "ST_Equals"),
        ("S_TOUCHES", "ST_Touches"),
        ("S_CROSSES", "ST_Crosses"),
        ("S_OVERLAPS", "ST_Overlaps"),
    ]:
        sql = compiled(f"{op}(geom, POINT(1 2))")[0]
        if op == "S_DISJOINT":  # disjoint boxes say nothing: no box test
            assert sql.startswith(f"{function}(t.geom, ")
        else:
            assert sql.startswith("(t.geom && ") and f") AND {function}(t.geom, " in sql
    assert compiled("S_EQUALS(geom, geom)")[0] == "(t.geom && t.geom) AND ST_Equals(t.geom, t.geom)"


def test_nesting_up_to_the_limit_compiles() -> None:
    depth = MAX_DEPTH // 2
    text = "x = 0"
    for i in range(depth):
        text = f"NOT (x = {i} OR {text})"
    assert len(compiled(text)[1]) == depth + 1


def test_queryable_type_is_checked() -> None:
    with pytest.raises(ValueError, match="queryable type"):
        Queryable(T.c.name, "text")


# ---------------------------------------------------------------- errors

ERRORS = [
    ("", "the filter is empty"),
    ("   \n\t", "the filter is empty"),
    ("colour = 'red'", 'unknown property "colour" at character 1 (queryables: area, at, day,'),
    ('"nam" = 1', 'unknown property "nam"'),
    ("floors = 'abc'", "'abc' at character 10 is not a valid integer for property \"floors\""),
    ("floors = TRUE", "not a valid integer"),
    ("name = 5", "5 at character 8 is not a valid string"),
    ("flag = 'yes'", "not a valid boolean"),
    ("day = DATE('2024-02-30')", "invalid DATE '2024-02-30' at character 7"),
    ("day = DATE(20240301)", "expected a quoted date"),
    ("at > TIMESTAMP('yesterday')", "invalid TIMESTAMP"),
    ("day = 'tomorrow'", "not a valid date"),
    ("name = name AND floors = name", "cannot compare integer property"),
    ("1 = 1", "has no property, only literals"),
    ("geom = 'x'", "is a geometry"),
    ("name LIKE 5", "needs a string pattern"),
    ("floors LIKE '1%'", "needs a string property"),
    ("'a' IS NULL", "IS NULL at character 5 needs a property"),
    ("CASEI(floors) = 1", "CASEI at character 1 needs a string"),
    ("floors = CASEI('1')", "CASEI at character 10 needs a string property"),
    ("ACCENTI(name) = 'a'", "ACCENTI at character 1 is not supported"),
    ("T_AFTER(at, TIMESTAMP('2024-01-01T00:00:00Z'))", "T_AFTER at character 1 is not supported"),
    ("A_CONTAINS(name, ('a'))", "not supported"),
    ("foo(name) = 1", 'unknown function "foo" at character 1'),
    ("S_INTERSECTS(name, POINT(1 2))", "needs geometries, found name (string)"),
    ("S_INTERSECTS(POINT(1 2), POINT(1 2))", "compares two literals"),
    ("S_INTERSECTS(geom, POINT(1))", "syntax error at character 27: expected a number"),
    ("S_INTERSECTS(geom, POINT(1 2 3 4))", "expected ')'"),
    ("S_INTERSECTS(geom, POINT EMPTY)", "POINT EMPTY at character 20 is not supported"),
    ("S_INTERSECTS(geom, POINT M(1 2 3))", "not supported"),
    ("S_INTERSECTS(geom, LINESTRING(1 2))", "line at character 30 needs at least 2 points"),
    ("S_INTERSECTS(geom, POLYGON((0 0, 1 0, 1 1, 0 1)))", "must be closed"),
    ("S_INTERSECTS(geom, POLYGON((0 0, 1 0, 0 0)))", "at least 4 points"),
    ("S_INTERSECTS(geom, POLYGON((0 0, 2 2, 2 0, 0 2, 0 0)))", "invalid geometry"),
    ("S_INTERSECTS(geom, POINT(181 0))", "outside EPSG:4326 (longitude, latitude order)"),
    ("S_INTERSECTS(geom, POINT(30 114))", "outside EPSG:4326"),
    ("S_INTERSECTS(geom, BBOX(1, 2, 3))", "BBOX at character 20 needs 4 or 6 numbers, got 3"),
    ("S_INTERSECTS(geom, BBOX(1, 3, 2, 2))", "lower corner above"),
    ("S_INTERSECTS(geom, GEOMETRYCOLLECTION(BBOX(1, 2, 3, 4)))", "expected a WKT geometry"),
    ("S_INTERSECTS(geom)", "expected ','"),
    ("floors = 99999999999999999999", "integer at character 10 is out of range"),
    ("floors = 9223372036854775808", "out of range"),
    ("floors = -9223372036854775809", "out of range"),
    ("area = 1e999", "number at character 8 is out of range"),
    ("floors = " + "9" * 5000, "out of range"),
    ("floors = 1 AND", "syntax error at character 15: expected a property or a literal"),
    ("floors = 1 OR OR floors = 2", "found 'OR'"),
    ("(floors = 1", "expected ')', found the end of the filter"),
    ("floors = 1)", "expected AND, OR or the end of the filter, found ')'"),
    ("floors == 1", "character 9"),
    ("floors != 1", "unexpected character '!'"),
    ("floors NOT = 1", "expected LIKE, BETWEEN or IN after NOT"),
    ("floors IS 1", "expected NULL"),
    ("floors IN ()", "expected a property or a literal, found ')'"),
    ("floors BETWEEN 1 OR 2", "expected AND"),
    ("floors = NULL", "found 'NULL'"),
    ("floors", "expected a comparison"),
    ("name = 'abc", "character 8: unterminated string literal"),
    ("name = 'abc\\'", "unterminated string literal"),
    ('"name = 1', "unterminated quoted property name"),
    ('"" = 1', "empty quoted property name"),
    ("floors = 1 + 1", "found '+'"),
    ("name = 'a'\x00", "syntax error at character 11: NUL character"),
    ("name = 'a\x00b'", "NUL character"),
    ("name = '\ud800'", "not valid Unicode"),
    ("name = 'a' ; DROP TABLE t", "unexpected character ';'"),
    ("name = 'a' -- comment", "found '-'"),
    ("名字 = '张三'", 'unknown property "名字"'),
    ("😀 = 1", "unexpected character '😀'"),
    ("(" * 10_000 + "x = 1" + ")" * 10_000, f"nested too deeply at character {MAX_DEPTH + 1}"),
    ("NOT " * 10_000 + "x = 1", "nested too deeply"),
    ("CASEI(" * 100 + "name" + ")" * 100 + " = 'a'", "nested too deeply"),
    ("floors IN (" + ", ".join(["1"] * 10_001) + ")", "more than 10000 literals"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS, ids=range(len(ERRORS)))
def test_malformed_filters_raise_filter_error(text: str, message: str) -> None:
    with pytest.raises(FilterError) as raised:
        to_sql(text, Q)
    assert str(raised.value).startswith("filter: ")
    assert message in str(raised.value)


def test_filter_crs_and_domain() -> None:
    with pytest.raises(FilterError, match="filter-crs EPSG:27700 is not supported"):
        to_sql("x = 1", Q, 27700)
    with pytest.raises(FilterError, match="outside EPSG:4547"):
        to_sql("S_INTERSECTS(geom, POINT(1e12 1e12))", Q, 4547)
    with pytest.raises(FilterError, match="lower corner"):
        to_sql("S_INTERSECTS(geom, BBOX(2, 1, 1, 2))", Q, 3857)  # no antimeridian when projected
    with pytest.raises(FilterError, match="must be text"):
        to_sql(None, Q)  # type: ignore[arg-type]


def assert_total(text: str) -> None:
    """``to_sql`` either raises FilterError or returns SQL that compiles."""
    try:
        expression = to_sql(text, Q)
    except FilterError as exc:
        assert str(exc).startswith("filter: ")
        return
    assert isinstance(expression, ColumnElement)
    expression.compile(dialect=postgresql.psycopg.dialect())


SLOW = [HealthCheck.too_slow]
PIECES = [
    *"()',\"-+=<>.%_\\",
    *["0", "1", "2.5", "1e3", "-7", "'a'", "''", "'it''s'", "'住宅'", '"name"', '"in"'],
    *["name", "floors", "area", "flag", "day", "at", "geom", "x", "TRUE", "NULL"],
    *["AND", "OR", "NOT", "LIKE", "BETWEEN", "IN", "IS", "CASEI", "DATE", "Z"],
    *["S_INTERSECTS", "S_WITHIN", "BBOX", "POINT", "POLYGON", "MULTIPOINT", "LINESTRING"],
    "TIMESTAMP('2024-01-01T00:00:00Z')",
    "DATE('2024-01-01')",
    "POINT(1 2)",
    "BBOX(0,0,1,1)",
    "POLYGON((0 0,1 0,1 1,0 0))",
    " ",
    "\x00",
    "\u3000",
    "😀",
]


@settings(max_examples=400, deadline=None, database=None, suppress_health_check=SLOW)
@given(st.text(max_size=60))
def test_fuzz_random_text(text: str) -> None:
    assert_total(text)


@settings(max_examples=1500, deadline=None, database=None, suppress_health_check=SLOW)
@given(st.lists(st.sampled_from(PIECES), max_size=25).map(" ".join))
def test_fuzz_token_soup(text: str) -> None:
    assert_total(text)


VALID_SAMPLES = [
    "floors BETWEEN 1 AND 3 AND NOT (name LIKE 'a%' OR name IS NULL)",
    "S_INTERSECTS(geom, POLYGON((114 30, 115 30, 115 31, 114 30))) OR flag",
    "day >= DATE('2024-01-01') AND at < TIMESTAMP('2024-06-01T00:00:00Z')",
    "CASEI(name) IN (casei('a'), casei('b')) AND area > -1.5e2",
    "S_WITHIN(geom, BBOX(114, 30, 115, 31)) AND \"用途\" = '住宅'",
]


@settings(max_examples=400, deadline=None, database=None)
@given(st.data())
def test_fuzz_mutated_valid_filters(data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(VALID_SAMPLES))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        action = data.draw(st.sampled_from(["delete", "insert", "duplicate"]))
        if action == "delete":
            text = text[:at] + text[at + 1 :]
        elif action == "insert":
            text = text[:at] + data.draw(st.sampled_from(PIECES)) + text[at:]
        else:
            text = text[:at] + text[at : at + 5] + text[at:]
    assert_total(text)


# ---------------------------------------------------------------- against PostGIS

COMMUNITY = "420111002005"
BUILDINGS = {
    # id: name, use, floors, status, verified_at, footprint corners (lon1, lat1, lon2, lat2)
    "b1": (
        "住宅楼1号",
        "住宅",
        6,
        "in_use",
        "2024-03-01T12:00:00Z",
        (114.40, 30.50, 114.41, 30.51),
    ),
    "b2": (
        "Office Tower",
        "办公",
        20,
        "in_use",
        "2024-06-01T12:00:00Z",
        (114.42, 30.50, 114.44, 30.52),
    ),
    "b3": ("O'Brien Hall", "住宅", 3, "under_construction", None, (114.60, 30.70, 114.61, 30.71)),
    "b4": ("50%楼", None, None, "demolished", None, None),
}
C = Building.__table__.c
DB_QUERYABLES = {
    "id": Queryable(C.id, "string"),
    "name": Queryable(C.name, "string"),
    "use": Queryable(C.use, "string"),
    "floors": Queryable(C.floors, "integer"),
    "status": Queryable(C.status, "string"),
    "verified_at": Queryable(C.verified_at, "date-time"),
    "verified_on": Queryable(cast(func.timezone("UTC", C.verified_at), Date), "date"),
    "area": Queryable(func.ST_Area(C.footprint), "number"),
    "footprint": Queryable(C.footprint, "geometry"),
}


def square(lon1: float, lat1: float, lon2: float, lat2: float) -> str:
    ring = f"{lon1} {lat1},{lon2} {lat1},{lon2} {lat2},{lon1} {lat2},{lon1} {lat1}"
    return f"MULTIPOLYGON((({ring})))"


@pytest.fixture
def buildings(session: Session) -> Session:
    session.execute(
        insert(Community).values(
            code=COMMUNITY,
            name="测试社区",
            street_code=COMMUNITY[:9],
            district_code=COMMUNITY[:6],
        )
    )
    for building_id, (name, use, floors, status, verified, corners) in BUILDINGS.items():
        session.execute(
            insert(Building).values(
                id=building_id,
                community_code=COMMUNITY,
                name=name,
                use=use,
                floors=floors,
                status=status,
                verified_at=dt.datetime.fromisoformat(verified) if verified else None,
                footprint=func.ST_GeomFromText(square(*corners), 4490) if corners else None,
            )
        )
    session.flush()
    return session


def ids(session: Session, text: str, srid: int = 4326) -> list[str]:
    query = select(C.id).where(to_sql(text, DB_QUERYABLES, srid)).order_by(C.id)
    return list(session.scalars(query))


def check(session: Session, cases: list[tuple[str, str]], srid: int = 4326) -> None:
    failures = []
    for text, expected in cases:
        got = " ".join(ids(session, text, srid))
        if got != expected:
            failures.append(f"{text!r}: expected [{expected}], got [{got}]")
    assert not failures, "\n".join(failures)


def test_db_comparisons(buildings: Session) -> None:
    check(
        buildings,
        [
            ("floors > 5", "b1 b2"),
            ("floors >= 20", "b2"),
            ("6 >= floors", "b1 b3"),
            ("floors <> 6", "b2 b3"),
            ("floors = '6'", "b1"),
            ("floors < 6.5", "b1 b3"),
            ("use = '住宅'", "b1 b3"),
            ("use <> '住宅'", "b2"),
            ("name = 'O''Brien Hall'", "b3"),
            ("\"name\" = 'O\\'Brien Hall'", "b3"),
            ("name > 'P'", "b1"),
            ("area > 2e-4", "b2"),
            ("area < 0.0002", "b1 b3"),
            ("verified_at > TIMESTAMP('2024-04-01T00:00:00Z')", "b2"),
            ("verified_at < '2024-04-01T00:00:00+08:00'", "b1"),
            ("verified_on = DATE('2024-03-01')", "b1"),
            ("verified_on <= '2024-06-01'", "b1 b2"),
            ("floors IS NULL", "b4"),
            ("footprint IS NULL", "b4"),
            ("verified_at IS NOT NULL", "b1 b2"),
            ("TRUE", "b1 b2 b3 b4"),
            ("FALSE", ""),
            ("name = 'x'' OR ''1''=''1'", ""),
        ],
    )


def test_db_like_in_between_not(buildings: Session) -> None:
    check(
        buildings,
        [
            ("name LIKE '住宅%'", "b1"),
            ("name LIKE '%Tower'", "b2"),
            ("name LIKE 'Office_Tower'", "b2"),
            ("name NOT LIKE 'O%'", "b1 b4"),
            ("name LIKE '50\\%%'", "b4"),
            ("name LIKE '%\\%%'", "b4"),
            ("name LIKE '%o%'", "b2"),
            ("CASEI(name) LIKE CASEI('office%')", "b2"),
            ("CASEI(name) = casei('OFFICE TOWER')", "b2"),
            ("floors IN (3, 20)", "b2 b3"),
            ("use NOT IN ('住宅')", "b2"),
            ("status IN ('demolished', 'under_construction')", "b3 b4"),
            ("id IN ('b1', 'b4', 'b9')", "b1 b4"),
            ("floors BETWEEN 3 AND 6", "b1 b3"),
            ("floors NOT BETWEEN 3 AND 6", "b2"),
            (
                "verified_at BETWEEN TIMESTAMP('2024-01-01T00:00:00Z') "
                "AND TIMESTAMP('2024-05-01T00:00:00Z')",
                "b1",
            ),
            ("NOT (use = '住宅')", "b2"),
            ("NOT floors > 5", "b3"),
            ("NOT NOT floors > 5", "b1 b2"),
        ],
    )


def test_db_and_or_precedence(buildings: Session) -> None:
    check(
        buildings,
        [
            ("use = '住宅' OR floors = 20 AND status = 'demolished'", "b1 b3"),
            ("(use = '住宅' OR floors = 20) AND status = 'in_use'", "b1 b2"),
            ("status = 'in_use' AND floors = 20 OR use = '住宅'", "b1 b2 b3"),
            ("NOT use = '住宅' OR floors = 3", "b2 b3"),
            ("floors BETWEEN 1 AND 6 AND use = '住宅' OR status = 'demolished'", "b1 b3 b4"),
        ],
    )


def test_db_spatial(buildings: Session) -> None:
    check(
        buildings,
        [
            (
                "S_INTERSECTS(footprint, POLYGON((114.405 30.505, 114.43 30.505, "
                "114.43 30.515, 114.405 30.515, 114.405 30.505)))",
                "b1 b2",
            ),
            ("S_INTERSECTS(footprint, BBOX(114.39, 30.49, 114.415, 30.52))", "b1"),
            ("S_INTERSECTS(footprint, BBOX(114, 30, 115, 31))", "b1 b2 b3"),
            ("S_INTERSECTS(footprint, BBOX(170, 30, -170, 31))", ""),
            ("S_INTERSECTS(footprint, MULTIPOINT((114.405 30.505), (114.605 30.705)))", "b1 b3"),
            ("S_WITHIN(footprint, BBOX(114.39, 30.49, 114.45, 30.53))", "b1 b2"),
            ("S_CONTAINS(footprint, POINT(114.405 30.505))", "b1"),
            ("S_DISJOINT(footprint, BBOX(114.39, 30.49, 114.415, 30.52))", "b2 b3"),
            ("S_TOUCHES(footprint, LINESTRING(114.41 30.50, 114.41 30.51))", "b1"),
            ("S_CROSSES(footprint, LINESTRING(114.39 30.505, 114.415 30.505))", "b1"),
            (
                "S_OVERLAPS(footprint, POLYGON((114.405 30.5, 114.415 30.5, "
                "114.415 30.51, 114.405 30.51, 114.405 30.5)))",
                "b1",
            ),
            (
                "S_EQUALS(footprint, "
                "MULTIPOLYGON(((114.4 30.5, 114.41 30.5, 114.41 30.51, 114.4 30.51, 114.4 30.5))))",
                "b1",
            ),
            ("S_INTERSECTS(footprint, BBOX(114.39, 30.49, 114.415, 30.52)) AND floors > 6", ""),
            ("S_INTERSECTS(footprint, POINT(114.405 30.505)) OR use = '办公'", "b1 b2"),
        ],
    )


@pytest.mark.parametrize("srid", [3857, 4547, 4490])
def test_db_spatial_in_other_filter_crs(buildings: Session, srid: int) -> None:
    to_crs = pyproj.Transformer.from_crs(4490, srid, always_xy=True)
    x1, y1 = to_crs.transform(114.404, 30.504)
    x2, y2 = to_crs.transform(114.406, 30.506)
    px, py = to_crs.transform(114.43, 30.51)
    check(
        buildings,
        [
            (f"S_INTERSECTS(footprint, BBOX({x1!r}, {y1!r}, {x2!r}, {y2!r}))", "b1"),
            (f"S_CONTAINS(footprint, POINT({px!r} {py!r}))", "b2"),
        ],
        srid,
    )


def random_filter(rng: random.Random, depth: int = 0) -> str:
    """A random, mostly well-formed filter mixing properties and literals of every kind."""
    if depth < 3 and rng.random() < 0.4:
        joiner = rng.choice([" AND ", " OR "])
        parts = [random_filter(rng, depth + 1) for _ in range(rng.randint(2, 3))]
        text = "(" + joiner.join(parts) + ")"
        return f"NOT {text}" if rng.random() < 0.2 else text
    prop = rng.choice(list(DB_QUERYABLES))
    literals = [
        "'住宅'",
        "'abc'",
        "'12'",
        "'2024-03-01'",
        "'2024-03-01T00:00:00Z'",
        "''",
        "'%\\_'",
        "7",
        "-3",
        "2.5",
        "1e300",
        "9223372036854775807",
        "TRUE",
        "DATE('2024-03-01')",
        "TIMESTAMP('2024-03-01T12:00:00Z')",
        "CASEI('Ab')",
        "POINT(114.405 30.505)",
        "BBOX(114, 30, 115, 31)",
        "BBOX(170, 30, -170, 31)",
        "POLYGON((0 0, 1 0, 1 1, 0 0))",
        "LINESTRING(114.39 30.505, 114.415 30.505)",
        "GEOMETRYCOLLECTION(POINT(1 1), POLYGON((0 0, 1 0, 1 1, 0 0)))",
        rng.choice(list(DB_QUERYABLES)),
    ]
    lit = rng.choice(literals)
    form = rng.randrange(9)
    if form == 0:
        return f"{prop} {rng.choice(['=', '<>', '<', '<=', '>', '>='])} {lit}"
    if form == 1:
        return f"{lit} {rng.choice(['=', '<', '>='])} {prop}"
    if form == 2:
        return f"{prop} {rng.choice(['LIKE', 'NOT LIKE'])} {lit}"
    if form == 3:
        return f"{prop} {rng.choice(['BETWEEN', 'NOT BETWEEN'])} {lit} AND {rng.choice(literals)}"
    if form == 4:
        return f"{prop} {rng.choice(['IN', 'NOT IN'])} ({lit}, {rng.choice(literals)})"
    if form == 5:
        return f"{prop} IS {rng.choice(['', 'NOT '])}NULL"
    if form == 6:
        return f"CASEI({prop}) = {lit}"
    op = rng.choice(["S_INTERSECTS", "S_CONTAINS", "S_WITHIN", "S_DISJOINT", "S_EQUALS"])
    return f"{op}({prop}, {lit})" if form == 7 else f"{op}({lit}, {prop})"


def test_db_random_filters_never_fail_in_the_database(buildings: Session) -> None:
    """Whatever to_sql accepts runs: type and geometry problems are FilterErrors up front."""
    rng = random.Random(20240301)
    accepted = 0
    for _ in range(1500):
        text = random_filter(rng)
        srid = rng.choice([4326, 4326, 3857, 4547])
        try:
            condition = to_sql(text, DB_QUERYABLES, srid)
        except FilterError:
            continue
        with buildings.begin_nested():
            try:
                buildings.execute(select(func.count()).where(condition)).scalar_one()
            except Exception as exc:  # pragma: no cover - the failure message is the point
                pytest.fail(f"{text!r} (EPSG:{srid}) failed in the database: {exc}")
        accepted += 1
    assert accepted > 200
