"""A deterministic synthetic city: bundles of any size for load, rate and scale tests.

Communities are square cells (640 m) laid out as a grid north-east of 114.30 E, 30.55 N,
with real NBS codes and names of Wuhan for the first 3,495 and consistent made-up codes
beyond. Each cell has a 4 x 4 street grid; every block is a compound of buildings
(rectangles and L shapes) on a grid of slots. Rooms, residents, addresses and reference
footprints follow, with gaps at fixed rates (see ``RATES``). The same arguments give a
byte-identical bundle. Everything is streamed to file with plain ``json`` and ``csv``.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import IO, Any

import numpy as np

from registry.idnumber import synthetic_id_number

ORIGIN = (114.30, 30.55)  # south-west corner of the first community
EXTENT = (113.7, 29.9, 115.1, 31.4)  # the grid, with far door plates, stays inside
CELL_M = 640.0
BLOCKS = 4  # blocks per cell side
ROAD_M = 16.0  # road width between blocks
M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON = 111_320.0 * math.cos(math.radians(ORIGIN[1]))
DLON, DLAT = CELL_M / M_PER_DEG_LON, CELL_M / M_PER_DEG_LAT
REFERENCE_DATE = dt.date(2026, 1, 1)  # fixed, so output does not depend on today
EPOCH = dt.date(1995, 1, 1)
PER_STREET = 30  # made-up communities per made-up street

RATES = {
    "null_geometry": 0.03,
    "demolished": 0.01,
    "under_construction": 0.01,
    "missing_from_reference": 0.05,
    "reference_only": 0.03,
    "addressed": 0.90,
    "far_plate": 0.02,
    "null_plate": 0.005,
    "moved_out": 0.07,
    "unplaced": 0.03,
}
USES = ("residential", "commercial", "office", "education", "industrial", "public")
USE_P = (0.75, 0.10, 0.06, 0.03, 0.03, 0.03)
CATEGORIES = ("household", "floating", "overseas", "other")
CATEGORY_P = (0.70, 0.25, 0.02, 0.03)
ROOMS_MEAN = 14.5  # per residential building (before the floors cap): ~10 per building
RESIDENTS_MEAN = 2.2  # per room
FAR_M = 200.0
WUHAN_REGIONS = (
    "420102", "420103", "420104", "420105", "420106", "420107", "420111", "420112",
    "420113", "420114", "420115", "420116", "420117",
)  # fmt: skip
FLOATING_REGIONS = (
    "421281", "420902", "421102", "420502", "420602", "421003", "430102", "410105",
    "360102", "340104", "500103", "510107", "441900", "320102", "330106", "371102",
)  # fmt: skip
PERMIT_REGIONS = ("810000", "820000", "830000")
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀霞平刚桂英华玉兰萍红建文辉力斌宇浩凯鹏晨欣"
ROAD_STEMS = (
    "和平", "解放", "建设", "友谊", "民主", "胜利", "光明", "幸福", "新华", "长丰",
    "汉江", "东湖", "青年", "工农", "团结", "振兴", "复兴", "兴业", "临江", "后湖",
)  # fmt: skip
COMPOUND_STEMS = (
    "金桥", "银湖", "锦绣", "翠微", "丽岛", "君悦", "绿洲", "融科",
    "美林", "枫叶", "桂园", "梅园", "竹苑", "兰亭", "荷塘", "柳岸",
)  # fmt: skip
COMPOUND_SUFFIXES = ("花园", "小区", "苑", "家园", "新村", "公寓", "雅居", "名都")


@dataclass(frozen=True)
class SynthSummary:
    """What was written: rows per layer, and the main gaps."""

    communities: int
    buildings: int
    footprints: int
    addresses: int
    rooms: int
    residents: int
    buildings_without_geometry: int
    demolished: int

    def __str__(self) -> str:
        return ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in self.__dict__.items())


@dataclass(frozen=True)
class CommunityRow:
    code: str
    name: str
    street_code: str
    street_name: str
    district_code: str
    district_name: str


@dataclass
class Counts:
    """Running totals for the summary."""

    buildings: int = 0
    footprints: int = 0
    addresses: int = 0
    rooms: int = 0
    residents: int = 0
    without_geometry: int = 0
    demolished: int = 0

    def add(self, other: Counts) -> None:
        for key, value in other.__dict__.items():
            setattr(self, key, getattr(self, key) + value)


# --- communities ------------------------------------------------------------------------


def short_name(name: str) -> str:
    """``XX社区居民委员会`` → ``XX社区``, ``XX村委会`` → ``XX村``; other names unchanged."""
    for suffix in ("村民委员会", "村委会"):
        if name.endswith(suffix):
            base = name.removesuffix(suffix)
            return base if base.endswith("村") else base + "村"
    return name.removesuffix("居民委员会").removesuffix("居委会")


def real_communities() -> list[CommunityRow]:
    """The 3,495 communities of Wuhan (NBS codes, see ``registry/data/ATTRIBUTION.md``)."""
    text = resources.files("registry").joinpath("data/wuhan_communities.csv").read_text("utf-8")
    return [
        CommunityRow(
            r["community_code"],
            short_name(r["community_name"]),
            r["street_code"],
            r["street_name"],
            r["district_code"],
            r["district_name"],
        )
        for r in csv.DictReader(io.StringIO(text))
    ]


def community_rows(n: int) -> list[CommunityRow]:
    """``n`` communities: the real ones first, then made-up streets (9xx) of real districts."""
    real = real_communities()
    districts = sorted({(r.district_code, r.district_name) for r in real})
    rows = real[:n]
    for j in range(n - len(rows)):
        street = j // PER_STREET
        district_code, district_name = districts[street % len(districts)]
        street_code = f"{district_code}{900 + street // len(districts):03d}"
        if street // len(districts) > 99:
            raise ValueError("too many communities for made-up street codes")
        code = f"{street_code}{j % PER_STREET + 1:03d}"
        rows.append(
            CommunityRow(
                code,
                f"合成{code[-6:]}社区",
                street_code,
                f"合成{street_code[-3:]}街道",
                district_code,
                district_name,
            )
        )
    return rows


def grid_columns(n: int) -> int:
    """Columns of the community grid (square-ish); raises if it would leave EXTENT."""
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    margin_lon, margin_lat = FAR_M * 2 / M_PER_DEG_LON, FAR_M * 2 / M_PER_DEG_LAT
    if (
        ORIGIN[0] + cols * DLON > EXTENT[2] - margin_lon
        or ORIGIN[1] + rows * DLAT > EXTENT[3] - margin_lat
    ):
        raise ValueError(f"{n} communities do not fit in the synthetic city's extent")
    return cols


# --- geometry ---------------------------------------------------------------------------


def ring_lonlat(xy: np.ndarray, lon0: float, lat0: float) -> list[list[float]]:
    """A closed GeoJSON ring from local metres (open ring, shape (k, 2)) at a cell corner."""
    lon = np.round(lon0 + xy[:, 0] / M_PER_DEG_LON, 7)
    lat = np.round(lat0 + xy[:, 1] / M_PER_DEG_LAT, 7)
    ring = np.column_stack([lon, lat]).tolist()
    return [*ring, ring[0]]


def point_lonlat(x: float, y: float, lon0: float, lat0: float) -> list[float]:
    """A GeoJSON position from local metres."""
    return [round(lon0 + x / M_PER_DEG_LON, 7), round(lat0 + y / M_PER_DEG_LAT, 7)]


def outline(rng: np.random.Generator, x0: float, y0: float, slot: float) -> np.ndarray:
    """A counter-clockwise rectangle or L shape inside a square slot (local metres)."""
    w, h = slot * rng.uniform(0.45, 0.85, 2)
    if rng.random() < 0.1:  # slab
        w, h = slot * rng.uniform(0.8, 0.9), slot * rng.uniform(0.3, 0.45)
    w, h = min(w, slot - 3.5), min(h, slot - 3.5)
    x = x0 + rng.uniform(1.5, slot - w - 1.5)
    y = y0 + rng.uniform(1.5, slot - h - 1.5)
    if rng.random() >= 0.25:
        return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]])
    cw, ch = w * rng.uniform(0.3, 0.6), h * rng.uniform(0.3, 0.6)
    shape = np.array([[cw, 0], [w, 0], [w, h], [0, h], [0, ch], [cw, ch]])
    corner = int(rng.integers(4))
    if corner & 1:  # mirror in x, keep counter-clockwise
        shape = np.column_stack([w - shape[:, 0], shape[:, 1]])[::-1]
    if corner & 2:  # mirror in y
        shape = np.column_stack([shape[:, 0], h - shape[:, 1]])[::-1]
    return shape + np.array([x, y])


def jittered(rng: np.random.Generator, xy: np.ndarray) -> np.ndarray:
    """A reference outline: the same shape moved by about 1 m, vertices by about 15 cm."""
    return xy + rng.normal(0, 0.7, 2) + rng.normal(0, 0.15, xy.shape)


def slot_grid(buildings: int) -> tuple[np.ndarray, float]:
    """Lower-left corners of the building slots of a cell, and the slot side in metres.

    Each block has k x k slots, with about 10% more slots than buildings.
    """
    k = max(1, math.ceil(math.sqrt(buildings * 1.1 / BLOCKS**2)))
    pitch = CELL_M / BLOCKS
    slot = (pitch - ROAD_M) / k
    corners = [
        (bi * pitch + ROAD_M / 2 + si * slot, bj * pitch + ROAD_M / 2 + sj * slot)
        for bj in range(BLOCKS)
        for bi in range(BLOCKS)
        for sj in range(k)
        for si in range(k)
    ]
    return np.array(corners), slot


# --- writers ----------------------------------------------------------------------------


class FeatureWriter:
    """Streams one GeoJSON FeatureCollection, one feature a line."""

    def __init__(self, path: Path) -> None:
        self.fh: IO[str] = path.open("w", encoding="utf-8", newline="\n")
        self.fh.write('{"type":"FeatureCollection","features":[\n')
        self.first = True

    def write(self, props: dict[str, Any], geometry: dict[str, Any] | None) -> None:
        feature = {"type": "Feature", "properties": props, "geometry": geometry}
        text = json.dumps(feature, ensure_ascii=False, separators=(",", ":"))
        self.fh.write(text if self.first else ",\n" + text)
        self.first = False

    def close(self) -> None:
        self.fh.write("\n]}\n")
        self.fh.close()


def polygon(ring: list[list[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": [ring]}


def point(xy: list[float]) -> dict[str, Any]:
    return {"type": "Point", "coordinates": xy}


# --- one community ----------------------------------------------------------------------


ROOM_FIELDS = ["id", "building_id", "unit", "floor", "number", "use"]
RESIDENT_FIELDS = [
    "id_number", "name", "community_code", "room_id", "category", "moved_in", "moved_out",
]  # fmt: skip


class Layers:
    """The open output files of a bundle: four GeoJSON writers and two CSV writers."""

    def __init__(self, out_dir: Path) -> None:
        self.communities = FeatureWriter(out_dir / "communities.geojson")
        self.buildings = FeatureWriter(out_dir / "buildings.geojson")
        self.footprints = FeatureWriter(out_dir / "footprints.geojson")
        self.addresses = FeatureWriter(out_dir / "addresses.geojson")
        self.files: list[IO[str]] = []
        self.rooms = self._csv(out_dir / "rooms.csv", ROOM_FIELDS)
        self.residents = self._csv(out_dir / "residents.csv", RESIDENT_FIELDS)

    def _csv(self, path: Path, header: list[str]) -> Any:
        fh = path.open("w", encoding="utf-8", newline="")
        self.files.append(fh)
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        return writer

    def close(self) -> None:
        for writer in (self.communities, self.buildings, self.footprints, self.addresses):
            writer.close()
        for fh in self.files:
            fh.close()


@dataclass
class Cell:
    """One community's grid cell: where it is and how its blocks are divided."""

    row: CommunityRow
    ci: int
    cj: int
    lon0: float
    lat0: float
    corners: np.ndarray
    slot: float
    compounds: list[str]

    @property
    def per_block(self) -> int:
        return len(self.corners) // BLOCKS**2

    def ring(self, xy: np.ndarray) -> dict[str, Any]:
        return polygon(ring_lonlat(xy, self.lon0, self.lat0))


@dataclass
class Plan:
    """The random choices for the buildings of one community, one array entry each."""

    slots: np.ndarray
    extra: np.ndarray  # slots of reference footprints with no registered building
    status: np.ndarray
    no_geometry: np.ndarray
    in_reference: np.ndarray
    uses: np.ndarray
    floors: np.ndarray
    plate: np.ndarray  # none | near | far | null


def make_cell(
    k: int, row: CommunityRow, cols: int, buildings: int, rng: np.random.Generator
) -> Cell:
    """Grid cell ``k`` (row-major from ORIGIN), its slots and its compound names."""
    ci, cj = k % cols, k // cols
    corners, slot = slot_grid(buildings)
    stems = rng.integers(len(COMPOUND_STEMS), size=BLOCKS**2).tolist()
    suffixes = rng.integers(len(COMPOUND_SUFFIXES), size=BLOCKS**2).tolist()
    compounds = [
        COMPOUND_STEMS[a] + COMPOUND_SUFFIXES[b] for a, b in zip(stems, suffixes, strict=True)
    ]
    return Cell(row, ci, cj, ORIGIN[0] + ci * DLON, ORIGIN[1] + cj * DLAT, corners, slot, compounds)


def make_plan(rng: np.random.Generator, n_slots: int, buildings: int) -> Plan:
    """Which slots hold buildings, and each building's status, gaps, use and floors."""
    order = rng.permutation(n_slots)
    n = min(buildings, n_slots)
    n_extra = int(rng.binomial(n, RATES["reference_only"]))
    status = np.full(n, "in_use", dtype=object)
    fate = rng.random(n)
    status[fate < RATES["demolished"]] = "demolished"
    status[
        (fate >= RATES["demolished"]) & (fate < RATES["demolished"] + RATES["under_construction"])
    ] = "under_construction"
    no_geometry = rng.random(n) < RATES["null_geometry"]
    in_reference = rng.random(n) >= RATES["missing_from_reference"]
    uses = rng.choice(len(USES), n, p=USE_P)
    floors = np.where(rng.random(n) < 0.8, 1 + rng.poisson(5, n), rng.integers(10, 34, n))
    u = rng.random(n)
    far, null = RATES["far_plate"], RATES["far_plate"] + RATES["null_plate"]
    plate = np.select(
        [u >= RATES["addressed"], u < far, u < null], ["none", "far", "null"], default="near"
    )
    return Plan(
        np.sort(order[:n]), np.sort(order[n : n + n_extra]), status, no_geometry,
        in_reference, uses, floors, plate,
    )  # fmt: skip


def building_id(code: str, i: int) -> str:
    """The id of the ``i``-th (from 0) building of community ``code``."""
    return f"B{code}{i + 1:04d}"


def road_name(index: int) -> str:
    """A made-up name of the ``index``-th east-west road of the city."""
    stem = ROAD_STEMS[index % len(ROAD_STEMS)]
    series = index // len(ROAD_STEMS)
    return f"{stem}{series + 1 if series else ''}路"


def address(
    cell: Cell, i: int, slot: int, xy: np.ndarray, kind: str, rng: np.random.Generator
) -> tuple:
    """Properties and door plate of building ``i``'s address.

    A block is a compound whose gate number is on the road south of it; the door plate is
    2 m south of the building, or about 200 m away (``far``), or missing (``null``).
    """
    block = slot // cell.per_block
    bi, bj = block % BLOCKS, block // BLOCKS
    cx, bottom = float(xy[:, 0].mean()), float(xy[:, 1].min())
    if kind == "far":
        angle = rng.uniform(0, 2 * math.pi)
        where = [cx + FAR_M * math.cos(angle), bottom + FAR_M * math.sin(angle)]
    else:
        where = [cx, bottom - 2.0]
    code = cell.row.code
    props = {
        "code": f"A{code}{i + 1:04d}",
        "community_code": code,
        "building_id": building_id(code, i),
        "road": road_name(cell.cj * BLOCKS + bj),
        "house_number": f"{2 * (cell.ci * BLOCKS + bi) + 1}号",
        "compound": cell.compounds[block],
        "building_no": f"{slot % cell.per_block + 1}栋",
    }
    return props, None if kind == "null" else point(point_lonlat(*where, cell.lon0, cell.lat0))


def write_community(cell: Cell, plan: Plan, layers: Layers, rng: np.random.Generator) -> Counts:
    """The community, its buildings, reference footprints and addresses; returns counts."""
    code = cell.row.code
    square = np.array([[0, 0], [CELL_M, 0], [CELL_M, CELL_M], [0, CELL_M]])
    layers.communities.write(cell.row.__dict__, cell.ring(square))
    counts = Counts(
        buildings=len(plan.slots),
        without_geometry=int(plan.no_geometry.sum()),
        demolished=int((plan.status == "demolished").sum()),
    )
    outlines = []
    for i, s in enumerate(plan.slots.tolist()):
        xy = outline(rng, *cell.corners[s], cell.slot)
        outlines.append(xy)
        props = {
            "id": building_id(code, i),
            "community_code": code,
            "floors": int(plan.floors[i]),
            "use": USES[plan.uses[i]],
            "status": plan.status[i],
        }
        layers.buildings.write(props, None if plan.no_geometry[i] else cell.ring(xy))
        if plan.plate[i] != "none":
            layers.addresses.write(*address(cell, i, s, xy, str(plan.plate[i]), rng))
            counts.addresses += 1
    references = [
        jittered(rng, xy) for xy, keep in zip(outlines, plan.in_reference, strict=True) if keep
    ]
    references += [outline(rng, *cell.corners[s], cell.slot) for s in plan.extra.tolist()]
    for n, xy in enumerate(references, start=1):
        layers.footprints.write(
            {"id": f"F{code}{n:04d}", "source": "synthetic survey"}, cell.ring(xy)
        )
    counts.footprints = len(references)
    return counts


# --- rooms and residents ----------------------------------------------------------------


class People:
    """Unique synthetic identity numbers (``random.Random(seed)``) and made-up names."""

    def __init__(self, seed: int) -> None:
        self.rnd = random.Random(seed)
        self.seen: set[int] = set()

    def id_number(self, region: str) -> str:
        while True:
            number = synthetic_id_number(self.rnd, region)
            key = int(number[:17])
            if key not in self.seen:
                self.seen.add(key)
                return number


def write_rooms_and_residents(
    row: CommunityRow,
    plan: Plan,
    layers: Layers,
    rng: np.random.Generator,
    people: People,
    counts: Counts,
) -> None:
    """Rooms of the residential buildings (floor by floor, 2 a unit) and their residents.

    Rooms are numbered like ``1502`` and registered from the ground floor up, about
    ``ROOMS_MEAN`` per building; residents of demolished buildings have all moved out.
    """
    chosen = np.flatnonzero((plan.uses == 0) & (plan.status != "under_construction"))
    building_ids = [building_id(row.code, i) for i in chosen.tolist()]
    floors = plan.floors[chosen]
    demolished = plan.status[chosen] == "demolished"
    nb = len(building_ids)
    units = rng.integers(1, 4, nb)
    capacity = units * floors * 2
    n_rooms = np.minimum(capacity, np.maximum(1, rng.poisson(ROOMS_MEAN, nb)))
    owner = np.repeat(np.arange(nb), n_rooms)
    idx = np.arange(len(owner)) - np.repeat(np.cumsum(n_rooms) - n_rooms, n_rooms)
    per_floor = units[owner] * 2
    floor = idx // per_floor + 1
    unit = (idx % per_floor) // 2 + 1
    number = [f"{f}{k + 1:02d}" for f, k in zip(floor.tolist(), (idx % 2).tolist(), strict=True)]
    room_ids = [
        f"{building_ids[b]}-{u}-{num}"
        for b, u, num in zip(owner.tolist(), unit.tolist(), number, strict=True)
    ]
    layers.rooms.writerows(
        zip(
            room_ids,
            (building_ids[b] for b in owner.tolist()),
            unit.tolist(),
            floor.tolist(),
            number,
            ["residential"] * len(room_ids),
            strict=True,
        )
    )
    counts.rooms += len(room_ids)

    per_room = rng.poisson(RESIDENTS_MEAN, len(room_ids))
    placed = np.repeat(np.arange(len(room_ids)), per_room)
    n_unplaced = int(rng.binomial(len(placed), RATES["unplaced"]))
    n = len(placed) + n_unplaced
    room_of = [room_ids[r] for r in placed.tolist()] + [""] * n_unplaced
    gone = np.concatenate([demolished[owner[placed]], np.zeros(n_unplaced, bool)])
    write_residents(row, room_of, gone, layers, rng, people)
    counts.residents += n


def write_residents(
    row: CommunityRow,
    room_of: list[str],
    gone: np.ndarray,
    layers: Layers,
    rng: np.random.Generator,
    people: People,
) -> None:
    """Residents with categories, dates and names; ``gone`` ones have all moved out."""
    n = len(room_of)
    category = rng.choice(len(CATEGORIES), n, p=CATEGORY_P)
    span = (REFERENCE_DATE - EPOCH).days
    moved_in = rng.integers(0, span - 1, n)
    leave = (rng.random(n) < RATES["moved_out"]) | gone
    moved_out = moved_in + 1 + ((span - 1 - moved_in) * rng.random(n)).astype(np.int64)
    epoch = np.datetime64(EPOCH.isoformat())
    in_text = (epoch + moved_in).astype(str).tolist()
    out_text = np.where(leave, (epoch + moved_out).astype(str), "").tolist()
    home = rng.random(n) < 0.85
    local = rng.integers(len(WUHAN_REGIONS), size=n).tolist()
    floating = rng.integers(len(FLOATING_REGIONS), size=n).tolist()
    permit = rng.integers(len(PERMIT_REGIONS), size=n).tolist()
    surname = rng.integers(len(SURNAMES), size=n).tolist()
    given = rng.integers(len(GIVEN), size=(n, 2)).tolist()
    two = (rng.random(n) < 0.7).tolist()
    rows = []
    for i, c in enumerate(category.tolist()):
        if c == 1:
            region = FLOATING_REGIONS[floating[i]]
        elif c == 2:
            region = PERMIT_REGIONS[permit[i]]
        else:
            region = row.district_code if home[i] else WUHAN_REGIONS[local[i]]
        g = given[i]
        name = SURNAMES[surname[i]] + GIVEN[g[0]] + (GIVEN[g[1]] if two[i] else "")
        rows.append(
            (people.id_number(region), name, row.code, room_of[i], CATEGORIES[c], in_text[i],
             out_text[i])
        )  # fmt: skip
    layers.residents.writerows(rows)


# --- the bundle -------------------------------------------------------------------------


def write_synthetic_bundle(
    out_dir: Path, communities: int, seed: int, buildings_per_community: int = 400
) -> SynthSummary:
    """Write a synthetic city of ``communities`` communities as a bundle in ``out_dir``."""
    if communities < 1 or buildings_per_community < 1:
        raise ValueError("communities and buildings_per_community must be at least 1")
    cols = grid_columns(communities)
    rows = community_rows(communities)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "bundle.json").write_text(
        json.dumps(
            {"name": f"synthetic city, {communities} communities, seed {seed}", "crs": "EPSG:4490"},
            ensure_ascii=False,
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    layers = Layers(out_dir)
    rng = np.random.default_rng(seed)
    people = People(seed)
    total = Counts()
    try:
        for k, row in enumerate(rows):
            cell = make_cell(k, row, cols, buildings_per_community, rng)
            plan = make_plan(rng, len(cell.corners), buildings_per_community)
            counts = write_community(cell, plan, layers, rng)
            write_rooms_and_residents(row, plan, layers, rng, people, counts)
            total.add(counts)
    finally:
        layers.close()
    return SynthSummary(
        communities=communities,
        buildings=total.buildings,
        footprints=total.footprints,
        addresses=total.addresses,
        rooms=total.rooms,
        residents=total.residents,
        buildings_without_geometry=total.without_geometry,
        demolished=total.demolished,
    )
