"""Field verification of buildings: the repository functions behind the officers' map.

An officer records what they found: ``verified`` (exists, outline right), ``corrected``
(exists, outline fixed), ``not_found`` (gone: proposes ``demolished``, which a second
person confirms) or ``disputed`` (needs a second look); or draws a building that was
missing. Each action updates the building and appends one ``building_verification`` row
with the account, time, old and new values, the device's position and its distance from
the building, all in the caller's transaction (these functions never commit).

Concurrent edits: every change bumps ``building.version`` (a trigger), and a write that
names the version it was based on (``expected_version``, the API's ``If-Match``) is refused
with :class:`StaleBuildingError` if the building changed since: nothing is overwritten.
The building row is locked for the rest of the transaction, so two writers serialise.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape
from sqlalchemy import Float, and_, bindparam, func, insert, literal, or_, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from geo.extent import check_extent
from geo.polygons import prepare_footprint
from registry.models import (
    SRID,
    Address,
    Building,
    BuildingVerification,
    Community,
    Residence,
    Room,
    VerificationPhoto,
)
from registry.photos import Photo
from registry.settings import RegistryError

RETIRED_SQLSTATE = "RG410"  # a retired building id (migration 0009)
FAR_M = 100.0  # a verification from further than this is flagged, not refused
STATE_ACTIONS = ("verified", "corrected", "not_found", "disputed")
MAX_VERTICES = 2_000
MAX_AREA_M2 = 1_000_000.0  # a square kilometre: larger is a slip of the pen, not a building
MIN_AREA_M2 = 1.0  # smaller than a square metre is a slip too (or three points in a row)
HISTORY_LIMIT = 50
PRECISION = 7  # decimal places of GeoJSON coordinates: about 1 cm


class BuildingNotFoundError(RegistryError):
    """No such building, or not in the caller's jurisdiction."""


class StaleBuildingError(RegistryError):
    """The building changed since the version the caller read; ``current`` is its state."""

    def __init__(self, building_id: str, expected: int, current: dict[str, Any]) -> None:
        super().__init__(
            f"building {building_id} is at version {current['version']}, not {expected}: "
            "someone changed it since you read it"
        )
        self.current = current


class VerificationConflictError(RegistryError):
    """The action does not fit the building's state (e.g. confirming what nobody reported)."""


class NotPermittedError(RegistryError):
    """The caller may not take this action on this building."""


class InvalidInputError(RegistryError):
    """A state, position or outline that cannot be recorded; the message names the field."""


@dataclass(frozen=True)
class Position:
    """Where the device was, as the browser reported it (WGS 84 = CGCS2000 to 1 cm)."""

    lon: float
    lat: float
    accuracy_m: float | None = None


# ---------------------------------------------------------------- input checks


def checked_outline(geometry: Any, field: str = "geometry") -> str:
    """WKT of a building outline given as GeoJSON (lon/lat), validated: a Polygon or
    MultiPolygon inside China, repaired if self-intersecting, of building size."""
    if not isinstance(geometry, dict):
        raise InvalidInputError(f"{field}: a GeoJSON Polygon or MultiPolygon object is needed")
    if geometry.get("type") not in ("Polygon", "MultiPolygon"):
        raise InvalidInputError(
            f"{field}: a Polygon or MultiPolygon is needed, not {geometry.get('type')!r}"
        )
    try:
        geom = shape(geometry)
        # JSON allows NaN and overflows to infinity: refuse them before GEOS sees them
        if not np.isfinite(shapely.get_coordinates(geom)).all():
            raise InvalidInputError(f"{field}: coordinates must be finite numbers")
        prepared = prepare_footprint(geom)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise InvalidInputError(f"{field}: not a valid GeoJSON polygon ({exc})") from None
    except shapely.errors.GEOSException as exc:
        raise InvalidInputError(f"{field}: not a valid polygon ({exc})") from None
    if prepared.error or prepared.geometry is None:
        raise InvalidInputError(f"{field}: {prepared.error or 'no outline'}")
    outline = prepared.geometry
    outside = check_extent(outline)
    if outside:
        raise InvalidInputError(f"{field}: {outside}")
    if shapely.get_num_coordinates(outline) > MAX_VERTICES:
        raise InvalidInputError(f"{field}: more than {MAX_VERTICES} vertices")
    return outline.wkt


def checked_position(position: Position | None) -> Position | None:
    if position is None:
        return None
    values = (position.lon, position.lat)
    if not all(isinstance(v, int | float) and v == v for v in values):
        raise InvalidInputError("position: lon and lat must be numbers")
    outside = check_extent(shapely.Point(position.lon, position.lat))
    if outside:
        raise InvalidInputError(f"position: {outside}")
    if position.accuracy_m is not None and not 0 <= position.accuracy_m < 1e7:
        raise InvalidInputError("position: accuracy must be a distance in metres, 0 or more")
    return position


def outline_area_m2(session: Session, wkt: str) -> float:
    area = session.scalar(
        select(func.ST_Area(func.geography(func.ST_GeomFromText(wkt, SRID)), True))
    )
    return float(area or 0.0)


def check_area(session: Session, wkt: str) -> None:
    area = outline_area_m2(session, wkt)
    if area > MAX_AREA_M2:
        raise InvalidInputError("geometry: larger than a square kilometre; not a building")
    if area < MIN_AREA_M2:
        raise InvalidInputError(f"geometry: {area:.2g} m² is smaller than a square metre")


# ---------------------------------------------------------------- reading


def building_detail(
    session: Session, building_id: str, sees_persons: bool
) -> dict[str, Any] | None:
    """The building as the field panel shows it, with addresses, rooms and history; None
    when it does not exist or is outside the caller's jurisdiction (row-level security).
    Resident counts are None unless ``sees_persons``."""
    b = Building.__table__
    row = session.execute(
        select(
            b.c.id,
            b.c.community_code,
            Community.name.label("community_name"),
            b.c.name,
            b.c.floors,
            b.c.use,
            b.c.status,
            b.c.verification,
            b.c.verified_at,
            b.c.verified_by,
            b.c.version,
            func.ST_AsGeoJSON(b.c.footprint, PRECISION, 0).label("geometry"),
        )
        .join(Community, Community.code == b.c.community_code)
        .where(b.c.id == building_id)
    ).one_or_none()
    if row is None:
        return None
    detail = dict(row._mapping)
    detail["geometry"] = json.loads(row.geometry) if row.geometry else None
    detail["verified_at"] = iso(row.verified_at)
    detail["addresses"] = [
        {
            "code": a.code,
            "label": a.label,
            "door_plate": [a.lon, a.lat] if a.lon is not None else None,
        }
        for a in session.execute(
            select(
                Address.code,
                func.concat_ws(
                    " ", Address.road, Address.house_number, Address.compound, Address.building_no
                ).label("label"),
                func.ST_X(Address.door_plate).label("lon"),
                func.ST_Y(Address.door_plate).label("lat"),
            )
            .where(Address.building_id == building_id, Address.status == "active")
            .order_by(Address.code)
        )
    ]
    rooms = room_rows(session, building_id, sees_persons)
    detail["rooms"] = rooms
    detail["room_count"] = len(rooms)
    detail["residents"] = sum(r["residents"] for r in rooms) if sees_persons else None
    detail["history"] = history(session, building_id)
    return detail


def room_rows(session: Session, building_id: str, sees_persons: bool) -> list[dict[str, Any]]:
    """The building's rooms; with ``sees_persons``, each with its active residents."""
    today = dt.date.today()
    active = and_(
        Residence.room_id == Room.id,
        or_(Residence.moved_out.is_(None), Residence.moved_out > today),
    )
    residents = (
        select(func.count()).where(active).scalar_subquery() if sees_persons else literal(None)
    )
    rows = session.execute(
        select(Room.id, Room.unit, Room.floor, Room.number, Room.use, residents.label("residents"))
        .where(Room.building_id == building_id)
        .order_by(Room.unit, Room.floor, Room.number, Room.id)
    )
    return [dict(r._mapping) for r in rows]


def entry_columns() -> tuple[Any, ...]:
    """The columns :func:`entry` reads: for the history, and returned by each insert."""
    v = BuildingVerification.__table__
    return (
        v.c.id,
        v.c.action,
        v.c.account,
        v.c.recorded_at,
        v.c.note,
        func.ST_X(v.c.position).label("lon"),
        func.ST_Y(v.c.position).label("lat"),
        v.c.accuracy_m,
        v.c.distance_m,
        v.c.far,
        v.c.photo_id,
        v.c.old_values,
        v.c.new_values,
        v.c.building_version,
    )


def history(session: Session, building_id: str, limit: int = HISTORY_LIMIT) -> list[dict]:
    """The building's field actions, newest first."""
    v = BuildingVerification.__table__
    rows = session.execute(
        select(*entry_columns())
        .where(v.c.building_id == building_id)
        .order_by(v.c.id.desc())
        .limit(limit)
    )
    return [entry(r._mapping) for r in rows]


def entry(row: Any) -> dict[str, Any]:
    return {
        "id": row["id"],
        "action": row["action"],
        "account": row["account"],
        "recorded_at": iso(row["recorded_at"]),
        "note": row["note"],
        "position": [row["lon"], row["lat"]] if row["lon"] is not None else None,
        "accuracy_m": row["accuracy_m"],
        "distance_m": None if row["distance_m"] is None else round(row["distance_m"], 1),
        "far": row["far"],
        "photo_url": f"/photos/{row['photo_id']}" if row["photo_id"] else None,
        "old": row["old_values"],
        "new": row["new_values"],
        "version": row["building_version"],
    }


def iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def photo(session: Session, photo_id: int) -> tuple[str, bytes] | None:
    """A stored photo's media type and bytes, if the caller may see its building."""
    row = session.execute(
        select(VerificationPhoto.media_type, VerificationPhoto.content).where(
            VerificationPhoto.id == photo_id
        )
    ).one_or_none()
    return None if row is None else (row.media_type, row.content)


# ---------------------------------------------------------------- writing


@dataclass(frozen=True)
class Locked:
    """The building as it was when locked for this transaction."""

    id: str
    community_code: str
    version: int
    status: str
    verification: str
    geometry: dict | None


def lock_building(
    session: Session, building_id: str, expected_version: int | None, sees_persons: bool
) -> Locked:
    """Lock the building's row; refuse if it is gone or changed since ``expected_version``."""
    b = Building.__table__
    row = session.execute(
        select(
            b.c.id,
            b.c.community_code,
            b.c.version,
            b.c.status,
            b.c.verification,
            func.ST_AsGeoJSON(b.c.footprint, PRECISION, 0).label("geometry"),
        )
        .where(b.c.id == building_id)
        .with_for_update(of=b)
    ).one_or_none()
    if row is None:
        raise BuildingNotFoundError(f"no building {building_id} in your jurisdiction")
    if expected_version is not None and expected_version != row.version:
        current = building_detail(session, building_id, sees_persons)
        assert current is not None
        raise StaleBuildingError(building_id, expected_version, current)
    geometry = json.loads(row.geometry) if row.geometry else None
    return Locked(row.id, row.community_code, row.version, row.status, row.verification, geometry)


def distance_to_building(session: Session, building_id: str, position: Position) -> float | None:
    """Metres from ``position`` to the building's outline (0 inside), else to its nearest
    door plate; None when it has neither."""
    point = func.geography(func.ST_SetSRID(func.ST_MakePoint(position.lon, position.lat), SRID))
    to_outline = (
        select(func.ST_Distance(point, func.geography(Building.footprint)))
        .where(Building.id == building_id, Building.footprint.is_not(None))
        .scalar_subquery()
    )
    to_plate = (
        select(func.min(func.ST_Distance(point, func.geography(Address.door_plate))))
        .where(Address.building_id == building_id, Address.door_plate.is_not(None))
        .scalar_subquery()
    )
    distance = session.scalar(select(func.coalesce(to_outline, to_plate)))
    return None if distance is None else float(distance)


def store_photo(session: Session, photo_in: Photo, building: Locked, account: str) -> int:
    return session.execute(
        insert(VerificationPhoto)
        .values(
            community_code=building.community_code,
            building_id=building.id,
            media_type=photo_in.media_type,
            content=photo_in.content,
            sha256=photo_in.sha256,
            width=photo_in.width,
            height=photo_in.height,
            account=account,
        )
        .returning(VerificationPhoto.id)
    ).scalar_one()


def apply_change(
    session: Session,
    building: Locked,
    action: str,
    account: str,
    changes: dict[str, Any],
    outline_wkt: str | None,
    note: str | None,
    position: Position | None,
    photo_in: Photo | None,
) -> dict[str, Any]:
    """Update the locked building with ``changes`` (and the outline) and append the
    history row describing the action; returns that row as :func:`entry` does."""
    position = checked_position(position)
    b = Building.__table__
    values: dict[str, Any] = {
        **changes,
        "verified_at": func.now(),
        "verified_by": account,
        "updated_at": func.now(),
    }
    old: dict[str, Any] = {k: getattr(building, k) for k in changes}
    new: dict[str, Any] = dict(changes)
    if outline_wkt is not None:
        values["footprint"] = func.ST_Multi(func.ST_GeomFromText(outline_wkt, SRID))
        old["geometry"] = building.geometry
    version, geometry = session.execute(
        update(b)
        .where(b.c.id == building.id)
        .values(values)
        .returning(b.c.version, func.ST_AsGeoJSON(b.c.footprint, PRECISION, 0))
    ).one()
    if outline_wkt is not None:
        new["geometry"] = json.loads(geometry)
    return append_history(
        session, building, action, account, old, new, version, note, position, photo_in
    )


def append_history(
    session: Session,
    building: Locked,
    action: str,
    account: str,
    old: dict[str, Any],
    new: dict[str, Any],
    version: int,
    note: str | None,
    position: Position | None,
    photo_in: Photo | None,
) -> dict[str, Any]:
    distance = distance_to_building(session, building.id, position) if position else None
    photo_id = store_photo(session, photo_in, building, account) if photo_in else None
    point = (
        func.ST_SetSRID(
            func.ST_MakePoint(bindparam("lon", type_=Float), bindparam("lat", type_=Float)), SRID
        )
        if position
        else None
    )
    row = session.execute(
        insert(BuildingVerification)
        .values(
            building_id=building.id,
            community_code=building.community_code,
            action=action,
            account=account,
            note=note or None,
            position=point,
            accuracy_m=position.accuracy_m if position else None,
            distance_m=distance,
            far=distance is not None and distance > FAR_M,
            photo_id=photo_id,
            old_values=old,
            new_values=new,
            building_version=version,
        )
        .returning(*entry_columns()),
        {"lon": position.lon, "lat": position.lat} if position else {},
    ).one()
    return entry(row._mapping)


def record_verification(
    session: Session,
    building_id: str,
    state: str,
    account: str,
    *,
    expected_version: int | None = None,
    note: str | None = None,
    position: Position | None = None,
    outline: Any = None,
    photo_in: Photo | None = None,
    sees_persons: bool = False,
) -> dict[str, Any]:
    """Record a field visit's finding (``state``); with ``outline`` (only for
    ``corrected``) the building's footprint is replaced too."""
    if state not in STATE_ACTIONS:
        raise InvalidInputError(f"state: must be one of {', '.join(STATE_ACTIONS)}, not {state!r}")
    if outline is not None and state != "corrected":
        raise InvalidInputError("geometry: only a 'corrected' verification carries an outline")
    wkt = checked_outline(outline) if outline is not None else None
    if wkt:
        check_area(session, wkt)
    building = lock_building(session, building_id, expected_version, sees_persons)
    if building.status == "demolished":
        raise VerificationConflictError(
            f"building {building_id} is demolished; it has nothing left to verify"
        )
    return apply_change(
        session,
        building,
        state,
        account,
        {"verification": state},
        wkt,
        note,
        position,
        photo_in,
    )


def replace_outline(
    session: Session,
    building_id: str,
    outline: Any,
    account: str,
    expected_version: int | None,
    note: str | None = None,
    position: Position | None = None,
    sees_persons: bool = False,
) -> dict[str, Any]:
    """Replace (or place) the building's outline: a ``corrected`` verification
    (``expected_version`` None: whatever the building's version)."""
    return record_verification(
        session,
        building_id,
        "corrected",
        account,
        expected_version=expected_version,
        note=note,
        position=position,
        outline=outline,
        sees_persons=sees_persons,
    )


def decide_demolition(
    session: Session,
    building_id: str,
    confirm: bool,
    account: str,
    note: str | None = None,
    expected_version: int | None = None,
    sees_persons: bool = False,
) -> dict[str, Any]:
    """Confirm (the building becomes ``demolished``) or reject (``disputed``) a
    ``not_found`` report. A second person decides: any editor but the one who reported
    it (another officer, the station, an admin)."""
    building = lock_building(session, building_id, expected_version, sees_persons)
    if building.verification != "not_found" or building.status == "demolished":
        raise VerificationConflictError(
            f"building {building_id} is not reported as not found "
            f"(its verification is {building.verification}, its status {building.status})"
        )
    reporter = session.scalar(
        select(BuildingVerification.account)
        .where(
            BuildingVerification.building_id == building_id,
            BuildingVerification.action == "not_found",
        )
        .order_by(BuildingVerification.id.desc())
        .limit(1)
    )
    if reporter == account:
        raise NotPermittedError(
            f"{account} reported building {building_id} as not found; a second person "
            "(another officer, the station or an admin) must decide"
        )
    if confirm:
        action, changes = "demolition_confirmed", {"status": "demolished"}
    else:
        action, changes = "demolition_rejected", {"verification": "disputed"}
    return apply_change(session, building, action, account, changes, None, note, None, None)


def move_door_plate(
    session: Session,
    building_id: str,
    address_code: str,
    plate: Position,
    account: str,
    note: str | None = None,
    expected_version: int | None = None,
    sees_persons: bool = False,
) -> dict[str, Any]:
    """Place the door plate of one of the building's standard addresses where the officer
    found it (what labelling measures: a plate within 30 m of the outline). The address
    keeps its code; the old and new points go to the building's history."""
    plate = checked_position(plate)
    assert plate is not None
    building = lock_building(session, building_id, expected_version, sees_persons)
    a = Address.__table__
    row = session.execute(
        select(
            a.c.code,
            func.ST_X(a.c.door_plate).label("lon"),
            func.ST_Y(a.c.door_plate).label("lat"),
        )
        .where(a.c.code == address_code, a.c.building_id == building_id, a.c.status == "active")
        .with_for_update(of=a)
    ).one_or_none()
    if row is None:
        raise InvalidInputError(
            f"address {address_code}: not an active standard address of building {building_id}"
        )
    point = func.ST_SetSRID(
        func.ST_MakePoint(bindparam("lon", type_=Float), bindparam("lat", type_=Float)), SRID
    )
    session.execute(
        update(a).where(a.c.code == address_code).values(door_plate=point, updated_at=func.now()),
        {"lon": plate.lon, "lat": plate.lat},
    )
    old = {
        "address": address_code,
        "door_plate": [row.lon, row.lat] if row.lon is not None else None,
    }
    new = {"address": address_code, "door_plate": [plate.lon, plate.lat]}
    return append_history(
        session, building, "door_plate_moved", account, old, new, building.version, note, None, None
    )


def community_of_outline(session: Session, wkt: str) -> str | None:
    """The community whose boundary contains the outline's point-on-surface."""
    anchor = func.ST_PointOnSurface(func.ST_GeomFromText(wkt, SRID))
    return session.scalar(
        select(Community.code)
        .where(func.ST_Contains(Community.boundary, anchor))
        .order_by(Community.code)
        .limit(1)
    )


def insert_new_building(session: Session, code: str, values: dict[str, Any]) -> str:
    """Insert a building with ``values`` under a new permanent id ``N<code>-<n>`` from the
    ``building_new_id`` sequence (never handed out twice); returns the id. An id an import
    already holds, or one retired by a split or merge (migration 0009), is skipped."""
    while True:
        number = session.scalar(select(func.nextval("building_new_id")))
        building_id = f"N{code}-{number}"
        try:
            with session.begin_nested():
                session.execute(insert(Building).values(id=building_id, **values))
            return building_id
        except IntegrityError as exc:
            if "pk_building" not in str(exc.orig):
                raise
            # an imported building already has this id: take the next number
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) != RETIRED_SQLSTATE:
                raise


def create_building(
    session: Session,
    outline: Any,
    account: str,
    *,
    community_code: str | None = None,
    name: str | None = None,
    floors: int | None = None,
    use: str | None = None,
    note: str | None = None,
    position: Position | None = None,
) -> tuple[str, dict[str, Any]]:
    """Register a building drawn in the field, with a new permanent id
    (``N<community>-<n>``, from a sequence: never reused); returns the id and the
    ``created`` history entry. Row-level security refuses a community outside the
    caller's jurisdiction."""
    wkt = checked_outline(outline)
    check_area(session, wkt)
    position = checked_position(position)
    if floors is not None and not 1 <= floors <= 200:
        raise InvalidInputError("floors: a whole number from 1 to 200")
    code = community_code or community_of_outline(session, wkt)
    if code is None:
        raise InvalidInputError(
            "geometry: no community boundary contains this outline; name its community_code"
        )
    if session.scalar(select(Community.code).where(Community.code == code)) is None:
        raise InvalidInputError(f"community_code: no community {code}")
    values = {
        "community_code": code,
        "name": name or None,
        "floors": floors,
        "use": use or None,
        "status": "in_use",
        "verification": "verified",
        "verified_at": func.now(),
        "verified_by": account,
        "footprint": func.ST_Multi(func.ST_GeomFromText(wkt, SRID)),
    }
    building_id = insert_new_building(session, code, values)
    building = lock_building(session, building_id, None, False)
    new = {
        "community_code": code,
        "name": values["name"],
        "floors": floors,
        "use": values["use"],
        "verification": "verified",
        "geometry": building.geometry,
    }
    entry_ = append_history(
        session, building, "created", account, {}, new, building.version, note, position, None
    )
    return building_id, entry_
