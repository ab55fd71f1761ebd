"""Pure geometry helpers: China web-map coordinate systems, extent checks, polygon repair.

Nothing here touches the database or HTTP layer, so it can be used and tested in isolation.
"""

from geo.chinacoords import (
    SUPPORTED_CRS,
    OutsideChinaError,
    SwappedAxesError,
    bd09_to_gcj02,
    bd09_to_wgs84,
    from_wgs84,
    gcj02_to_bd09,
    gcj02_to_wgs84,
    to_wgs84,
    wgs84_to_bd09,
    wgs84_to_gcj02,
)
from geo.extent import CHINA_BOUNDS, check_extent, in_china
from geo.polygons import (
    PointResult,
    PolygonResult,
    prepare_footprint,
    prepare_point,
    to_multipolygon,
)

__all__ = [
    "CHINA_BOUNDS",
    "SUPPORTED_CRS",
    "OutsideChinaError",
    "PointResult",
    "PolygonResult",
    "SwappedAxesError",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "check_extent",
    "from_wgs84",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "in_china",
    "prepare_footprint",
    "prepare_point",
    "to_multipolygon",
    "to_wgs84",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]
