"""Maps for the analysis notebooks: folium maps that work offline and matplotlib choropleths.

The folium maps inline the Leaflet vendored in ``api/static/vendor/leaflet`` (script and
stylesheet) instead of loading folium's CDN assets, and have no base layer, so a saved
notebook or HTML report shows them with no network (the approach of ``api/report_map.py``).
"""

from __future__ import annotations

import html
import math
from functools import cache
from pathlib import Path
from typing import Any

import folium
from branca.element import Element

from api.report_map import CLASSES, FULL, NO_RATE, colour, legend

LEAFLET_DIR = Path(__file__).resolve().parents[1] / "api" / "static" / "vendor" / "leaflet"


@cache
def leaflet_assets() -> str:
    """The vendored Leaflet script and stylesheet as inline ``<script>``/``<style>``."""
    script = (LEAFLET_DIR / "leaflet.js").read_text(encoding="utf-8")
    style = (LEAFLET_DIR / "leaflet.css").read_text(encoding="utf-8")
    # a literal "</script>" in the source would end the element early
    script = script.replace("</script", "<\\/script")
    return f"<style>{style}</style>\n<script>{script}</script>"


def offline_map(height: str = "460px") -> folium.Map:
    """An empty folium map that loads nothing remote: inline Leaflet, no tiles."""
    fmap = folium.Map(tiles=None, width="100%", height=height, control_scale=True)
    fmap.default_js = []
    fmap.default_css = []
    fmap.get_root().header.add_child(Element(leaflet_assets()), name="leaflet_inline")
    return fmap


def _features(gdf: Any, fields: list[str]) -> dict[str, Any]:
    """A GeoJSON FeatureCollection (lon/lat) of the rows with a geometry, string properties
    HTML-escaped (folium's tooltips put them into innerHTML as they are)."""
    shown = gdf[gdf.geometry.notna() & ~gdf.geometry.is_empty]
    if shown.crs is not None and shown.crs.to_epsg() not in (4490, 4326):
        shown = shown.to_crs(4490)
    features = []
    for _, row in shown.iterrows():
        props = {}
        for field in fields:
            value = row[field]
            if isinstance(value, float) and math.isnan(value):
                value = None
            props[field] = html.escape(str(value)) if isinstance(value, str) else value
        features.append(
            {"type": "Feature", "geometry": row.geometry.__geo_interface__, "properties": props}
        )
    return {"type": "FeatureCollection", "features": features}


def _fit(fmap: folium.Map, layers: list[Any]) -> None:
    bounds = [layer.total_bounds for layer in layers if len(layer) and layer.geometry.notna().any()]
    bounds = [b for b in bounds if all(math.isfinite(v) for v in b)]
    if bounds:
        west = min(b[0] for b in bounds)
        south = min(b[1] for b in bounds)
        east = max(b[2] for b in bounds)
        north = max(b[3] for b in bounds)
        fmap.fit_bounds([[south, west], [north, east]])


def to_lonlat(gdf: Any) -> Any:
    """``gdf`` in EPSG:4490 (drawn as WGS84: a zero shift)."""
    if gdf.crs is not None and gdf.crs.to_epsg() not in (4490, 4326):
        return gdf.to_crs(4490)
    return gdf


def choropleth(communities: Any, rate: str, title: str | None = None) -> folium.Map:
    """An offline folium map of the community boundaries coloured by ``rate`` (0–1)."""
    communities = to_lonlat(communities)
    fmap = offline_map()
    fields = [f for f in ("code", "name", rate) if f in communities.columns]
    data = communities[[*fields, "geometry"]].copy()
    data["shown"] = [
        "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.1%}"
        for value in data[rate]
    ]
    data["fill"] = [
        colour(None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
        for v in data[rate]
    ]
    collection = _features(data, [*fields[:2], "shown", "fill"])
    if collection["features"]:
        folium.GeoJson(
            collection,
            name=title or rate,
            style_function=lambda f: {
                "fillColor": f["properties"]["fill"],
                "fillOpacity": 0.7,
                "color": "#333333",
                "weight": 1,
            },
            tooltip=folium.GeoJsonTooltip(
                [*fields[:2], "shown"],
                aliases=[*({"code": "代码", "name": "名称"}[f] for f in fields[:2]), title or rate],
            ),
        ).add_to(fmap)
    _fit(fmap, [communities])
    return fmap


def layers_map(layers: list[tuple[str, Any, str]], outline: Any | None = None) -> folium.Map:
    """An offline folium map of several GeoDataFrames, each ``(name, gdf, colour)``; points
    are drawn as circle markers. ``outline`` (e.g. the community boundary) is drawn grey."""
    fmap = offline_map()
    drawn = []
    if outline is not None and len(outline):
        outline = to_lonlat(outline)
        folium.GeoJson(
            _features(outline, []),
            name="boundary",
            style_function=lambda f: {"fill": False, "color": "#666666", "weight": 2},
        ).add_to(fmap)
        drawn.append(outline)
    for name, gdf, hex_colour in layers:
        gdf = to_lonlat(gdf)
        fields = [c for c in gdf.columns if c != "geometry" and gdf[c].dtype == object][:4]
        collection = _features(gdf, fields)
        if not collection["features"]:
            continue
        folium.GeoJson(
            collection,
            name=name,
            style_function=lambda f, c=hex_colour: {
                "fillColor": c,
                "color": c,
                "fillOpacity": 0.5,
                "weight": 1,
            },
            marker=folium.CircleMarker(radius=4, fill=True),
            tooltip=folium.GeoJsonTooltip(fields) if fields else None,
        ).add_to(fmap)
        drawn.append(gdf)
    folium.LayerControl().add_to(fmap)
    _fit(fmap, drawn)
    return fmap


def static_choropleth(communities: Any, rate: str, title: str | None = None, ax: Any = None):
    """A matplotlib choropleth of ``rate`` with the classes of the web report."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 7))
    shown = communities[communities.geometry.notna()]
    fills = [
        colour(None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
        for v in shown[rate]
    ]
    if len(shown):
        shown.plot(ax=ax, color=fills, edgecolor="#333333", linewidth=0.6)
        for _, row in shown.iterrows():
            point = row.geometry.representative_point()
            ax.annotate(str(row["code"])[-3:], (point.x, point.y), ha="center", fontsize=7)
    ax.legend(
        handles=[Patch(facecolor=c, edgecolor="#666", label=label) for c, label in legend()],
        loc="lower left",
        fontsize=7,
    )
    ax.set_title(title or rate)
    ax.set_axis_off()
    return ax


__all__ = [
    "CLASSES",
    "FULL",
    "NO_RATE",
    "choropleth",
    "layers_map",
    "leaflet_assets",
    "offline_map",
    "static_choropleth",
    "to_lonlat",
]
