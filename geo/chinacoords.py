"""Conversions between WGS84/CGCS2000 and the Chinese web-map systems GCJ-02 and BD-09.

GCJ-02 (高德, 腾讯) adds a published, deterministic but non-invertible-in-closed-form offset of a
few hundred metres to WGS84; BD-09 (百度) applies a further small distortion and shift on top of
GCJ-02. For our purpose CGCS2000 (EPSG:4490) and WGS84 (EPSG:4326) are the same (PROJ applies
a zero shift), so "WGS84" below means either.

The forward formulas are the well-known published ones. The inverses are computed by fixed-point
iteration on the forward formula, which converges to far below a millimetre; the common one-step
inverses are off by metres, which is too much for building footprints.

All functions take ``(lon, lat)`` in that order (scalars or array-likes, broadcast together)
and return ``(lon, lat)``: floats for scalar input, float arrays otherwise. Unlike the classic
implementations, which silently return points outside China unchanged, points outside
China's extent raise :class:`OutsideChinaError`, and input that looks like ``(lat, lon)``
raises :class:`SwappedAxesError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import shapely
from shapely.geometry.base import BaseGeometry

from geo.extent import EXTENT_TEXT, in_china, looks_swapped

__all__ = [
    "SUPPORTED_CRS",
    "OutsideChinaError",
    "SwappedAxesError",
    "bd09_to_gcj02",
    "bd09_to_wgs84",
    "from_wgs84",
    "gcj02_to_bd09",
    "gcj02_to_wgs84",
    "to_wgs84",
    "wgs84_to_bd09",
    "wgs84_to_gcj02",
]

#: CRS names a bundle may declare; the first two need no conversion.
SUPPORTED_CRS: tuple[str, ...] = ("EPSG:4490", "EPSG:4326", "GCJ-02", "BD-09")

# Krasovsky 1940 ellipsoid, as used by the GCJ-02 formula.
_A = 6378245.0
_EE = 0.00669342162296594323
_X_PI = np.pi * 3000.0 / 180.0
# Inverse iteration stops once the largest correction is below this (about 1e-5 m).
_TOL_DEG = 1e-10
_MAX_ITER = 30

Coord = float | npt.NDArray[np.float64]
_FloatArray = npt.NDArray[np.float64]
_Geom = TypeVar("_Geom", BaseGeometry, npt.NDArray[np.object_])


class OutsideChinaError(ValueError):
    """A point lies outside China's extent, where GCJ-02/BD-09 are undefined."""

    def __init__(self, message: str, index: int, lon: float, lat: float) -> None:
        super().__init__(message)
        self.index = index
        self.lon = lon
        self.lat = lat


class SwappedAxesError(OutsideChinaError):
    """The input looks like ``(lat, lon)`` although ``(lon, lat)`` was expected."""


# --- raw formulas on float arrays, no validation -------------------------------------------


def _gcj02_offset(lon: _FloatArray, lat: _FloatArray) -> tuple[_FloatArray, _FloatArray]:
    """GCJ-02 minus WGS84, in degrees, evaluated at the WGS84 point."""
    x = lon - 105.0
    y = lat - 35.0
    sqrt_abs_x = np.sqrt(np.abs(x))
    # Terms shared by both axes.
    common = (20.0 * np.sin(6.0 * x * np.pi) + 20.0 * np.sin(2.0 * x * np.pi)) * 2.0 / 3.0

    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * sqrt_abs_x + common
    dlat += (20.0 * np.sin(y * np.pi) + 40.0 * np.sin(y / 3.0 * np.pi)) * 2.0 / 3.0
    dlat += (160.0 * np.sin(y / 12.0 * np.pi) + 320.0 * np.sin(y * np.pi / 30.0)) * 2.0 / 3.0

    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * sqrt_abs_x + common
    dlon += (20.0 * np.sin(x * np.pi) + 40.0 * np.sin(x / 3.0 * np.pi)) * 2.0 / 3.0
    dlon += (150.0 * np.sin(x / 12.0 * np.pi) + 300.0 * np.sin(x / 30.0 * np.pi)) * 2.0 / 3.0

    # The offsets above are in metres on the Krasovsky ellipsoid; scale them to degrees.
    rad_lat = lat / 180.0 * np.pi
    magic = 1.0 - _EE * np.sin(rad_lat) ** 2
    sqrt_magic = np.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1.0 - _EE)) / (magic * sqrt_magic) * np.pi)
    dlon = (dlon * 180.0) / (_A / sqrt_magic * np.cos(rad_lat) * np.pi)
    return dlon, dlat


def _wgs84_to_gcj02(lon: _FloatArray, lat: _FloatArray) -> tuple[_FloatArray, _FloatArray]:
    dlon, dlat = _gcj02_offset(lon, lat)
    return lon + dlon, lat + dlat


def _gcj02_to_bd09(lon: _FloatArray, lat: _FloatArray) -> tuple[_FloatArray, _FloatArray]:
    z = np.hypot(lon, lat) + 0.00002 * np.sin(lat * _X_PI)
    theta = np.arctan2(lat, lon) + 0.000003 * np.cos(lon * _X_PI)
    return z * np.cos(theta) + 0.0065, z * np.sin(theta) + 0.006


def _wgs84_to_bd09(lon: _FloatArray, lat: _FloatArray) -> tuple[_FloatArray, _FloatArray]:
    return _gcj02_to_bd09(*_wgs84_to_gcj02(lon, lat))


_Forward = Callable[[_FloatArray, _FloatArray], tuple[_FloatArray, _FloatArray]]


def _invert(
    forward: _Forward, lon: _FloatArray, lat: _FloatArray
) -> tuple[_FloatArray, _FloatArray]:
    """Solve ``forward(x) == (lon, lat)`` by fixed-point iteration starting at the target.

    Each forward transform is the identity plus a slowly varying offset, so
    ``x <- x - (forward(x) - target)`` contracts quickly (a handful of iterations).
    """
    guess_lon, guess_lat = lon.copy(), lat.copy()
    for _ in range(_MAX_ITER):
        fwd_lon, fwd_lat = forward(guess_lon, guess_lat)
        corr_lon = fwd_lon - lon
        corr_lat = fwd_lat - lat
        guess_lon -= corr_lon
        guess_lat -= corr_lat
        if corr_lon.size == 0 or max(np.abs(corr_lon).max(), np.abs(corr_lat).max()) < _TOL_DEG:
            return guess_lon, guess_lat
    raise RuntimeError(f"inverse transform did not converge in {_MAX_ITER} iterations")


# --- validation and public API ----------------------------------------------------------------


def _checked(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[_FloatArray, _FloatArray]:
    """Broadcast to float arrays and reject points outside China or with swapped axes."""
    lon_a, lat_a = np.broadcast_arrays(np.asarray(lon, dtype=float), np.asarray(lat, dtype=float))
    inside = in_china(lon_a, lat_a)
    if not inside.all():
        index = int(np.argmax(~inside.ravel()))
        x = float(lon_a.ravel()[index])
        y = float(lat_a.ravel()[index])
        if looks_swapped(x, y):
            raise SwappedAxesError(
                f"point at index {index} (lon={x}, lat={y}) is outside China's extent "
                f"({EXTENT_TEXT}) and the input looks like (lat, lon); pass (lon, lat)",
                index,
                x,
                y,
            )
        raise OutsideChinaError(
            f"point at index {index} (lon={x}, lat={y}) is outside China's extent "
            f"({EXTENT_TEXT}); GCJ-02/BD-09 are only defined inside China",
            index,
            x,
            y,
        )
    # broadcast_arrays returns read-only views; the inverse updates its guess in place.
    return np.array(lon_a), np.array(lat_a)


def _public(func: _Forward, lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[Coord, Coord]:
    lon_a, lat_a = _checked(lon, lat)
    out_lon, out_lat = func(lon_a, lat_a)
    if out_lon.ndim == 0:
        return float(out_lon), float(out_lat)
    return out_lon, out_lat


def wgs84_to_gcj02(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[Coord, Coord]:
    """WGS84/CGCS2000 -> GCJ-02 (高德/腾讯)."""
    return _public(_wgs84_to_gcj02, lon, lat)


def gcj02_to_bd09(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[Coord, Coord]:
    """GCJ-02 -> BD-09 (百度)."""
    return _public(_gcj02_to_bd09, lon, lat)


def wgs84_to_bd09(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[Coord, Coord]:
    """WGS84/CGCS2000 -> BD-09, via GCJ-02."""
    return _public(_wgs84_to_bd09, lon, lat)


def gcj02_to_wgs84(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[Coord, Coord]:
    """GCJ-02 -> WGS84/CGCS2000, iterated to well below 1 mm."""
    return _public(lambda x, y: _invert(_wgs84_to_gcj02, x, y), lon, lat)


def bd09_to_gcj02(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[Coord, Coord]:
    """BD-09 -> GCJ-02, iterated to well below 1 mm."""
    return _public(lambda x, y: _invert(_gcj02_to_bd09, x, y), lon, lat)


def bd09_to_wgs84(lon: npt.ArrayLike, lat: npt.ArrayLike) -> tuple[Coord, Coord]:
    """BD-09 -> WGS84/CGCS2000, inverting the composed transform in one iteration loop."""
    return _public(lambda x, y: _invert(_wgs84_to_bd09, x, y), lon, lat)


# --- geometries -------------------------------------------------------------------------------

_TO_WGS84: dict[str, _Forward | None] = {
    "EPSG:4490": None,
    "EPSG:4326": None,
    "GCJ-02": lambda x, y: _invert(_wgs84_to_gcj02, x, y),
    "BD-09": lambda x, y: _invert(_wgs84_to_bd09, x, y),
}
_FROM_WGS84: dict[str, _Forward | None] = {
    "EPSG:4490": None,
    "EPSG:4326": None,
    "GCJ-02": _wgs84_to_gcj02,
    "BD-09": _wgs84_to_bd09,
}


def _lookup(table: dict[str, _Forward | None], crs: str) -> _Forward | None:
    key = crs.strip().upper() if isinstance(crs, str) else crs
    if key not in table:
        raise ValueError(f"unsupported CRS {crs!r}; expected one of {', '.join(SUPPORTED_CRS)}")
    return table[key]


def _transform_geometry(geometry: _Geom, func: _Forward) -> _Geom:
    def on_coords(coords: _FloatArray) -> _FloatArray:
        lon, lat = _checked(coords[:, 0], coords[:, 1])
        return np.column_stack(func(lon, lat))

    return shapely.transform(geometry, on_coords)


def to_wgs84(geometry: _Geom, crs: str) -> _Geom:
    """Return ``geometry`` (or an array of geometries) in WGS84/CGCS2000 from bundle ``crs``.

    EPSG:4490 and EPSG:4326 input is returned as is. Converted output is 2D. Raises
    OutsideChinaError/SwappedAxesError for vertices outside China (index = vertex position).
    """
    func = _lookup(_TO_WGS84, crs)
    return geometry if func is None else _transform_geometry(geometry, func)


def from_wgs84(geometry: _Geom, crs: str) -> _Geom:
    """Return WGS84/CGCS2000 ``geometry`` expressed in ``crs``; the inverse of :func:`to_wgs84`."""
    func = _lookup(_FROM_WGS84, crs)
    return geometry if func is None else _transform_geometry(geometry, func)
