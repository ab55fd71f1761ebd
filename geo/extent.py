"""China's coordinate extent, used to catch out-of-country and lat/lon-swapped data early.

The box is deliberately a plain bounding box (not a border polygon): it is only meant to catch
gross mistakes such as swapped axes, projected metres passed as degrees or a default (0, 0),
before the data reaches the GCJ-02/BD-09 conversions or the database.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

LON_MIN = 73.0
LON_MAX = 136.0
LAT_MIN = 3.0
LAT_MAX = 54.0
#: (minx, miny, maxx, maxy), the same order as ``shapely.bounds``.
CHINA_BOUNDS = (LON_MIN, LAT_MIN, LON_MAX, LAT_MAX)
EXTENT_TEXT = "73–136 E, 3–54 N"


def in_china(lon: npt.ArrayLike, lat: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Element-wise test whether (lon, lat) lies inside China's extent; NaN is outside."""
    lon_a = np.asarray(lon, dtype=float)
    lat_a = np.asarray(lat, dtype=float)
    return (lon_a >= LON_MIN) & (lon_a <= LON_MAX) & (lat_a >= LAT_MIN) & (lat_a <= LAT_MAX)


def looks_swapped(lon: npt.ArrayLike, lat: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Element-wise test whether (lon, lat) is outside China but (lat, lon) is inside.

    The two ranges do not overlap, so a point never both fits and looks swapped.
    """
    return in_china(lat, lon) & ~in_china(lon, lat)


def outside_reason(lon: float, lat: float) -> str:
    """Explain why one (lon, lat) coordinate is rejected, mentioning a likely axis swap."""
    reason = f"coordinate ({float(lon)}, {float(lat)}) is outside China's extent ({EXTENT_TEXT})"
    if looks_swapped(lon, lat):
        reason += "; latitude and longitude look swapped"
    return reason


def check_extent(geometry: BaseGeometry | None) -> str | None:
    """Return None if every vertex of ``geometry`` is inside China's extent, else the reason.

    Only the first offending vertex is reported. None and empty geometries pass.
    """
    if geometry is None:
        return None
    coords = shapely.get_coordinates(geometry)
    outside = ~in_china(coords[:, 0], coords[:, 1])
    if not outside.any():
        return None
    lon, lat = coords[np.argmax(outside)]
    return outside_reason(lon, lat)
