"""The coordinate reference systems the API speaks, by OGC URI, with their axis order.

Storage is CGCS2000 (EPSG:4490) in longitude/latitude order, as PostGIS keeps every
geographic CRS. Output follows OGC API – Features Part 2: a CRS identified by an
``http://www.opengis.net/def/crs/EPSG/0/N`` URI uses the axis order that EPSG defines
(latitude first for 4326 and 4490, northing first for the Gauss–Krüger 4547), while
CRS84 is longitude first.
"""

from __future__ import annotations

from dataclasses import dataclass

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG_PREFIX = "http://www.opengis.net/def/crs/EPSG/0/"
STORAGE_SRID = 4490


@dataclass(frozen=True)
class Crs:
    uri: str
    srid: int
    swap_axes: bool
    """True when the CRS's first axis is north (latitude or northing): PostGIS's x/y swap."""


SUPPORTED: dict[str, Crs] = {
    crs.uri: crs
    for crs in (
        Crs(CRS84, 4326, swap_axes=False),
        Crs(EPSG_PREFIX + "4326", 4326, swap_axes=True),
        Crs(EPSG_PREFIX + "4490", 4490, swap_axes=True),
        Crs(EPSG_PREFIX + "3857", 3857, swap_axes=False),
        Crs(EPSG_PREFIX + "4547", 4547, swap_axes=True),
    )
}
DEFAULT = SUPPORTED[CRS84]
STORAGE_CRS = SUPPORTED[EPSG_PREFIX + "4490"]

ALIASES = {"CRS84": CRS84, "OGC:CRS84": CRS84, "[OGC:CRS84]": CRS84}


class UnknownCrsError(ValueError):
    """A CRS the API does not offer; the message lists the ones it does."""


def parse_crs(value: str) -> Crs:
    """The CRS named by an OGC URI, a safe CURIE ``[EPSG:4547]`` or ``EPSG:4547``."""
    text = value.strip()
    text = ALIASES.get(text, text)
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if text.upper().startswith("EPSG:"):
        text = EPSG_PREFIX + text[5:]
    text = text.replace("https://", "http://", 1)
    try:
        return SUPPORTED[text]
    except KeyError:
        offered = ", ".join(SUPPORTED)
        raise UnknownCrsError(f"unsupported CRS {value!r}; offered: {offered}") from None


def ordered(crs: Crs, x: float, y: float) -> tuple[float, float]:
    """Coordinates in ``crs``'s axis order from PostGIS's x (east) and y (north)."""
    return (y, x) if crs.swap_axes else (x, y)
