"""The HTML coverage report: a table of the rates and a folium choropleth of one rate.

Offline first: the page loads only the Leaflet vendored under ``/static/vendor/leaflet``
(folium's CDN scripts and styles, bootstrap, jquery and the rest, are dropped), and has
no base layer unless the settings name a tile server.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlencode, urlsplit

import folium
from branca.element import Element, MacroElement
from folium.template import Template
from jinja2 import Environment
from sqlalchemy import func, literal, select
from sqlalchemy.orm import Session

from registry.models import Community
from registry.output import RATE_TITLES, format_rate
from registry.rates import RATES, Level

# simplification tolerance in degrees (about 1 m in Wuhan): modest, keeps shared edges
SIMPLIFY_DEGREES = 0.00001
GEOJSON_DIGITS = 6
# class upper bounds (exclusive) and colours, red (far from the goal) to green (100%);
# bins are narrow near 1 because reported rates are mostly above 80%
CLASSES: tuple[tuple[float, str], ...] = (
    (0.6, "#d73027"),
    (0.8, "#fc8d59"),
    (0.9, "#fee08b"),
    (0.95, "#d9ef8b"),
    (1.0, "#91cf60"),
)
FULL = "#1a9850"
NO_RATE = "#bdbdbd"
LEAFLET_JS = "/static/vendor/leaflet/leaflet.js"
LEAFLET_CSS = "/static/vendor/leaflet/leaflet.css"
CITY = "city"


def outlines(session: Session, level: Level, code: str | None) -> dict[str, dict[str, Any]]:
    """GeoJSON geometry (lon/lat) per row code of ``level``: community boundaries, or their
    ST_Union per street, district or the city (keyed ``"city"``). Communities without a
    boundary are left out. EPSG:4490 is drawn as WGS84 (a zero shift)."""
    key = {
        "community": Community.code,
        "street": Community.street_code,
        "district": Community.district_code,
        "city": literal(CITY),
    }[level]
    shape = Community.boundary if level == "community" else func.ST_Union(Community.boundary)
    simplified = func.ST_SimplifyPreserveTopology(shape, SIMPLIFY_DEGREES)
    query = select(
        key.label("code"),
        # options 0: no "crs" member; the coordinates are lon/lat as GeoJSON wants
        func.ST_AsGeoJSON(simplified, GEOJSON_DIGITS, 0).label("geojson"),
    ).where(Community.boundary.is_not(None))
    if code:
        query = query.where(Community.code.startswith(code, autoescape=True))
    if level != "community":
        query = query.group_by(key)
    return {row.code: json.loads(row.geojson) for row in session.execute(query)}


def colour(value: float | None) -> str:
    if value is None:
        return NO_RATE
    for upper, hex_colour in CLASSES:
        if value < upper:
            return hex_colour
    return FULL


def legend() -> list[tuple[str, str]]:
    """(colour, label) per class, for the page's key."""
    entries, lower = [], 0.0
    for upper, hex_colour in CLASSES:
        entries.append((hex_colour, f"{lower:.0%} – {upper:.0%}"))
        lower = upper
    return [*entries, (FULL, "100%"), (NO_RATE, "— (0/0)")]


def positions(geometry: dict[str, Any]) -> Iterator[Sequence[float]]:
    def walk(coords: Any) -> Iterator[Sequence[float]]:
        if coords and isinstance(coords[0], (int, float)):
            yield coords
        else:
            for part in coords:
                yield from walk(part)

    yield from walk(geometry.get("coordinates", []))


def build_map(
    rows: list[dict[str, Any]],
    shapes: dict[str, dict[str, Any]],
    rate: str,
    static_root: str = "",
    basemap_url: str | None = None,
    basemap_attribution: str | None = None,
) -> folium.Map:
    """A Leaflet map of the rows' outlines coloured by ``rate``, loading nothing remote."""
    features = []
    for row in rows:
        geometry = shapes.get(CITY if row["level"] == "city" else row["code"])
        if geometry is None:
            continue
        features.append(
            {
                "type": "Feature",
                "id": row["code"] or CITY,
                "geometry": geometry,
                # the tooltip puts these into innerHTML as they are: escape them here
                "properties": {
                    "name": html.escape(row["name"] or ""),
                    "code": html.escape(row["code"] or ""),
                    "rate": html.escape(format_rate(row, rate)),
                    "fill": colour(row[rate]),
                },
            }
        )
    fmap = folium.Map(tiles=None, width="100%", height="480px", control_scale=True)
    fmap.default_js = [("leaflet", static_root + LEAFLET_JS)]
    fmap.default_css = [("leaflet_css", static_root + LEAFLET_CSS)]
    if basemap_url:
        attribution = basemap_attribution or f"Basemap {urlsplit(basemap_url).netloc}"
        folium.TileLayer(basemap_url, attr=html.escape(attribution), name="basemap").add_to(fmap)
    if features:
        folium.GeoJson(
            {"type": "FeatureCollection", "features": features},
            name=RATE_TITLES[rate],
            style_function=lambda f: {
                "fillColor": f["properties"]["fill"],
                "fillOpacity": 0.7,
                "color": "#333333",
                "weight": 1,
            },
            highlight_function=lambda f: {"weight": 3, "fillOpacity": 0.85},
            tooltip=folium.GeoJsonTooltip(
                ["name", "code", "rate"], aliases=["名称", "代码", RATE_TITLES[rate]]
            ),
        ).add_to(fmap)
        lons, lats = zip(*(p[:2] for f in features for p in positions(f["geometry"])), strict=True)
        fmap.fit_bounds([[min(lats), min(lons)], [max(lats), max(lons)]])
    return fmap


PAGE_STYLE = """
<style>
  .report { font-family: system-ui, sans-serif; padding: 0.5rem 1rem 2rem; }
  .report h1 { font-size: 1.3rem; margin: 0.3rem 0; }
  .report nav a, .report nav strong { margin-right: 0.8rem; }
  .report .key span { display: inline-block; margin-right: 0.8rem; font-size: 0.9rem; }
  .report .key i { display: inline-block; width: 1rem; height: 0.8rem; margin-right: 0.2rem;
                   border: 1px solid #666; vertical-align: middle; }
  .report table { border-collapse: collapse; margin-top: 1rem; }
  .report th, .report td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; }
  .report td.rate { text-align: right; white-space: nowrap; }
</style>
"""

HEAD = Environment(autoescape=True).from_string(
    """
<div class="report">
  <h1>一标三实 coverage report · {{ level }}{% if code %} {{ code }}{% endif %}
      · as of {{ as_of }}</h1>
  <nav>map:
    {% for name, title, href in rate_links %}
      {% if name == rate %}<strong>{{ title }}</strong>{% else %}
      <a href="{{ href }}">{{ title }}</a>{% endif %}
    {% endfor %}
    · <a href="{{ csv_href }}">CSV</a> <a href="{{ json_href }}">JSON</a>
  </nav>
  <p class="key">{% for hex, label in legend %}<span><i style="background: {{ hex }}"></i>
    {{ label }}</span>{% endfor %}{% if missing %}<span>no boundary: {{ missing }}</span>
    {% endif %}</p>
</div>
"""
)

TABLE = Environment(autoescape=True).from_string(
    """
<div class="report">
  <table>
    <thead><tr><th>代码 code</th><th>名称 name</th>
      {% for title in titles %}<th>{{ title }}</th>{% endfor %}</tr></thead>
    <tbody>
    {% for row in rows %}<tr><td>{{ row.code or "" }}</td><td>{{ row.name or "" }}</td>
      {% for cell, hex in row.cells %}<td class="rate"
        {% if hex %}style="background: {{ hex }}"{% endif %}>{{ cell }}</td>{% endfor %}</tr>
    {% endfor %}
    </tbody>
  </table>
</div>
"""
)


class AfterMap(MacroElement):
    """Raw HTML placed in the page body after the map (folium adds the map's div late)."""

    _template = Template("{% macro html(this, kwargs) %}{{ this.markup }}{% endmacro %}")

    def __init__(self, markup: str) -> None:
        super().__init__()
        self.markup = markup


def coverage_page(
    rows: list[dict[str, Any]],
    shapes: dict[str, dict[str, Any]],
    *,
    level: Level,
    code: str | None,
    as_of: dt.date,
    rate: str,
    static_root: str = "",
    basemap_url: str | None = None,
    basemap_attribution: str | None = None,
) -> str:
    """The whole HTML page: heading, rate switch, key, the map, then the table."""
    fmap = build_map(rows, shapes, rate, static_root, basemap_url, basemap_attribution)
    figure = fmap.get_root()
    params = {"level": level, "as_of": as_of.isoformat()} | ({"code": code} if code else {})
    missing = [
        row["name"] or row["code"]
        for row in rows
        if shapes.get(CITY if level == "city" else row["code"]) is None
    ]
    figure.header.add_child(Element(f"<title>coverage {level} {as_of}</title>{PAGE_STYLE}"))
    figure.html.add_child(
        Element(
            HEAD.render(
                level=level,
                code=code,
                as_of=as_of.isoformat(),
                rate=rate,
                rate_links=[
                    (name, title, "?" + urlencode(params | {"f": "html", "rate": name}))
                    for name, title in RATE_TITLES.items()
                ],
                csv_href="?" + urlencode(params | {"f": "csv"}),
                json_href="?" + urlencode(params | {"f": "json"}),
                legend=legend(),
                missing=", ".join(str(m) for m in missing),
            )
        )
    )
    table_rows = [
        {
            "code": row["code"],
            "name": row["name"],
            "cells": [
                (format_rate(row, name), colour(row[name]) if name == rate else None)
                for name in RATES
            ],
        }
        for row in rows
    ]
    figure.add_child(AfterMap(TABLE.render(titles=RATE_TITLES.values(), rows=table_rows)))
    return figure.render()
