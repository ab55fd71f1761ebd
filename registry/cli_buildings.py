"""``registry buildings``: split and merge buildings, and show an id's lineage.

Each command is one transaction with its audit row; a bad parts file, an unassigned
room or a retired id is a one-line error (exit 1) and nothing is written.
"""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from registry import audit, lineage
from registry.cli_common import console, migrated_engine, reports_errors
from registry.db import transaction
from registry.settings import RegistryError, Settings

buildings_app = typer.Typer(help="Buildings: split, merge, and the lineage of their ids.")

By = Annotated[str | None, typer.Option("--by", help="Who does it (recorded; default cli:<user>).")]
Note = Annotated[str | None, typer.Option(help="Why (recorded with the lineage).")]


def account(by: str | None) -> str:
    return by or f"cli:{getpass.getuser()}"


def read_geojson(path: Path, option: str) -> dict[str, Any]:
    if not path.is_file():
        raise RegistryError(f"{option} {path}: no such file")
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(f"{option} {path}: not GeoJSON ({exc})") from None
    if not isinstance(document, dict):
        raise RegistryError(f"{option} {path}: a GeoJSON object is needed")
    return document


def parts_of(path: Path) -> list[lineage.Part]:
    """The parts of a split from a FeatureCollection: each feature's outline and, in its
    properties, the ``rooms``, ``addresses`` and ``organizations`` it takes (lists of
    ids) and optionally ``floors``, ``name`` and ``use``."""
    document = read_geojson(path, "--parts")
    features = document.get("features")
    if document.get("type") != "FeatureCollection" or not isinstance(features, list):
        raise RegistryError(f"--parts {path}: a GeoJSON FeatureCollection is needed")
    parts = []
    for number, feature in enumerate(features, start=1):
        where = f"--parts {path}, feature {number}"
        if not isinstance(feature, dict) or not isinstance(feature.get("properties") or {}, dict):
            raise RegistryError(f"{where}: a GeoJSON Feature with properties is needed")
        props = feature.get("properties") or {}
        lists = {}
        for kind in lineage.KINDS:
            value = props.get(kind) or []
            if isinstance(value, str):  # "R1,R2" as well as ["R1", "R2"]
                value = [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise RegistryError(f"{where}, field {kind}: a list of ids is needed")
            lists[kind] = value
        floors = props.get("floors")
        if floors is not None and (isinstance(floors, bool) or not isinstance(floors, int)):
            raise RegistryError(f"{where}, field floors: a whole number is needed")
        for name in ("name", "use"):
            if props.get(name) is not None and not isinstance(props[name], str):
                raise RegistryError(f"{where}, field {name}: text is needed")
        parts.append(
            lineage.Part(
                feature.get("geometry"),
                lists["rooms"],
                lists["addresses"],
                lists["organizations"],
                floors,
                props.get("name"),
                props.get("use"),
            )
        )
    return parts


def outline_of(path: Path) -> Any:
    """A Polygon or MultiPolygon, given bare, as a Feature or as a one-feature collection."""
    document = read_geojson(path, "--outline")
    if document.get("type") == "FeatureCollection":
        features = document.get("features") or []
        if len(features) != 1 or not isinstance(features[0], dict):
            raise RegistryError(f"--outline {path}: exactly one feature is needed")
        document = features[0]
    if document.get("type") == "Feature":
        return document.get("geometry")
    return document


def audited(session: Any, done: dict[str, Any], by: str) -> None:
    audit.record(
        session,
        None,
        "verification",
        user_name=by,
        targets=[*done["retired"], *(s["id"] for s in done["successors"])],
        detail={"action": done["kind"], "event_id": done["event_id"]},
    )


def report(done: dict[str, Any]) -> None:
    verb = "split into" if done["kind"] == "split" else "merged into"
    console.print(
        f"{done['kind']} {done['event_id']}: {', '.join(done['retired'])} {verb} "
        f"{', '.join(s['id'] for s in done['successors'])} (retired: "
        f"{', '.join(done['retired'])})",
        highlight=False,
    )
    for s in done["successors"]:
        console.print(
            f"  {s['id']}: {len(s['rooms'])} rooms, {s['residences']} residences, "
            f"{len(s['addresses'])} addresses, {len(s['organizations'])} organizations",
            highlight=False,
        )


@buildings_app.command("split")
@reports_errors
def split(
    building_id: Annotated[str, typer.Argument(help="The building to split.")],
    parts: Annotated[
        Path,
        typer.Option(help="GeoJSON FeatureCollection: one feature per part (see docs)."),
    ],
    note: Note = None,
    by: By = None,
) -> None:
    """Split a building into parts with new ids; the old id is retired for good."""
    who = account(by)
    pieces = parts_of(parts)
    with transaction(migrated_engine(Settings())) as session:
        done = lineage.split_building(session, building_id, pieces, who, note)
        audited(session, done, who)
    report(done)


@buildings_app.command("merge")
@reports_errors
def merge(
    building_ids: Annotated[list[str], typer.Argument(help="Two or more building ids.")],
    outline: Annotated[
        Path | None,
        typer.Option(help="GeoJSON outline (default: the union of their footprints)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="The new building's name.")] = None,
    floors: Annotated[int | None, typer.Option(min=1, max=200)] = None,
    note: Note = None,
    by: By = None,
) -> None:
    """Merge buildings of one community into one with a new id; the old ids are retired."""
    who = account(by)
    geometry = outline_of(outline) if outline is not None else None
    with transaction(migrated_engine(Settings())) as session:
        done = lineage.merge_buildings(
            session, building_ids, who, note, outline=geometry, name=name, floors=floors
        )
        audited(session, done, who)
    report(done)


@buildings_app.command("lineage")
@reports_errors
def show_lineage(
    building_id: Annotated[str, typer.Argument(help="A current or retired building id.")],
    format: Annotated[str, typer.Option(help="text or json.")] = "text",
) -> None:
    """Where a building id comes from and what became of it."""
    if format not in ("text", "json"):
        raise RegistryError(f"--format must be text or json, not {format!r}")
    with transaction(migrated_engine(Settings())) as session:
        found = lineage.lineage(session, building_id)
    if found is None:
        raise RegistryError(f"no building id {building_id}")
    if format == "json":
        console.print_json(json.dumps(found, ensure_ascii=False))
        return
    state = "current" if found["current"] else "retired"
    console.print(f"{building_id}: {state}", highlight=False)
    if found["predecessors"]:
        console.print(f"  from: {', '.join(found['predecessors'])}", highlight=False)
    if found["successors"]:
        console.print(f"  into: {', '.join(found['successors'])}", highlight=False)
    if found["current_successors"]:
        console.print(f"  now:  {', '.join(found['current_successors'])}", highlight=False)
    for e in found["events"]:
        console.print(
            f"  {e['kind']} {e['event_id']} {e['recorded_at'][:19]} by {e['account']}: "
            f"{', '.join(e['predecessors'])} -> {', '.join(e['successors'])}"
            + (f" ({e['note']})" if e["note"] else ""),
            highlight=False,
        )
