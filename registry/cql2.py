"""CQL2-text filters (OGC API – Features Part 3, ``filter-lang=cql2-text``) as SQLAlchemy.

A small recursive-descent parser for the CQL2 text grammar builds the SQL expression as it
goes: Basic CQL2, advanced comparison (LIKE, BETWEEN, IN), CASEI, and the spatial
predicates over WKT and BBOX literals. pygeofilter's cql2_text parser is not used: in 0.4.0
it gives AND and OR the same precedence (``a OR b AND c`` becomes ``(a OR b) AND c``),
rejects one-letter property names and doubled quotes in strings, and takes ``.`` as LIKE's
single-character wildcard.

Every literal becomes a bound parameter coerced to its property's type, so nothing from
the filter text reaches the SQL string and type mismatches are caught here rather than by
the database. Spatial literals are validated (ring closure, validity, the CRS's domain) for
the same reason. Anything malformed raises :class:`FilterError`, whose message says what
is wrong and at which character (1-based).
"""

from __future__ import annotations

import datetime as dt
import math
import operator
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np
import pyproj
import shapely
from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    String,
    false,
    func,
    literal,
    not_,
    or_,
    true,
)
from sqlalchemy import and_ as sql_and
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeEngine

TYPES = frozenset({"string", "integer", "number", "boolean", "date", "date-time", "geometry"})
STORAGE_SRID = 4490
FILTER_SRIDS = (4326, 4490, 3857, 4547)
"""CRSs spatial literals may be written in; 4326 means CRS84 (lon, lat), as does 4490."""
GEOGRAPHIC_SRIDS = frozenset({4326, 4490})
MAX_DEPTH = 40
"""Nesting limit (parentheses, NOT, CASEI, collections): keeps recursion far from Python's."""
MAX_LITERALS = 10_000
"""Bound-parameter limit: PostgreSQL allows 65535 per statement."""

_COMPARISONS: dict[str, Callable[[Any, Any], ColumnElement[bool]]] = {
    "=": operator.eq,
    "<>": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_SPATIAL = {
    "S_INTERSECTS": "ST_Intersects",
    "S_CONTAINS": "ST_Contains",
    "S_WITHIN": "ST_Within",
    "S_DISJOINT": "ST_Disjoint",
    "S_EQUALS": "ST_Equals",
    "S_TOUCHES": "ST_Touches",
    "S_CROSSES": "ST_Crosses",
    "S_OVERLAPS": "ST_Overlaps",
}
_WKT_TYPES = frozenset({"POINT", "LINESTRING", "POLYGON", "GEOMETRYCOLLECTION"}) | {
    f"MULTI{kind}" for kind in ("POINT", "LINESTRING", "POLYGON")
}
_UNSUPPORTED = frozenset(
    {"A_EQUALS", "A_CONTAINS", "A_CONTAINEDBY", "A_OVERLAPS", "T_AFTER", "T_BEFORE"}
    | {"T_CONTAINS", "T_DISJOINT", "T_DURING", "T_EQUALS", "T_FINISHEDBY", "T_FINISHES"}
    | {"T_INTERSECTS", "T_MEETS", "T_METBY", "T_OVERLAPPEDBY", "T_OVERLAPS", "T_STARTEDBY"}
    | {"T_STARTS"}
)
"""Temporal and array predicates of CQL2, named in errors as unsupported rather than unknown."""
_RESERVED = frozenset({"AND", "OR", "NOT", "LIKE", "BETWEEN", "IN", "IS", "NULL"})
_FAMILY = {
    "string": "string",
    "integer": "number",
    "number": "number",
    "boolean": "boolean",
    "date": "time",
    "date-time": "time",
    "geometry": "geometry",
}
"""Property types that may be compared with each other share a family."""

_NUMBER = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAME = re.compile(r"(?:[^\W\d]|:)[\w.:]*")
_SYMBOLS = ("<>", "<=", ">=", "=", "<", ">", "(", ")", ",", "+", "-")
_SIGNED_NUMBER = re.compile(r"[+-]?" + _NUMBER.pattern)


@dataclass(frozen=True, eq=False)
class Queryable:
    """A property a filter may name: the SQL expression it stands for and its JSON-schema type.

    ``eq=False`` because comparing SQLAlchemy columns with ``==`` builds SQL, not a bool.
    """

    column: ColumnElement[Any]
    type: str  # "string" | "integer" | "number" | "boolean" | "date" | "date-time" | "geometry"

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"queryable type {self.type!r} is not one of {sorted(TYPES)}")


class FilterError(ValueError):
    """A filter that does not parse or does not fit the queryables (a client error)."""


def to_sql(
    text: str, queryables: Mapping[str, Queryable], filter_srid: int = 4326
) -> ColumnElement[bool]:
    """The SQL condition for a CQL2-text ``filter``; spatial literals are in ``filter_srid``.

    Geometry queryables are expected in EPSG:4490; literals are transformed to it in SQL
    (``ST_Transform(ST_GeomFromText(:wkt, :srid), 4490)``).
    """
    if not isinstance(text, str):
        raise FilterError("filter: must be text")
    if filter_srid not in FILTER_SRIDS:
        supported = ", ".join(f"EPSG:{s}" for s in FILTER_SRIDS)
        raise FilterError(f"filter: filter-crs EPSG:{filter_srid} is not supported ({supported})")
    return _Parser(text, queryables, filter_srid).parse()


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True)
class _Token:
    kind: str  # "name" | "quoted" | "string" | "number" | "symbol" | "end"
    text: str  # a name, a string's content, a number as written, or a symbol
    pos: int  # 1-based character position


def _syntax(pos: int, message: str) -> FilterError:
    return FilterError(f"filter: syntax error at character {pos}: {message}")


def _clip(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _show(token: _Token) -> str:
    if token.kind == "end":
        return "the end of the filter"
    if token.kind == "string":
        return f"the string '{_clip(token.text)}'"
    if token.kind == "quoted":
        return f'"{_clip(token.text)}"'
    return f"'{_clip(token.text)}'"


def _tokenize(text: str) -> list[_Token]:
    """Split ``text`` into tokens; strings and quoted names are unescaped here."""
    if "\x00" in text:
        raise _syntax(text.index("\x00") + 1, "NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _syntax(exc.start + 1, "character is not valid Unicode") from None
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r\n":
            i += 1
        elif c == "'":
            value, i_next = _string(text, i)
            tokens.append(_Token("string", value, i + 1))
            i = i_next
        elif c == '"':
            end = text.find('"', i + 1)
            if end < 0:
                raise _syntax(i + 1, "unterminated quoted property name")
            if end == i + 1:
                raise _syntax(i + 1, "empty quoted property name")
            tokens.append(_Token("quoted", text[i + 1 : end], i + 1))
            i = end + 1
        elif match := _NUMBER.match(text, i):
            tokens.append(_Token("number", match.group(), i + 1))
            i = match.end()
        elif match := _NAME.match(text, i):
            tokens.append(_Token("name", match.group(), i + 1))
            i = match.end()
        else:
            symbol = next((s for s in _SYMBOLS if text.startswith(s, i)), None)
            if symbol is None:
                raise _syntax(i + 1, f"unexpected character {c!r}")
            tokens.append(_Token("symbol", symbol, i + 1))
            i += len(symbol)
    tokens.append(_Token("end", "", n + 1))
    return tokens


def _string(text: str, start: int) -> tuple[str, int]:
    """The content of the string literal opening at ``start`` ('' and \\' are quotes)."""
    parts: list[str] = []
    i = start + 1
    while True:
        j = text.find("'", i)
        if j < 0:
            raise _syntax(start + 1, "unterminated string literal")
        if j > i and text[j - 1] == "\\":
            parts.append(text[i : j - 1] + "'")
            i = j + 1
        elif text.startswith("'", j + 1):
            parts.append(text[i : j + 1])
            i = j + 2
        else:
            parts.append(text[i:j])
            return "".join(parts), j + 1


# ---------------------------------------------------------------- values


def _number(token: _Token, negative: bool) -> int | float:
    """The value of a numeric token: an int if written without '.' or exponent."""
    text = token.text
    if any(c in text for c in ".eE"):
        value: int | float = float(text)
        if not math.isfinite(value):
            raise FilterError(f"filter: number at character {token.pos} is out of range")
    else:
        if len(text.lstrip("0")) > 19:
            raise FilterError(f"filter: integer at character {token.pos} is out of range")
        value = int(text.lstrip("0") or "0")
    value = -value if negative else value
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise FilterError(f"filter: integer at character {token.pos} is out of range")
    return value


def _numeric_string(text: str) -> int | float | None:
    """A numeric value written as a string ('12', '-2.5e3'), or None."""
    text = text.strip()
    if not _SIGNED_NUMBER.fullmatch(text):
        return None
    if any(c in text for c in ".eE"):
        number = float(text)
        return number if math.isfinite(number) else None
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > 19:
        return None
    value = -int(digits) if text.startswith("-") else int(digits)
    return value if -(2**63) <= value < 2**63 else None


def _number_type(value: int | float) -> TypeEngine[Any]:
    return BigInteger() if isinstance(value, int) else Float()


def _time_type(value: dt.date) -> TypeEngine[Any]:
    return DateTime(timezone=True) if isinstance(value, dt.datetime) else Date()


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        return None


def _timestamp(text: str) -> dt.datetime | None:
    """An ISO 8601 instant; one without an offset is taken as UTC, as CQL2 writes them."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


@lru_cache(maxsize=8)
def _to_storage(srid: int) -> pyproj.Transformer:
    return pyproj.Transformer.from_crs(srid, STORAGE_SRID, always_xy=True)


def _format_points(points: list[tuple[float, float]]) -> str:
    return ",".join(f"{x!r} {y!r}" for x, y in points)


def _check_geometry(wkt: str, srid: int, pos: int) -> None:
    """Reject literals PostGIS would fail on: invalid polygons, points outside the CRS."""
    try:
        geometry = shapely.from_wkt(wkt)
    except shapely.errors.GEOSException as exc:
        raise FilterError(f"filter: invalid geometry at character {pos}: {exc}") from None
    if not shapely.is_valid(geometry):
        reason = shapely.is_valid_reason(geometry)
        raise FilterError(f"filter: invalid geometry at character {pos}: {reason}")
    xy = shapely.get_coordinates(geometry)
    x, y = xy[:, 0], xy[:, 1]
    if srid in GEOGRAPHIC_SRIDS:
        inside = bool(np.all((np.abs(x) <= 180) & (np.abs(y) <= 90)))
    else:
        try:
            lon, lat = _to_storage(srid).transform(x, y, errcheck=True)
            inside = bool(np.all(np.isfinite(lon) & np.isfinite(lat)))
        except pyproj.exceptions.ProjError:
            inside = False
    if not inside:
        raise FilterError(
            f"filter: geometry at character {pos} has coordinates outside EPSG:{srid}"
            + (" (longitude, latitude order)" if srid in GEOGRAPHIC_SRIDS else "")
        )


def _box(x1: float, y1: float, x2: float, y2: float) -> str:
    """WKT of an axis-aligned box, a line or a point when it has no area."""
    if x1 == x2 and y1 == y2:
        return f"POINT({x1!r} {y1!r})"
    if x1 == x2 or y1 == y2:
        return f"LINESTRING({_format_points([(x1, y1), (x2, y2)])})"
    ring = [(x1, y1), (x2, y1), (x2, y2), (x1, y2), (x1, y1)]
    return f"POLYGON(({_format_points(ring)}))"


# ---------------------------------------------------------------- operands


@dataclass(frozen=True)
class _Operand:
    """A property or a literal, before the other side of its predicate fixes its SQL type."""

    text: str  # as written, for messages
    pos: int
    type: str  # a property's queryable type, or a literal's kind (string, number, ...)
    queryable: Queryable | None = None
    value: Any = None  # a literal's value (WKT for geometries)
    casei: bool = False


# ---------------------------------------------------------------- the parser


class _Parser:
    """booleanExpression := term {OR term}; term := factor {AND factor}; factor := [NOT] primary."""

    def __init__(self, text: str, queryables: Mapping[str, Queryable], srid: int) -> None:
        self.tokens = _tokenize(text)
        self.at = 0
        self.depth = 0
        self.literals = 0
        self.queryables = queryables
        self.srid = srid

    # -- token helpers

    def peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.at + ahead, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        if token.kind != "end":
            self.at += 1
        return token

    @staticmethod
    def is_word(token: _Token, *words: str) -> bool:
        return token.kind == "name" and token.text.upper() in words

    @staticmethod
    def is_symbol(token: _Token, *symbols: str) -> bool:
        return token.kind == "symbol" and token.text in symbols

    def accept_word(self, word: str) -> bool:
        if self.is_word(self.peek(), word):
            self.at += 1
            return True
        return False

    def accept_symbol(self, symbol: str) -> bool:
        if self.is_symbol(self.peek(), symbol):
            self.at += 1
            return True
        return False

    def expect_word(self, word: str) -> None:
        if not self.accept_word(word):
            raise self.unexpected(f"expected {word}")

    def expect_symbol(self, symbol: str) -> None:
        if not self.accept_symbol(symbol):
            raise self.unexpected(f"expected '{symbol}'")

    def unexpected(self, expected: str, token: _Token | None = None) -> FilterError:
        token = token or self.peek()
        return _syntax(token.pos, f"{expected}, found {_show(token)}")

    @contextmanager
    def nested(self, token: _Token) -> Iterator[None]:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(
                f"filter: nested too deeply at character {token.pos} (at most {MAX_DEPTH} levels)"
            )
        try:
            yield
        finally:
            self.depth -= 1

    # -- conditions

    def parse(self) -> ColumnElement[bool]:
        if self.peek().kind == "end":
            raise FilterError("filter: the filter is empty")
        condition = self.disjunction()
        if self.peek().kind != "end":
            raise self.unexpected("expected AND, OR or the end of the filter")
        return condition

    def disjunction(self) -> ColumnElement[bool]:
        terms = [self.conjunction()]
        while self.accept_word("OR"):
            terms.append(self.conjunction())
        return terms[0] if len(terms) == 1 else or_(*terms)

    def conjunction(self) -> ColumnElement[bool]:
        factors = [self.factor()]
        while self.accept_word("AND"):
            factors.append(self.factor())
        return factors[0] if len(factors) == 1 else sql_and(*factors)

    def factor(self) -> ColumnElement[bool]:
        token = self.peek()
        if self.accept_word("NOT"):
            with self.nested(token):
                return not_(self.factor())
        return self.primary()

    def primary(self) -> ColumnElement[bool]:
        token = self.peek()
        if self.accept_symbol("("):
            with self.nested(token):
                condition = self.disjunction()
            self.expect_symbol(")")
            return condition
        if token.kind == "name" and self.is_symbol(self.peek(1), "("):
            name = token.text.upper()
            if name in _SPATIAL:
                return self.spatial()
            if name in _UNSUPPORTED:
                raise FilterError(
                    f"filter: {name} at character {token.pos} is not supported "
                    "(temporal and array operators are not)"
                )
        return self.predicate(self.operand())

    def predicate(self, lhs: _Operand) -> ColumnElement[bool]:
        token = self.peek()
        if self.is_symbol(token, *_COMPARISONS):
            self.take()
            left, right = self.unify(token, [lhs, self.operand()])
            return _COMPARISONS[token.text](left, right)
        if self.accept_word("IS"):
            negated = self.accept_word("NOT")
            self.expect_word("NULL")
            if lhs.queryable is None:
                raise FilterError(f"filter: IS NULL at character {token.pos} needs a property")
            column = self.sql(lhs, lhs)
            return column.is_not(None) if negated else column.is_(None)
        negated = self.accept_word("NOT")
        token = self.peek()
        if self.accept_word("LIKE"):
            condition = self.like(token, lhs, self.operand())
        elif self.accept_word("BETWEEN"):
            low = self.operand()
            self.expect_word("AND")
            value, low_sql, high_sql = self.unify(token, [lhs, low, self.operand()])
            condition = value.between(low_sql, high_sql)
        elif self.accept_word("IN"):
            self.expect_symbol("(")
            items = [self.operand()]
            while self.accept_symbol(","):
                items.append(self.operand())
            self.expect_symbol(")")
            value, *options = self.unify(token, [lhs, *items])
            condition = value.in_(options)
        elif negated:
            raise self.unexpected("expected LIKE, BETWEEN or IN after NOT")
        else:
            return self.bare(lhs, token)
        return not_(condition) if negated else condition

    def bare(self, operand: _Operand, token: _Token) -> ColumnElement[bool]:
        """A lone boolean literal or boolean property used as a condition."""
        if operand.queryable is None and operand.type == "boolean":
            return true() if operand.value else false()
        if operand.queryable is not None and operand.type == "boolean":
            return operand.queryable.column == true()
        raise self.unexpected(
            f"expected a comparison (=, <>, <, <=, >, >=, LIKE, BETWEEN, IN, IS NULL) "
            f"after {_clip(operand.text)}",
            token,
        )

    def like(self, token: _Token, lhs: _Operand, pattern: _Operand) -> ColumnElement[bool]:
        if lhs.queryable is None or lhs.type != "string":
            raise FilterError(
                f"filter: LIKE at character {token.pos} needs a string property on its left, "
                f"found {_clip(lhs.text)}"
            )
        if pattern.queryable is not None or pattern.type != "string":
            raise FilterError(
                f"filter: LIKE at character {token.pos} needs a string pattern on its right, "
                f"found {_clip(pattern.text)}"
            )
        # A CQL2 string cannot end in a backslash (\' is a quote), so PostgreSQL's
        # "LIKE pattern must not end with escape character" cannot arise.
        return self.sql(lhs, lhs).like(self.sql(pattern, lhs), escape="\\")

    def spatial(self) -> ColumnElement[bool]:
        token = self.take()
        name = token.text.upper()
        self.expect_symbol("(")
        first = self.operand()
        self.expect_symbol(",")
        second = self.operand()
        self.expect_symbol(")")
        for operand in (first, second):
            if operand.type != "geometry":
                raise FilterError(
                    f"filter: {name} at character {token.pos} needs geometries, found "
                    f"{_clip(operand.text)} ({operand.type}) at character {operand.pos}"
                )
        if first.queryable is None and second.queryable is None:
            raise FilterError(
                f"filter: {name} at character {token.pos} compares two literals; "
                "name a geometry property"
            )
        function = getattr(func, _SPATIAL[name])
        left, right = self.sql(first, first), self.sql(second, second)
        if name == "S_DISJOINT":
            return function(left, right)
        # every other predicate implies that the boxes overlap: saying so lets the spatial
        # index serve it under row-level security, where PostGIS's ST_ functions (not
        # LEAKPROOF) may not become index conditions but ``&&`` (marked LEAKPROOF) may
        return sql_and(left.bool_op("&&")(right), function(left, right))

    # -- operands

    def operand(self) -> _Operand:
        token = self.take()
        if token.kind == "string":
            return _Operand(f"'{token.text}'", token.pos, "string", value=token.text)
        if token.kind == "number" or self.is_symbol(token, "+", "-"):
            value = self.signed_number(token)
            return _Operand(repr(value), token.pos, "number", value=value)
        if token.kind == "quoted":
            return self.property(token)
        if token.kind == "name":
            name = token.text.upper()
            if name in ("TRUE", "FALSE"):
                return _Operand(token.text, token.pos, "boolean", value=name == "TRUE")
            following = self.peek()
            if self.is_symbol(following, "(") or (
                name in _WKT_TYPES and self.is_word(following, "Z", "M", "ZM", "EMPTY")
            ):
                return self.function(token, name)
            if name in _RESERVED:
                raise self.unexpected("expected a property or a literal", token)
            return self.property(token)
        raise self.unexpected("expected a property or a literal", token)

    def property(self, token: _Token) -> _Operand:
        queryable = self.queryables.get(token.text)
        if queryable is None:
            known = ", ".join(sorted(self.queryables))
            raise FilterError(
                f'filter: unknown property "{_clip(token.text)}" at character {token.pos} '
                f"(queryables: {known})"
            )
        return _Operand(token.text, token.pos, queryable.type, queryable=queryable)

    def signed_number(self, token: _Token) -> int | float:
        negative = False
        if self.is_symbol(token, "+", "-"):
            negative = token.text == "-"
            token = self.take()
        if token.kind != "number":
            raise self.unexpected("expected a number", token)
        return _number(token, negative)

    def function(self, token: _Token, name: str) -> _Operand:
        if name in ("DATE", "TIMESTAMP"):
            self.expect_symbol("(")
            argument = self.take()
            if argument.kind != "string":
                raise self.unexpected(f"expected a quoted {name.lower()}", argument)
            self.expect_symbol(")")
            parse = _date if name == "DATE" else _timestamp
            value = parse(argument.text)
            if value is None:
                raise FilterError(
                    f"filter: invalid {name} '{_clip(argument.text)}' at character {token.pos}"
                )
            kind = "date" if name == "DATE" else "timestamp"
            return _Operand(f"{name}('{argument.text}')", token.pos, kind, value=value)
        if name == "CASEI":
            self.expect_symbol("(")
            with self.nested(token):
                inner = self.operand()
            self.expect_symbol(")")
            if inner.type != "string":
                raise FilterError(
                    f"filter: CASEI at character {token.pos} needs a string, "
                    f"found {_clip(inner.text)} ({inner.type})"
                )
            return replace(inner, text=f"CASEI({inner.text})", pos=token.pos, casei=True)
        if name == "BBOX":
            return self.bbox(token)
        if name in _WKT_TYPES:
            wkt = self.geometry(token, name)
            _check_geometry(wkt, self.srid, token.pos)
            return _Operand(_clip(wkt), token.pos, "geometry", value=wkt)
        if name in ("ACCENTI", "INTERVAL"):
            raise FilterError(f"filter: {name} at character {token.pos} is not supported")
        raise FilterError(
            f'filter: unknown function "{_clip(token.text)}" at character {token.pos}'
        )

    def bbox(self, token: _Token) -> _Operand:
        """BBOX(x1, y1, x2, y2) or with z: a box; x1 > x2 crosses the antimeridian (lon/lat)."""
        self.expect_symbol("(")
        numbers = [float(self.signed_number(self.take()))]
        while self.accept_symbol(","):
            numbers.append(float(self.signed_number(self.take())))
        self.expect_symbol(")")
        if len(numbers) not in (4, 6):
            raise FilterError(
                f"filter: BBOX at character {token.pos} needs 4 or 6 numbers, got {len(numbers)}"
            )
        x1, y1, x2, y2 = numbers if len(numbers) == 4 else numbers[:2] + numbers[3:5]
        if y1 > y2 or (x1 > x2 and self.srid not in GEOGRAPHIC_SRIDS):
            raise FilterError(
                f"filter: BBOX at character {token.pos} has its lower corner above or "
                "beyond its upper corner"
            )
        if x1 > x2:
            parts = [_box(x1, y1, 180.0, y2), _box(-180.0, y1, x2, y2)]
            wkt = f"GEOMETRYCOLLECTION({','.join(parts)})"
        else:
            wkt = _box(x1, y1, x2, y2)
        _check_geometry(wkt, self.srid, token.pos)
        return _Operand(f"BBOX({', '.join(map(repr, numbers))})", token.pos, "geometry", value=wkt)

    # -- WKT

    def geometry(self, token: _Token, name: str) -> str:
        """A WKT geometry after its type name, rewritten with exact 2D coordinates (Z dropped)."""
        following = self.peek()
        if self.is_word(following, "M", "ZM", "EMPTY"):
            raise FilterError(
                f"filter: {name} {following.text} at character {token.pos} is not supported"
            )
        self.accept_word("Z")
        if name == "POINT":
            self.expect_symbol("(")
            body = f"({_format_points([self.position()])})"
            self.expect_symbol(")")
        elif name == "LINESTRING":
            body = self.line()
        elif name == "POLYGON":
            body = self.polygon()
        elif name == "MULTIPOINT":
            body = self.listed(self.multipoint_member)
        elif name == "MULTILINESTRING":
            body = self.listed(self.line)
        elif name == "MULTIPOLYGON":
            body = self.listed(self.polygon)
        else:
            body = self.listed(self.collection_member)
        return f"{name}{body}"

    def listed(self, item: Callable[[], str]) -> str:
        self.expect_symbol("(")
        items = [item()]
        while self.accept_symbol(","):
            items.append(item())
        self.expect_symbol(")")
        return f"({','.join(items)})"

    def position(self) -> tuple[float, float]:
        x = float(self.signed_number(self.take()))
        y = float(self.signed_number(self.take()))
        if self.peek().kind == "number" or self.is_symbol(self.peek(), "+", "-"):
            self.signed_number(self.take())  # z: spatial predicates are 2D
        return x, y

    def positions(self) -> list[tuple[float, float]]:
        self.expect_symbol("(")
        points = [self.position()]
        while self.accept_symbol(","):
            points.append(self.position())
        self.expect_symbol(")")
        return points

    def line(self) -> str:
        token = self.peek()
        points = self.positions()
        if len(points) < 2:
            raise FilterError(f"filter: line at character {token.pos} needs at least 2 points")
        return f"({_format_points(points)})"

    def ring(self) -> str:
        token = self.peek()
        points = self.positions()
        if len(points) < 4 or points[0] != points[-1]:
            raise FilterError(
                f"filter: polygon ring at character {token.pos} must be closed "
                "(first point repeated last) and have at least 4 points"
            )
        return f"({_format_points(points)})"

    def polygon(self) -> str:
        return self.listed(self.ring)

    def multipoint_member(self) -> str:
        if self.accept_symbol("("):
            point = self.position()
            self.expect_symbol(")")
        else:
            point = self.position()
        return f"({_format_points([point])})"

    def collection_member(self) -> str:
        token = self.take()
        name = token.text.upper()
        if token.kind != "name" or name not in _WKT_TYPES:
            raise self.unexpected("expected a WKT geometry", token)
        with self.nested(token):
            return self.geometry(token, name)

    # -- SQL for operands

    def unify(self, token: _Token, operands: list[_Operand]) -> list[ColumnElement[Any]]:
        """SQL for operands compared with each other, literals typed after the first property."""
        properties = [o for o in operands if o.queryable is not None]
        if not properties:
            raise FilterError(
                f"filter: comparison at character {token.pos} has no property, only literals"
            )
        reference = properties[0]
        for operand in operands:
            if operand.type == "geometry":
                raise FilterError(
                    f"filter: {_clip(operand.text)} at character {operand.pos} is a geometry; "
                    f"compare geometries with {', '.join(_SPATIAL)}"
                )
            if operand.queryable is not None and _FAMILY[operand.type] != _FAMILY[reference.type]:
                raise FilterError(
                    f'filter: cannot compare {reference.type} property "{reference.text}" with '
                    f'{operand.type} property "{operand.text}" at character {operand.pos}'
                )
        return [self.sql(operand, reference) for operand in operands]

    def sql(self, operand: _Operand, reference: _Operand) -> ColumnElement[Any]:
        """The operand as SQL; a literal is bound with the type ``reference`` (a property) has."""
        if operand.queryable is not None:
            column = operand.queryable.column
            return func.lower(column) if operand.casei else column
        self.literals += 1
        if self.literals > MAX_LITERALS:
            raise FilterError(f"filter: more than {MAX_LITERALS} literals")
        if operand.type == "geometry":
            source = func.ST_GeomFromText(literal(operand.value, String()), literal(self.srid))
            return func.ST_Transform(source, STORAGE_SRID)
        value, sql_type = self.coerce(operand, reference)
        bound = literal(value, sql_type)
        return func.lower(bound) if operand.casei else bound

    def coerce(self, operand: _Operand, reference: _Operand) -> tuple[Any, TypeEngine[Any]]:
        """A literal's value and SQL type for comparing with ``reference``'s type."""
        target, kind, value = reference.type, operand.type, operand.value
        if operand.casei and target != "string":
            raise FilterError(
                f"filter: CASEI at character {operand.pos} needs a string property to compare with"
            )
        if target == "string" and kind == "string":
            return value, String()
        if target in ("integer", "number"):
            number = value if kind == "number" else None
            if kind == "string":
                number = _numeric_string(value)
            if number is not None:
                return number, _number_type(number)
        if target == "boolean":
            if kind == "boolean":
                return value, Boolean()
            if kind == "string" and value.lower() in ("true", "false"):
                return value.lower() == "true", Boolean()
        if target in ("date", "date-time"):
            if kind in ("date", "timestamp"):
                return value, _time_type(value)
            if kind == "string":
                parsed = _date(value) if target == "date" else _timestamp(value)
                if parsed is not None:
                    return parsed, _time_type(parsed)
        raise FilterError(
            f"filter: {_clip(operand.text)} at character {operand.pos} is not a valid "
            f'{target} for property "{reference.text}"'
        )
