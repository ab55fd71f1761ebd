"""OGC API – Features (Part 1 core, Part 2 CRS, Part 3 queryables and CQL2 filter).

Pages are built as GeoJSON by PostgreSQL (:mod:`registry.features`): a page's features
arrive as one comma-joined text with its count, in one round trip, and are wrapped in the
FeatureCollection without being parsed. A page is bounded (10,000 features at most).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy import Select, and_, bindparam
from sqlalchemy.sql.elements import ColumnElement

from api import html, params
from api.auth import SIGNED_IN, principal_of
from api.openapi import OPENAPI_JSON
from api.problems import bad_request, not_found
from geo.crs import CRS84, STORAGE_CRS, SUPPORTED, Crs
from registry import cql2, history
from registry.collections import COLLECTIONS, Collection
from registry.features import (
    MAX_COUNT,
    ItemsQuery,
    count_select,
    estimated_extent_select,
    exact_extent_select,
    item_select,
    items_select,
    page_select,
)
from registry.history import HistoryError, Moment

router = APIRouter(include_in_schema=False)  # declared by hand in api.openapi

GEOJSON = "application/geo+json"
SCHEMA_JSON = "application/schema+json"

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/html",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
]
TEMPORAL_PROPERTY = {"buildings": "verified_at"}
"""The property ``datetime=`` filters on, per collection (others have no time axis)."""


# ---------------------------------------------------------------- links and formats


def base_url(request: Request) -> str:
    configured = request.app.state.settings.public_url
    return (configured or str(request.base_url)).rstrip("/")


def link(href: str, rel: str, type_: str, title: str | None = None, **extra: Any) -> dict:
    """An OGC link object; ``extra`` adds members such as ``templated``."""
    return {"href": href, "rel": rel, "type": type_, **({"title": title} if title else {}), **extra}


def self_links(request: Request, fmt: str, json_type: str = "application/json") -> list[dict]:
    """``self`` and ``alternate`` links of the resource in its JSON and HTML forms."""
    url = base_url(request) + request.url.path
    query = [(k, v) for k, v in request.query_params.multi_items() if k != "f"]
    json_href = url + "?" + urlencode([*query, ("f", "json")])
    html_href = url + "?" + urlencode([*query, ("f", "html")])
    json_link = link(json_href, "self" if fmt == "json" else "alternate", json_type, "this as JSON")
    html_link = link(
        html_href, "self" if fmt == "html" else "alternate", "text/html", "this as HTML"
    )
    return [json_link, html_link]


def respond(request: Request, fmt: str, document: dict[str, Any], title: str) -> Response:
    if fmt == "html":
        return HTMLResponse(html.resource(title, document))
    return JSONResponse(document)


def collection_or_404(collection_id: str) -> Collection:
    try:
        return COLLECTIONS[collection_id]
    except KeyError:
        raise not_found(
            f"no collection {collection_id!r}; collections: {', '.join(COLLECTIONS)}"
        ) from None


# ---------------------------------------------------------------- landing and conformance


@router.get("/", summary="Landing page", tags=["Capabilities"])
async def landing(request: Request) -> Response:
    params.check_known(request.query_params, params.COMMON)
    fmt = params.output_format(request.query_params, request.headers.get("accept"))
    root = base_url(request)
    document = {
        "title": "一标三实 registry",
        "description": "Standard addresses, buildings and reference footprints of the "
        "一标三实 registry, with per-community on-map, coverage and labelling rates.",
        "links": [
            *self_links(request, fmt),
            link(f"{root}/api", "service-desc", OPENAPI_JSON, "the API definition (OpenAPI 3.0)"),
            link(f"{root}/api.html", "service-doc", "text/html", "the API documentation"),
            link(f"{root}/conformance", "conformance", "application/json", "conformance classes"),
            link(f"{root}/collections", "data", "application/json", "the feature collections"),
            link(
                f"{root}/reports/coverage",
                "http://www.opengis.net/def/rel/ogc/1.0/data-meta",
                "application/json",
                "coverage rates by community",
            ),
            *request.app.state.landing_links(root),
        ],
    }
    return respond(request, fmt, document, document["title"])


@router.get("/conformance", summary="Conformance classes", tags=["Capabilities"])
async def conformance(request: Request) -> Response:
    params.check_known(request.query_params, params.COMMON)
    fmt = params.output_format(request.query_params, request.headers.get("accept"))
    document = {"conformsTo": request.app.state.conformance, "links": self_links(request, fmt)}
    return respond(request, fmt, document, "Conformance")


# ---------------------------------------------------------------- collections


async def collection_document(request: Request, collection: Collection) -> dict[str, Any]:
    root = base_url(request)
    here = f"{root}/collections/{collection.id}"
    async with request.app.state.database.scoped(principal_of(request)) as conn:
        box = (await conn.execute(estimated_extent_select(collection))).one()
        if box[0] is None:
            box = (await conn.execute(exact_extent_select(collection), collection.params())).one()
    spatial = {"bbox": [list(box)] if box[0] is not None else [[-180, -90, 180, 90]], "crs": CRS84}
    return {
        "id": collection.id,
        "title": collection.title,
        "description": collection.description,
        "itemType": "feature",
        "extent": {"spatial": spatial},
        "crs": list(SUPPORTED),
        "storageCrs": STORAGE_CRS.uri,
        "links": [
            link(here, "self", "application/json", collection.title),
            link(f"{here}/items", "items", GEOJSON, "the features"),
            link(f"{here}/items?f=html", "items", "text/html", "the features as HTML"),
            link(
                f"{here}/queryables",
                "http://www.opengis.net/def/rel/ogc/1.0/queryables",
                SCHEMA_JSON,
                "what the filter parameter can query",
            ),
            *request.app.state.collection_links(root, collection),
        ],
    }


@router.get(
    "/collections", dependencies=SIGNED_IN, summary="The feature collections", tags=["Data"]
)
async def collections(request: Request) -> Response:
    params.check_known(request.query_params, params.COMMON)
    fmt = params.output_format(request.query_params, request.headers.get("accept"))
    documents = [await collection_document(request, c) for c in COLLECTIONS.values()]
    document = {"collections": documents, "links": self_links(request, fmt)}
    return respond(request, fmt, document, "Collections")


@router.get(
    "/collections/{collectionId}",
    dependencies=SIGNED_IN,
    summary="A feature collection",
    tags=["Data"],
)
async def collection(request: Request, collectionId: str) -> Response:
    params.check_known(request.query_params, params.COMMON)
    fmt = params.output_format(request.query_params, request.headers.get("accept"))
    found = collection_or_404(collectionId)
    document = await collection_document(request, found)
    return respond(request, fmt, document, found.title)


@router.get(
    "/collections/{collectionId}/queryables",
    dependencies=SIGNED_IN,
    summary="Queryable properties",
    tags=["Data"],
)
async def queryables(request: Request, collectionId: str) -> Response:
    params.check_known(request.query_params, params.COMMON)
    fmt = params.output_format(request.query_params, request.headers.get("accept"))
    found = collection_or_404(collectionId)
    document = queryables_schema(found, f"{base_url(request)}/collections/{found.id}/queryables")
    if fmt == "html":
        rows = [{"name": k, **v} for k, v in document["properties"].items()]
        return HTMLResponse(
            html.page(f"{found.title}: queryables", html.table(rows, ["name", "type", "title"]))
        )
    return JSONResponse(document, media_type=SCHEMA_JSON)


def queryables_schema(collection: Collection, schema_id: str) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "geometry": {
            "title": "geometry",
            "format": f"geometry-{collection.geometry_type.lower()}",
        }
    }
    for prop in collection.properties:
        properties[prop.name] = {"title": prop.description, **prop.json_schema()}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_id,
        "type": "object",
        "title": collection.title,
        "properties": properties,
        "additionalProperties": False,
    }


# ---------------------------------------------------------------- items


def cql2_queryables(collection: Collection, source) -> dict[str, cql2.Queryable]:
    out = {"geometry": cql2.Queryable(source.c.geom, "geometry")}
    for prop in collection.properties:
        out[prop.name] = cql2.Queryable(source.c[prop.name], prop.type)
    return out


def temporal_filter(collection: Collection, source, value: str | None) -> ColumnElement | None:
    interval = params.parse_datetime(value)
    name = TEMPORAL_PROPERTY.get(collection.id)
    if interval is None or name is None:
        return None  # collections without a time axis ignore datetime (OGC API Features 7.15.4)
    start, end = interval
    column = source.c[name]
    clauses = []
    if start is not None:
        clauses.append(column >= bindparam(None, start))
    if end is not None:
        clauses.append(column <= bindparam(None, end))
    return and_(column.is_not(None), *clauses)


def moment_of(request: Request) -> Moment | None:
    """``valid_at`` and ``known_at``: the features as valid and known then (the register's
    history, docs/history.md), or None for now; a 400 for a malformed time."""
    query_params = request.query_params
    try:
        return history.moment(
            params.single(query_params, "valid_at"), params.single(query_params, "known_at")
        )
    except HistoryError as exc:
        raise bad_request(str(exc)) from None


def source_at(collection: Collection, at: Moment | None):
    try:
        return collection.source(at)
    except HistoryError as exc:
        raise bad_request(str(exc)) from None


def build_items_query(request: Request, collection: Collection):
    """The page query, its count query and the output CRS, from the request's parameters."""
    query_params = request.query_params
    filterable = {p.name for p in collection.properties if p.filterable}
    params.check_known(query_params, params.ITEMS_PARAMS | filterable)
    crs = params.parse_crs_param("crs", params.single(query_params, "crs"))
    bbox_crs = params.parse_crs_param("bbox-crs", params.single(query_params, "bbox-crs"))
    filter_crs = params.parse_crs_param("filter-crs", params.single(query_params, "filter-crs"))
    params.parse_filter_lang(params.single(query_params, "filter-lang"))
    source = source_at(collection, moment_of(request))
    conditions = []
    text = params.single(query_params, "filter")
    if text is not None:
        try:
            conditions.append(
                cql2.to_sql(text, cql2_queryables(collection, source), filter_crs.srid)
            )
        except cql2.FilterError as exc:
            raise bad_request(str(exc)) from None
    temporal = temporal_filter(collection, source, params.single(query_params, "datetime"))
    if temporal is not None:
        conditions.append(temporal)
    query = ItemsQuery(
        collection=collection,
        limit=params.parse_limit(params.single(query_params, "limit")),
        after=params.single(query_params, "after"),
        bbox=params.parse_bbox(params.single(query_params, "bbox"), bbox_crs),
        equals=params.parse_equals(query_params, collection),
        filter=and_(*conditions) if conditions else None,
        crs=crs,
    )
    return query, items_select(query, source), count_select(query, source), crs


def next_link(request: Request, last_id: str, limit: int) -> dict[str, str]:
    query = [(k, v) for k, v in request.query_params.multi_items() if k not in ("after", "limit")]
    query += [("limit", str(limit)), ("after", last_id)]
    href = base_url(request) + request.url.path + "?" + urlencode(query)
    return link(href, "next", GEOJSON, "the next page")


@router.get(
    "/collections/{collectionId}/items",
    dependencies=SIGNED_IN,
    summary="Features of a collection",
    tags=["Data"],
)
async def items(request: Request, collectionId: str) -> Response:
    collection = collection_or_404(collectionId)
    fmt = params.output_format(request.query_params, request.headers.get("accept"))
    query, page, count, crs = build_items_query(request, collection)
    bound = collection.params(moment_of(request))
    database = request.app.state.database
    headers = {"Content-Crs": f"<{crs.uri}>"}

    if fmt == "html":
        matched: int | None = None
        if query.after is None:
            async with database.scoped(principal_of(request)) as conn:
                total = (await conn.execute(count, bound)).scalar_one()
            matched = total if total <= MAX_COUNT else None
        return await html_items(request, collection, page, bound, query, matched)

    document = page_select(page, query.limit, count if query.after is None else None)
    async with database.scoped(principal_of(request)) as conn:
        row = (await conn.execute(document, bound)).one()
    links = self_links(request, fmt, GEOJSON)
    if row.more and row.last_id is not None:
        links.append(next_link(request, row.last_id, query.limit))
    tail: dict[str, Any] = {
        "numberReturned": row.returned,
        "timeStamp": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "links": links,
    }
    if row.matched is not None and row.matched <= MAX_COUNT:
        tail["numberMatched"] = row.matched
    body = "".join(
        (
            '{"type":"FeatureCollection","features":[',
            row.features or "",
            "],",
            json.dumps(tail, ensure_ascii=False)[1:],
        )
    )
    return Response(body.encode(), media_type=GEOJSON, headers=headers)


async def html_items(
    request: Request,
    collection: Collection,
    page: Select,
    bound: dict,
    query: ItemsQuery,
    matched: int | None,
) -> HTMLResponse:
    async with request.app.state.database.scoped(principal_of(request)) as conn:
        rows = (await conn.execute(page, bound)).all()
    features = [json.loads(row.feature) for row in rows[: query.limit]]
    links = self_links(request, "html", GEOJSON)
    if len(rows) > query.limit:
        links.append(next_link(request, rows[query.limit - 1].id, query.limit))
    title = f"{collection.title}: {len(features)} features" + (
        f" of {matched}" if matched is not None else ""
    )
    return HTMLResponse(html.features(title, {"features": features}, links))


@router.get(
    "/collections/{collectionId}/items/{featureId}",
    dependencies=SIGNED_IN,
    summary="One feature",
    tags=["Data"],
)
async def item(request: Request, collectionId: str, featureId: str) -> Response:
    collection = collection_or_404(collectionId)
    params.check_known(request.query_params, {"f", "crs", "valid_at", "known_at"})
    fmt = params.output_format(request.query_params, request.headers.get("accept"))
    crs: Crs = params.parse_crs_param("crs", params.single(request.query_params, "crs"))
    at = moment_of(request)
    source_at(collection, at)  # a 400 for a collection without history
    select_item = item_select(collection, featureId, crs, at)
    async with request.app.state.database.scoped(principal_of(request)) as conn:
        text = (await conn.execute(select_item, collection.params(at))).scalar_one_or_none()
    if text is None:
        if collection.id == "buildings":
            from api.lineage import missing_building  # 410 Gone for a retired id

            gone = await missing_building(request, principal_of(request), featureId)
            if gone.status == 410:
                raise gone
        raise not_found(f"collection {collection.id!r} has no feature {featureId!r}")
    feature = json.loads(text)
    here = f"{base_url(request)}/collections/{collection.id}"
    feature["links"] = [
        *self_links(request, fmt, GEOJSON),
        link(here, "collection", "application/json", collection.title),
    ]
    if fmt == "html":
        return HTMLResponse(
            html.features(
                f"{collection.title} {featureId}", {"features": [feature]}, feature["links"]
            )
        )
    return JSONResponse(feature, media_type=GEOJSON, headers={"Content-Crs": f"<{crs.uri}>"})
