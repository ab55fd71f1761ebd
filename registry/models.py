"""The registry's tables: one standard (addresses) and three realities (houses, people, units).

Geometry is stored in CGCS2000 (EPSG:4490). The schema itself is created by the Alembic
migrations in ``registry/migrations``; these classes mirror it (a test compares the two).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from geoalchemy2 import Geometry
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Computed,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    literal_column,
)
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

SRID = 4490

BUILDING_STATUSES = ("in_use", "under_construction", "demolished")
VERIFICATION_STATES = ("unverified", "verified", "corrected", "not_found", "disputed")
VERIFIED_STATES = ("verified", "corrected")  # exists as drawn: counts for the verified rate
VERIFICATION_ACTIONS = (
    "verified",
    "corrected",
    "not_found",
    "disputed",
    "created",
    "demolition_confirmed",
    "demolition_rejected",
    "door_plate_moved",
)
PHOTO_MEDIA_TYPES = ("image/jpeg", "image/png")
LINEAGE_KINDS = ("split", "merge")
ADDRESS_STATUSES = ("active", "retired")
# GB 32100 unified social credit code: 18 characters of 0-9 and capitals but I, O, Z, S, V
USCC_PATTERN = "^[0-9A-HJ-NPQRTUWXY]{18}$"
RESIDENT_CATEGORIES = ("household", "floating", "overseas", "other")
REVIEW_STATUSES = ("open", "accepted", "rejected")
MATCH_STATUSES = ("review", "unmatched")
ROLES = ("officer", "station", "analyst", "gis", "admin")
TOKEN_KINDS = ("token", "session")
AUDIT_ACTIONS = (
    "read_persons",
    "unmask",
    "search_identity",
    "export",
    "verification",
    "login",
    "login_failed",
    "logout",
    "review",
    "key_rotation",
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def enum_check(column: str, values: tuple[str, ...]) -> str:
    """SQL for a check constraint that keeps ``column`` within ``values``."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def multipolygon() -> Geometry:
    return Geometry("MULTIPOLYGON", srid=SRID, spatial_index=False)


def mercator_multipolygon() -> Geometry:
    return Geometry("MULTIPOLYGON", srid=3857, spatial_index=False)


def point() -> Geometry:
    return Geometry("POINT", srid=SRID, spatial_index=False)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Timestamped:
    """Creation and last-change times; ``updated_at`` moves only when a load changes a row."""

    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )


class Community(Timestamped, Base):
    """社区: a 12-digit NBS statistical code whose prefixes are its street and district."""

    __tablename__ = "community"

    code: Mapped[str] = mapped_column(String(12), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    street_code: Mapped[str] = mapped_column(String(9))
    street_name: Mapped[str | None] = mapped_column(Text)
    district_code: Mapped[str] = mapped_column(String(6))
    district_name: Mapped[str | None] = mapped_column(Text)
    boundary: Mapped[Any | None] = mapped_column(multipolygon())

    __table_args__ = (
        CheckConstraint("code ~ '^[0-9]{12}$'", name="code_digits"),
        CheckConstraint(
            "street_code ~ '^[0-9]{9}$' AND left(code, 9) = street_code", name="street_code"
        ),
        CheckConstraint(
            "district_code ~ '^[0-9]{6}$' AND left(street_code, 6) = district_code",
            name="district_code",
        ),
        Index(None, "street_code"),
        Index(None, "boundary", postgresql_using="gist"),
    )


class Building(Timestamped, Base):
    """楼栋 (实有房屋): a permanent id, its community and its footprint, if drawn."""

    __tablename__ = "building"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    community_code: Mapped[str] = mapped_column(ForeignKey("community.code"))
    name: Mapped[str | None] = mapped_column(Text)
    footprint: Mapped[Any | None] = mapped_column(multipolygon())
    floors: Mapped[int | None] = mapped_column(SmallInteger)
    use: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="in_use")
    verification: Mapped[str] = mapped_column(Text, server_default="unverified")
    verified_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    verified_by: Mapped[str | None] = mapped_column(Text)
    # bumped by a trigger on every change (migration 0007): the API's ETag and If-Match
    version: Mapped[int] = mapped_column(Integer, server_default="1")
    # Web Mercator copy for vector tiles (migration 0004): no transform per request
    footprint_3857: Mapped[Any | None] = mapped_column(
        mercator_multipolygon(), Computed("ST_Transform(footprint, 3857)", persisted=True)
    )

    __table_args__ = (
        CheckConstraint(enum_check("status", BUILDING_STATUSES), name="status"),
        CheckConstraint(enum_check("verification", VERIFICATION_STATES), name="verification"),
        CheckConstraint("floors >= 1", name="floors_positive"),
        Index(None, "community_code"),
        Index(None, "footprint", postgresql_using="gist"),
        Index(None, "footprint_3857", postgresql_using="gist"),
    )


ADDRESS_LABEL_SQL = (
    "(coalesce(road, '') || coalesce(house_number, '') || coalesce(compound, '') "
    "|| coalesce(building_no, ''))"
)
"""The searchable one-line form of a standard address, as indexed for pg_trgm."""


class Address(Timestamped, Base):
    """标准地址: a permanent code, its components and the door plate (门牌) point."""

    __tablename__ = "address"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    community_code: Mapped[str] = mapped_column(ForeignKey("community.code"))
    building_id: Mapped[str | None] = mapped_column(ForeignKey("building.id"))
    road: Mapped[str | None] = mapped_column(Text)
    house_number: Mapped[str | None] = mapped_column(Text)
    compound: Mapped[str | None] = mapped_column(Text)
    building_no: Mapped[str | None] = mapped_column(Text)
    door_plate: Mapped[Any | None] = mapped_column(point())
    status: Mapped[str] = mapped_column(Text, server_default="active")

    __table_args__ = (
        CheckConstraint(enum_check("status", ADDRESS_STATUSES), name="status"),
        Index(None, "community_code"),
        Index(None, "building_id"),
        Index(None, "door_plate", postgresql_using="gist"),
        # trigram search over the one-line label (migration 0003)
        Index(
            "ix_address_label_trgm",
            literal_column(ADDRESS_LABEL_SQL).label("label"),
            postgresql_using="gin",
            postgresql_ops={"label": "gin_trgm_ops"},
        ),
    )


class Room(Timestamped, Base):
    """户室: a room of a building, by unit (单元), floor and number."""

    __tablename__ = "room"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    building_id: Mapped[str] = mapped_column(ForeignKey("building.id"))
    unit: Mapped[str | None] = mapped_column(Text)
    floor: Mapped[int | None] = mapped_column(SmallInteger)
    number: Mapped[str] = mapped_column(Text)
    use: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index(None, "building_id"),)


class Person(Timestamped, Base):
    """实有人口 identity, kept apart from where the person lives.

    The identity number is never stored in clear: ``id_cipher`` is AES-GCM ciphertext
    (nonce first), ``id_hmac`` a keyed HMAC for look-up and de-duplication, and
    ``id_tail`` the last four characters that masked output shows.
    """

    __tablename__ = "person"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    id_hmac: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    id_cipher: Mapped[bytes] = mapped_column(LargeBinary)
    id_tail: Mapped[str] = mapped_column(String(4))
    name: Mapped[str] = mapped_column(Text)
    # which key of the key file encrypted this row (``registry keys rotate``)
    key_version: Mapped[int] = mapped_column(SmallInteger, server_default="1")


class Residence(Timestamped, Base):
    """A person's residence: room (if placed), community, category and dates."""

    __tablename__ = "residence"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    room_id: Mapped[str | None] = mapped_column(ForeignKey("room.id"))
    community_code: Mapped[str] = mapped_column(ForeignKey("community.code"))
    category: Mapped[str] = mapped_column(Text)
    moved_in: Mapped[dt.date | None] = mapped_column(Date)
    moved_out: Mapped[dt.date | None] = mapped_column(Date)

    __table_args__ = (
        CheckConstraint(enum_check("category", RESIDENT_CATEGORIES), name="category"),
        CheckConstraint("moved_out >= moved_in", name="dates_ordered"),
        UniqueConstraint("person_id", "moved_in", postgresql_nulls_not_distinct=True),
        Index(None, "community_code"),
        Index(None, "room_id"),
    )


class Organization(Timestamped, Base):
    """实有单位: keyed by its unified social credit code (GB 32100), placed in a room or a
    building (at most one of the two), open from ``opened`` until ``closed``."""

    __tablename__ = "organization"

    uscc: Mapped[str] = mapped_column(String(18), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    community_code: Mapped[str] = mapped_column(ForeignKey("community.code"))
    building_id: Mapped[str | None] = mapped_column(ForeignKey("building.id"))
    room_id: Mapped[str | None] = mapped_column(ForeignKey("room.id"))
    category: Mapped[str | None] = mapped_column(Text)
    opened: Mapped[dt.date | None] = mapped_column(Date)
    closed: Mapped[dt.date | None] = mapped_column(Date)

    __table_args__ = (
        CheckConstraint(f"uscc ~ '{USCC_PATTERN}'", name="uscc"),
        CheckConstraint("num_nonnulls(building_id, room_id) <= 1", name="one_place"),
        CheckConstraint("closed >= opened", name="dates_ordered"),
        Index(None, "community_code"),
        Index(None, "building_id"),
        Index(None, "room_id"),
    )


class Employment(Timestamped, Base):
    """A person working for an organization: personal data, under the residences' rules
    (scoped by the organization's ``community_code``, copied when written)."""

    __tablename__ = "employment"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    organization_uscc: Mapped[str] = mapped_column(ForeignKey("organization.uscc"))
    community_code: Mapped[str] = mapped_column(ForeignKey("community.code"))
    position: Mapped[str | None] = mapped_column(Text)
    started: Mapped[dt.date | None] = mapped_column(Date)
    ended: Mapped[dt.date | None] = mapped_column(Date)

    __table_args__ = (
        CheckConstraint("ended >= started", name="dates_ordered"),
        UniqueConstraint(
            "person_id", "organization_uscc", "started", postgresql_nulls_not_distinct=True
        ),
        Index(None, "organization_uscc"),
        Index(None, "community_code"),
    )


class Footprint(Base):
    """A reference building outline from a base map: the outside truth for coverage.

    ``anchor`` is its point-on-surface, stored so that assigning footprints to
    communities is an indexed point-in-polygon test.
    """

    __tablename__ = "footprint"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    source: Mapped[str | None] = mapped_column(Text)
    geom: Mapped[Any] = mapped_column(multipolygon())
    anchor: Mapped[Any] = mapped_column(
        point(), Computed("ST_PointOnSurface(geom)", persisted=True)
    )
    geom_3857: Mapped[Any] = mapped_column(
        mercator_multipolygon(), Computed("ST_Transform(geom, 3857)", persisted=True)
    )
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        Index(None, "geom", postgresql_using="gist"),
        Index(None, "anchor", postgresql_using="gist"),
        Index(None, "geom_3857", postgresql_using="gist"),
    )


class AddressReview(Base):
    """A free-text address the matcher could not place with certainty, awaiting a person.

    ``candidates`` are the matcher's ranked suggestions; accepting one (or naming a room)
    places the linked residence, if any, and records who decided and when.
    """

    __tablename__ = "address_review"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(Text)
    input: Mapped[str] = mapped_column(Text)
    parsed: Mapped[dict[str, Any]] = mapped_column(JSONB)
    candidates: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    match_status: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="open")
    residence_id: Mapped[int | None] = mapped_column(
        ForeignKey("residence.id", ondelete="SET NULL")
    )
    address_code: Mapped[str | None] = mapped_column(ForeignKey("address.code"))
    room_id: Mapped[str | None] = mapped_column(ForeignKey("room.id"))
    resolved_by: Mapped[str | None] = mapped_column(Text)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint(enum_check("status", REVIEW_STATUSES), name="status"),
        CheckConstraint(enum_check("match_status", MATCH_STATUSES), name="match_status"),
        CheckConstraint("(status = 'open') = (resolved_at IS NULL)", name="resolved"),
        Index(None, "status"),
        Index(None, "residence_id"),
    )


class ImportLog(Base):
    """One row per file of each successful load: what was read, written and warned about."""

    __tablename__ = "import_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    bundle: Mapped[str] = mapped_column(Text)
    path: Mapped[str] = mapped_column(Text)
    file: Mapped[str] = mapped_column(Text)
    loaded_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    counts: Mapped[dict[str, int]] = mapped_column(JSONB)
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)


class RegistryMeta(Base):
    """Small facts about this database, such as the fingerprint of its encryption keys."""

    __tablename__ = "registry_meta"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class CommunityCount(Base):
    """A community's building, label and footprint counts, kept current by triggers.

    Recounted from the rate views (migration 0002) by ``registry_refresh_counts`` in the
    transaction of every change that can move them (migration 0004, registry/counts.py).
    """

    __tablename__ = "community_count"

    code: Mapped[str] = mapped_column(
        String(12), ForeignKey("community.code", ondelete="CASCADE"), primary_key=True
    )
    buildings: Mapped[int]
    buildings_on_map: Mapped[int]
    buildings_labeled: Mapped[int]
    footprints: Mapped[int]
    footprints_covered: Mapped[int]
    refreshed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class CommunityResidentCount(Base):
    """A community's residents (and those placed on the map) by moved-out date.

    Active residents at a date D are the sum over rows whose ``moved_out`` is null or
    later than D, so one table answers every as-of date.
    """

    __tablename__ = "community_resident_count"
    __mapper_args__: ClassVar[dict[str, Any]] = {"primary_key": ["code", "moved_out"]}

    code: Mapped[str] = mapped_column(String(12), ForeignKey("community.code", ondelete="CASCADE"))
    moved_out: Mapped[dt.date | None] = mapped_column(Date)
    residents: Mapped[int]
    residents_on_map: Mapped[int]

    __table_args__ = (UniqueConstraint("code", "moved_out", postgresql_nulls_not_distinct=True),)


class FootprintCoverState(Base):
    """Whether a reference footprint is covered, per community holding its point-on-surface.

    The rows of the ``footprint_cover`` view, stored, so that an edit recomputes only the
    footprints it touches (migration 0004) instead of a whole community's.
    """

    __tablename__ = "footprint_cover_state"

    id: Mapped[str] = mapped_column(
        String(64), ForeignKey("footprint.id", ondelete="CASCADE"), primary_key=True
    )
    community_code: Mapped[str] = mapped_column(
        String(12), ForeignKey("community.code", ondelete="CASCADE"), primary_key=True
    )
    covered: Mapped[bool]

    __table_args__ = (Index(None, "community_code"),)


class TileCell(Base):
    """A version counter per layer and WebMercatorQuad zoom-16 cell, bumped by triggers on
    every change a layer can show (migration 0005); a tile's ETag sums those around it."""

    __tablename__ = "tile_cell"

    layer: Mapped[str] = mapped_column(Text, primary_key=True)
    x: Mapped[int] = mapped_column(primary_key=True)
    y: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, server_default="1")


class Account(Base):
    """A user of the API and the web map: a role and the codes of their jurisdiction.

    A jurisdiction is a list of district, street or community codes, matched as prefixes
    by the row-level security policies (migration 0006); ``admin`` needs none.
    """

    __tablename__ = "account"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    role: Mapped[str] = mapped_column(Text)
    jurisdiction: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    password_hash: Mapped[str | None] = mapped_column(Text)  # scrypt, for the web sign-in
    disabled_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint(enum_check("role", ROLES), name="role"),
        CheckConstraint("name ~ '^[A-Za-z0-9_.@-]{1,64}$'", name="name"),
        CheckConstraint(
            "array_to_string(jurisdiction, ',') ~ '^([0-9]+(,[0-9]+)*)?$'", name="jurisdiction"
        ),
    )


class ApiToken(Base):
    """A bearer token or a web session: only the SHA-256 digest of its secret is kept.

    A session (from the sign-in form) also carries the CSRF token its page must echo.
    """

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(ForeignKey("account.name", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(Text, server_default="token")
    digest: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    csrf: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(enum_check("kind", TOKEN_KINDS), name="kind"),
        CheckConstraint("(kind = 'session') = (csrf IS NOT NULL)", name="csrf"),
        Index(None, "account"),
    )


class AuditLog(Base):
    """Append-only record of every access to personal data, export, login and edit.

    The API role may only INSERT; a trigger refuses UPDATE, DELETE and TRUNCATE to all.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=literal_column("clock_timestamp()")
    )
    user_name: Mapped[str] = mapped_column(Text)
    role: Mapped[str | None] = mapped_column(Text)
    jurisdiction: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    client_ip: Mapped[str | None] = mapped_column(INET)
    action: Mapped[str] = mapped_column(Text)
    target_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    purpose: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")

    __table_args__ = (
        CheckConstraint(enum_check("action", AUDIT_ACTIONS), name="action"),
        Index(None, "at"),
        Index(None, "user_name", "at"),
        # writers may INSERT only: no RETURNING, which would need SELECT
        {"implicit_returning": False},
    )


class VerificationPhoto(Base):
    """Evidence for a field verification: a JPEG or PNG, checked and size-limited.

    Append-only, like the history it belongs to; scoped by the building's community.
    """

    __tablename__ = "verification_photo"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    community_code: Mapped[str] = mapped_column(String(12))
    building_id: Mapped[str] = mapped_column(String(64))
    media_type: Mapped[str] = mapped_column(Text)
    content: Mapped[bytes] = mapped_column(LargeBinary)
    sha256: Mapped[str] = mapped_column(String(64))
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    account: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint(enum_check("media_type", PHOTO_MEDIA_TYPES), name="media_type"),
    )


class BuildingVerification(Base):
    """One field action on a building, append-only: who, when, what changed, from where.

    ``distance_m`` is from the device's position to the building (its outline, else its
    door plate); ``far`` flags a position more than 100 m away, which is kept, not refused.
    """

    __tablename__ = "building_verification"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    # no foreign key: the history of a retired building stays, by id (migration 0009)
    building_id: Mapped[str] = mapped_column(String(64))
    community_code: Mapped[str] = mapped_column(String(12))
    action: Mapped[str] = mapped_column(Text)
    account: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    note: Mapped[str | None] = mapped_column(Text)
    position: Mapped[Any | None] = mapped_column(point())
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    distance_m: Mapped[float | None] = mapped_column(Float)
    far: Mapped[bool] = mapped_column(Boolean, server_default="false")
    photo_id: Mapped[int | None] = mapped_column(ForeignKey("verification_photo.id"))
    old_values: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    new_values: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default="{}")
    building_version: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        CheckConstraint(enum_check("action", VERIFICATION_ACTIONS), name="action"),
        CheckConstraint("accuracy_m >= 0", name="accuracy_positive"),
        Index(None, "building_id", "id"),
        Index(None, "community_code"),
    )


class BuildingLineage(Base):
    """One predecessor and one successor of a split or merge, append-only (migration 0009).

    The rows of one operation share ``event_id``; a predecessor's id is retired for good:
    a trigger refuses a building that would take it again.
    """

    __tablename__ = "building_lineage"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(Text)
    predecessor_id: Mapped[str] = mapped_column(String(64))
    successor_id: Mapped[str] = mapped_column(String(64))
    community_code: Mapped[str] = mapped_column(String(12))
    recorded_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    account: Mapped[str] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(enum_check("kind", LINEAGE_KINDS), name="kind"),
        CheckConstraint("predecessor_id <> successor_id", name="distinct"),
        Index(None, "predecessor_id"),
        Index(None, "successor_id"),
        Index(None, "event_id"),
        Index(None, "community_code"),
    )


# ---------------------------------------------------------------- history (migration 0010)

# versioned table: (key column, geometry columns indexed, columns looked up by)
VERSIONED: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    "community": ("code", ("boundary",), ()),
    "footprint": ("id", ("geom", "anchor"), ()),
    "building": ("id", ("footprint",), ()),
    "address": ("code", ("door_plate",), ("building_id",)),
    "room": ("id", (), ("building_id",)),
    "residence": ("id", (), ()),
    "organization": ("uscc", (), ()),
    "employment": ("id", (), ()),
}
PERSON_LEVEL_ENTITIES = ("residence", "employment")


def _history_column(column: Column) -> Column:
    """A copy of ``column`` for its history table: generated columns become plain ones,
    nullable (GeoAlchemy2 takes a geometry column's nullability from its type)."""
    nullable = column.nullable or column.computed is not None
    column_type = column.type.copy()
    if isinstance(column_type, Geometry):
        column_type.nullable = nullable
    return Column(column.name, column_type, nullable=nullable)


def _history_table(name: str) -> Table:
    """``<name>_history``: every version of a row of ``name`` with its valid time and the
    transactions that recorded and superseded it (triggers of migration 0010 write it)."""
    key, spatial, lookups = VERSIONED[name]
    base = Base.metadata.tables[name]
    return Table(
        f"{name}_history",
        Base.metadata,
        Column("history_id", BigInteger, primary_key=True, autoincrement=True),
        *(_history_column(c) for c in base.columns),
        Column("valid_from", DateTime(timezone=True), nullable=False),
        Column("valid_to", DateTime(timezone=True)),
        Column("recorded_txid", BigInteger, nullable=False),
        Column("superseded_txid", BigInteger),
        Column("scope_code", String(12)),
        CheckConstraint("valid_to > valid_from", name="valid_time"),
        Index(None, key, "valid_from"),
        Index(None, "recorded_txid"),
        *(Index(None, column, postgresql_using="gist") for column in spatial),
        *(Index(None, column) for column in lookups),
    )


HISTORY_TABLES: dict[str, Table] = {name: _history_table(name) for name in VERSIONED}


class RegistryTxn(Base):
    """A transaction that changed the register: who, the valid time its changes took, and,
    stamped at commit, its block of change-feed numbers and its commit time."""

    __tablename__ = "registry_txn"

    txid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    account: Mapped[str] = mapped_column(Text)
    valid_from: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    seq_first: Mapped[int | None] = mapped_column(BigInteger)
    seq_last: Mapped[int | None] = mapped_column(BigInteger)
    committed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index(None, "seq_last"), Index(None, "committed_at"))


class RegistryChange(Base):
    """One changed row of a versioned table; its feed number is its transaction's
    ``seq_first + ordinal``."""

    __tablename__ = "registry_change"

    txid: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    ordinal: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    entity: Mapped[str] = mapped_column(Text)
    key: Mapped[str] = mapped_column(Text)
    op: Mapped[str] = mapped_column(Text)
    scope_code: Mapped[str | None] = mapped_column(String(12))


class RegistryClock(Base):
    """The one row whose lock orders commits: the last feed number given, and when."""

    __tablename__ = "registry_clock"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)
    last_commit: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
