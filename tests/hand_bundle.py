"""A small bundle drawn by hand in metres, whose rates are worked out in test_rates.py.

Shapes are given in a local metric frame (x east, y north, metres from an origin near
光谷, 114.40 E 30.50 N) and projected to EPSG:4490 through CGCS2000 / 3-degree
Gauss-Kruger CM 114E (EPSG:4547), so the distances and areas in the docstrings hold
on the ground to well under a centimetre per metre.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import Transformer
from shapely import Point, box
from shapely.geometry import mapping
from shapely.geometry.base import BaseGeometry

from geo.chinacoords import from_wgs84
from registry.idnumber import check_character
from registry.uscc import make_uscc

_TO_GK = Transformer.from_crs("EPSG:4490", "EPSG:4547", always_xy=True)
_FROM_GK = Transformer.from_crs("EPSG:4547", "EPSG:4490", always_xy=True)
ORIGIN = _TO_GK.transform(114.40, 30.50)
AS_OF = "2026-06-30"
# when the bundle's content became true (bundle.json): rates as of AS_OF read the history
VALID_FROM = "2026-01-01"


def lonlat(geom: BaseGeometry) -> BaseGeometry:
    """Local metres -> EPSG:4490 longitude/latitude."""

    def to_lonlat(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(_FROM_GK.transform(xy[:, 0] + ORIGIN[0], xy[:, 1] + ORIGIN[1]))

    return shapely.transform(geom, to_lonlat)


def square(x0: float, y0: float, x1: float, y1: float) -> BaseGeometry:
    return lonlat(box(x0, y0, x1, y1))


def at(x: float, y: float) -> BaseGeometry:
    return lonlat(Point(x, y))


def id_number(seq: int, birth: str = "19800101", region: str = "420111") -> str:
    first17 = f"{region}{birth}{seq:03d}"
    return first17 + check_character(first17)


STREET = ("420111002", "关山街道")
OTHER_STREET = ("420111003", "花山街道")
DISTRICT = ("420111", "洪山区")

COMMUNITIES = [
    # C1 甲社区: x 0..1000, y 0..1000;  C2 乙社区: x 1000..2000;  C3 丙社区: no boundary
    ("420111002001", "甲社区", STREET, square(0, 0, 1000, 1000)),
    ("420111002002", "乙社区", STREET, square(1000, 0, 2000, 1000)),
    ("420111003001", "丙社区", OTHER_STREET, None),
]

BUILDINGS = [
    # id, community, footprint, status
    ("B1", "420111002001", square(100, 100, 140, 140), "in_use"),
    ("B2", "420111002001", square(200, 100, 240, 140), "in_use"),
    ("B3", "420111002001", square(300, 100, 318, 140), "in_use"),
    ("B4", "420111002001", square(322, 100, 340, 140), "in_use"),
    ("B5", "420111002001", square(400, 100, 440, 140), "demolished"),
    ("B6", "420111002001", None, "in_use"),
    ("B7", "420111002001", square(500, 100, 540, 140), "under_construction"),
    ("B8", "420111002001", square(1100, 100, 1140, 140), "in_use"),  # drawn inside C2
    ("B21", "420111002002", square(1300, 100, 1340, 140), "in_use"),
]

ADDRESSES = [
    # code, community, building, door plate
    ("A1", "420111002001", "B1", at(120, 95)),  # 5 m south of B1
    ("A2", "420111002001", "B2", at(220, 340)),  # 200 m north of B2
    ("A3", "420111002001", "B3", at(309, 175)),  # 35 m north of B3
    ("A4", "420111002001", "B4", None),  # no door plate
    ("A6", "420111002001", "B6", at(700, 700)),  # B6 has no footprint
    ("A7", "420111002001", "B7", at(520, 120)),  # inside B7
    ("A8", "420111002001", "B8", at(1120, 165)),  # 25 m north of B8
    ("A21", "420111002002", "B21", at(1320, 90)),  # 10 m south of B21
    ("A99", "420111002001", None, at(50, 50)),  # names no building
]

FOOTPRINTS = [
    ("F1", box(100, 100, 140, 140)),  # = B1
    ("F2", box(200, 100, 240, 160)),  # B2 covers 1600 of 2400 m2
    ("F3", box(300, 100, 340, 140)),  # B3 and B4 each cover 45 %, together 90 %
    ("F5", box(400, 100, 440, 140)),  # only demolished B5
    ("F7", box(500, 100, 540, 200)),  # B7 covers 1600 of 4000 m2
    ("F8", box(600, 100, 640, 140)),  # no building
    ("F9", box(1100, 100, 1140, 140)),  # in C2, covered by C1's B8
    ("F21", box(1300, 100, 1340, 140)),  # = B21
]

ROOMS = [
    # id, building, unit, floor, number
    ("R1", "B1", "1", "3", "301"),
    ("R2", "B1", "1", "4", "401"),
    ("R5", "B5", "", "1", "101"),
    ("R6", "B6", "2", "2", "202"),
    ("R21", "B21", "1", "1", "101"),
]

RESIDENTS = [
    # id number, name, community, room, category, moved in, moved out
    (id_number(1), "测试甲", "420111002001", "R1", "household", "2020-01-01", ""),
    (id_number(3), "测试乙", "420111002001", "R2", "floating", "2021-05-01", "2026-01-01"),
    (id_number(5), "测试丙", "420111002001", "R2", "household", "2022-01-01", "2026-12-31"),
    (id_number(7), "测试丁", "420111002001", "", "floating", "", ""),
    (id_number(9), "测试戊", "420111002001", "R6", "household", "", ""),
    (id_number(11), "测试己", "420111002001", "R5", "other", "", ""),
    (id_number(13), "测试庚", "420111002001", "R1", "overseas", "2025-01-01", AS_OF),
    (id_number(15), "测试辛", "420111002002", "R21", "household", "", ""),
    (id_number(17), "测试壬", "420111002002", "R1", "household", "2024-03-01", ""),
]


def uscc(serial: int) -> str:
    return make_uscc("420111", serial)


ORGANIZATIONS = [
    # uscc, name, community, room, building, category, opened, closed  (as of 2026-06-30)
    (uscc(1), "甲商店", "420111002001", "R1", "", "retail", "2019-03-01", ""),  # B1: on map
    (uscc(2), "乙诊所", "420111002001", "", "B6", "clinic", "", ""),  # B6 has no footprint
    (uscc(3), "丙饭店", "420111002001", "", "B1", "catering", "2018-01-01", "2026-01-01"),  # closed
    (uscc(4), "丁书店", "420111002001", "", "B2", "retail", "2026-07-01", ""),  # opens later
    (uscc(5), "戊公司", "420111002001", "", "", "company", "", ""),  # placed nowhere
    (uscc(6), "己网吧", "420111002001", "", "B2", "leisure", "2020-01-01", AS_OF),  # closes D
    (uscc(7), "庚仓库", "420111002001", "", "B5", "storage", "", ""),  # B5 demolished
    (uscc(8), "辛超市", "420111002002", "", "B21", "retail", AS_OF, ""),  # opens on D: active
    (uscc(9), "壬工作室", "420111002002", "R2", "", "office", "", ""),  # C2's, in C1's B1
]

EMPLOYEES = [
    # id number, name, uscc, position, started, ended
    (id_number(1), "测试甲", uscc(1), "店长", "2019-03-01", ""),  # also a resident (P1)
    (id_number(19), "测试癸", uscc(1), "店员", "2024-01-01", ""),  # an employee only
    (id_number(19), "测试癸", uscc(2), "护士", "2020-01-01", "2023-12-31"),
    (id_number(21), "测试子", uscc(8), "收银员", "", ""),
]


def feature(geometry: BaseGeometry | None, properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": mapping(geometry) if geometry is not None else None,
        "properties": properties,
    }


def write_geojson(path: Path, features: list[dict[str, Any]]) -> None:
    collection = {"type": "FeatureCollection", "features": features}
    path.write_text(json.dumps(collection, ensure_ascii=False), encoding="utf-8")


def write_csv(path: Path, header: list[str], rows: list[tuple], encoding: str = "utf-8") -> None:
    with path.open("w", newline="", encoding=encoding) as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)


def write_hand_bundle(out: Path, crs: str = "EPSG:4490", *, employees: bool = True) -> Path:
    """Write the hand-drawn bundle to ``out``; geometry is converted to ``crs``. Without
    ``employees`` its persons are the 9 residents only (no employees.csv)."""
    out.mkdir(parents=True, exist_ok=True)

    def convert(geom: BaseGeometry | None) -> BaseGeometry | None:
        return None if geom is None else from_wgs84(geom, crs)

    meta = {"name": "hand", "crs": crs, "valid_from": VALID_FROM}
    (out / "bundle.json").write_text(json.dumps(meta), encoding="utf-8")
    write_geojson(
        out / "communities.geojson",
        [
            feature(
                convert(boundary),
                {
                    "code": code,
                    "name": name,
                    "street_code": street[0],
                    "street_name": street[1],
                    "district_code": DISTRICT[0],
                    "district_name": DISTRICT[1],
                },
            )
            for code, name, street, boundary in COMMUNITIES
        ],
    )
    write_geojson(
        out / "buildings.geojson",
        [
            feature(convert(fp), {"id": bid, "community_code": cc, "floors": 6, "status": status})
            for bid, cc, fp, status in BUILDINGS
        ],
    )
    write_geojson(
        out / "addresses.geojson",
        [
            feature(
                convert(plate),
                {"code": code, "community_code": cc, "building_id": bid, "road": "珞喻路"},
            )
            for code, cc, bid, plate in ADDRESSES
        ],
    )
    write_geojson(
        out / "footprints.geojson",
        [
            feature(convert(lonlat(shape)), {"id": fid, "source": "hand"})
            for fid, shape in FOOTPRINTS
        ],
    )
    write_csv(out / "rooms.csv", ["id", "building_id", "unit", "floor", "number", "use"],
              [(*room, "residential") for room in ROOMS])  # fmt: skip
    write_csv(
        out / "residents.csv",
        ["id_number", "name", "community_code", "room_id", "category", "moved_in", "moved_out"],
        RESIDENTS,
    )
    write_csv(
        out / "organizations.csv",
        ["uscc", "name", "community_code", "room_id", "building_id", "category", "opened",
         "closed"],
        ORGANIZATIONS,
    )  # fmt: skip
    if employees:
        write_csv(
            out / "employees.csv",
            ["id_number", "name", "uscc", "position", "started", "ended"],
            EMPLOYEES,
        )
    return out
