"""What a free-text address is parsed into: the components of a standard address and room."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class ParsedAddress:
    """The standard components found in one free-text address (None where absent).

    Components are in canonical form, so they compare equal to the keys of the
    registry's own standard addresses (:mod:`registry.address.keys`):

    - ``city``: a province or city named that is not the gazetteer's home one (``黄石市``,
      ``北京市``, ``河南省``): the text may mean another place with the same road;
    - ``district``, ``street``, ``community``: names as written after normalisation
      (``梅苑社区``), with ``district_code``/``street_code``/``community_code`` when the
      gazetteer resolved them;
    - ``road``: ``武珞路三巷`` → ``武珞路3巷``; ``house_number``: digits with an optional
      附号, ``99`` or ``99附1``;
    - ``compound``: ``梅苑小区``; ``building``: ``3`` (from 3栋/3幢/3号楼/3座/3#);
      ``unit``: ``2``; ``floor``: 15 (stated, or derived from room 1502); ``room``: ``1502``.
    """

    text: str
    normalized: str
    city: str | None = None
    district: str | None = None
    district_code: str | None = None
    street: str | None = None
    street_code: str | None = None
    community: str | None = None
    community_code: str | None = None
    road: str | None = None
    house_number: str | None = None
    compound: str | None = None
    building: str | None = None
    unit: str | None = None
    floor: int | None = None
    room: str | None = None
    rest: str = ""
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
