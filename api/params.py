"""Parsing OGC API query parameters into registry queries, with errors that name them.

Parameters are read from the raw query string rather than declared on the route,
because each collection has its own property filters; the OpenAPI document
(:mod:`api.openapi`) declares them per collection so clients such as GDAL can see
which filters the server applies.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from starlette.datastructures import QueryParams

from api.problems import bad_request
from geo.crs import DEFAULT, Crs, UnknownCrsError, parse_crs
from registry.collections import Collection, Property
from registry.features import Bbox

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10_000
BBOX_LENGTHS = (4, 6)
FORMATS = ("json", "html")
COMMON = frozenset({"f"})
ITEMS_PARAMS = frozenset(
    {
        "f",
        "limit",
        "bbox",
        "bbox-crs",
        "crs",
        "after",
        "datetime",
        "filter",
        "filter-lang",
        "filter-crs",
        "valid_at",
        "known_at",
    }
)
FILTER_LANGS = ("cql2-text",)


def single(params: QueryParams, name: str) -> str | None:
    values = params.getlist(name)
    if len(values) > 1:
        raise bad_request(f"query parameter {name!r} is given {len(values)} times; give it once")
    return values[0] if values else None


def check_known(params: QueryParams, allowed: frozenset[str] | set[str]) -> None:
    """400 for a parameter the API does not define (/req/core/query-param-unknown)."""
    for name, value in params.multi_items():
        if "\x00" in value:
            raise bad_request(f"query parameter {name!r} contains a NUL character")
    unknown = sorted(set(params.keys()) - set(allowed))
    if unknown:
        raise bad_request(
            f"unknown query parameter {unknown[0]!r}; this resource accepts: "
            f"{', '.join(sorted(allowed))}"
        )


def output_format(params: QueryParams, accept: str | None) -> str:
    """``json`` or ``html``: the ``f`` parameter, else what a browser's Accept header prefers."""
    value = single(params, "f")
    if value is not None:
        if value not in FORMATS:
            raise bad_request(
                f"query parameter 'f' must be one of {', '.join(FORMATS)}, not {value!r}"
            )
        return value
    if accept and "text/html" in accept and "json" not in accept.split(",")[0]:
        return "html"
    return "json"


def parse_limit(value: str | None) -> int:
    """1..10000, default 1000; above the maximum is served as the maximum (OGC API Features)."""
    if value is None:
        return DEFAULT_LIMIT
    try:
        limit = int(value)
    except ValueError:
        raise bad_request(f"query parameter 'limit' must be an integer, not {value!r}") from None
    if limit < 1:
        raise bad_request(f"query parameter 'limit' must be at least 1, not {limit}")
    return min(limit, MAX_LIMIT)


def parse_crs_param(name: str, value: str | None, default: Crs = DEFAULT) -> Crs:
    if value is None:
        return default
    try:
        return parse_crs(value)
    except UnknownCrsError as exc:
        raise bad_request(f"query parameter {name!r}: {exc}") from None


def parse_numbers(name: str, value: str) -> list[float]:
    try:
        numbers = [float(part) for part in value.split(",")]
    except ValueError:
        raise bad_request(f"query parameter {name!r} must be comma-separated numbers") from None
    if not all(math.isfinite(n) for n in numbers):
        raise bad_request(f"query parameter {name!r} must be finite numbers")
    return numbers


def parse_bbox(value: str | None, crs: Crs) -> Bbox | None:
    """``bbox`` in ``bbox-crs`` axis order (lat first for EPSG:4326 and 4490), as x/y."""
    if value is None:
        return None
    numbers = parse_numbers("bbox", value)
    if len(numbers) not in BBOX_LENGTHS:
        raise bad_request(f"query parameter 'bbox' needs 4 or 6 numbers, got {len(numbers)}")
    half = len(numbers) // 2
    low, high = numbers[:2], numbers[half : half + 2]
    for axis in (0, 1):
        if low[axis] > high[axis]:
            raise bad_request(
                f"query parameter 'bbox': minimum {low[axis]} is greater than maximum "
                f"{high[axis]} on axis {axis + 1}"
            )
    if crs.swap_axes:
        low, high = low[::-1], high[::-1]
    if crs.srid in (4326, 4490) and (
        min(low[1], high[1]) < -90
        or max(low[1], high[1]) > 90
        or min(low[0], high[0]) < -180
        or max(low[0], high[0]) > 180
    ):
        raise bad_request("query parameter 'bbox': latitude must be within ±90, longitude ±180")
    return Bbox(low[0], low[1], high[0], high[1], crs)


def parse_equals(params: QueryParams, collection: Collection) -> dict[str, Any]:
    """Equality filters on the collection's filterable properties, typed."""
    filters: dict[str, Any] = {}
    for prop in collection.properties:
        if not prop.filterable or prop.name in ITEMS_PARAMS:
            continue
        value = single(params, prop.name)
        if value is not None:
            filters[prop.name] = typed_value(prop, value)
    return filters


def typed_value(prop: Property, value: str) -> Any:
    if prop.type == "integer":
        try:
            number = int(value)
        except ValueError:
            raise bad_request(
                f"query parameter {prop.name!r} must be an integer, not {value!r}"
            ) from None
        if not -(2**31) <= number < 2**31:
            raise bad_request(f"query parameter {prop.name!r} is out of range: {value}")
        return number
    if prop.type == "number":
        return parse_numbers(prop.name, value)[0]
    if prop.enum and value not in prop.enum:
        raise bad_request(
            f"query parameter {prop.name!r} must be one of {', '.join(prop.enum)}, not {value!r}"
        )
    return value


def parse_instant(text: str, end: bool) -> dt.datetime | None:
    """A datetime bound: ``..`` or empty is open; a date (or GDAL's ``2020-01-20T``) is a day."""
    text = text.strip()
    if text in ("", ".."):
        return None
    if text.endswith("T"):
        text = text[:-1]
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            moment = dt.datetime.combine(day, dt.time.max if end else dt.time.min)
            return moment.replace(tzinfo=dt.UTC)
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise bad_request(
            f"query parameter 'datetime': {text!r} is not an RFC 3339 date or date-time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def parse_datetime(value: str | None) -> tuple[dt.datetime | None, dt.datetime | None] | None:
    """An instant or an interval ``start/end`` (either end open with ``..``)."""
    if value is None:
        return None
    if "/" in value:
        start_text, _, end_text = value.partition("/")
        start, end = parse_instant(start_text, False), parse_instant(end_text, True)
        if start and end and start > end:
            raise bad_request("query parameter 'datetime': the interval ends before it starts")
        return start, end
    return parse_instant(value, False), parse_instant(value, True)


def parse_filter_lang(value: str | None) -> None:
    if value is not None and value not in FILTER_LANGS:
        raise bad_request(
            f"query parameter 'filter-lang' must be one of {', '.join(FILTER_LANGS)}, not {value!r}"
        )
