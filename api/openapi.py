"""The API definition: a self-contained OpenAPI 3.0 document, and an offline HTML view of it.

The OGC resources read their parameters from the raw query string (each collection has
its own property filters), so their paths are written out here per collection — GDAL
pushes a ``-where`` equality to the server only for properties it finds declared as
query parameters of ``/collections/<id>/items``. The other routers' paths come from
FastAPI and are converted to OpenAPI 3.0 (OGC API Features' oas30 class; FastAPI emits
3.1). Every ``$ref`` is local: the document validates offline.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse

from api import html
from api.params import DEFAULT_LIMIT, FILTER_LANGS, FORMATS, MAX_LIMIT
from geo.crs import CRS84, SUPPORTED
from registry.collections import COLLECTIONS, Collection

OGC_PATHS = {"/", "/conformance", "/collections", "/collections/{collectionId}"}
JSON_TYPES = {"string", "integer", "number", "boolean"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def response(description: str, media: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": media}


PROBLEM = {"application/problem+json": {"schema": ref("Problem")}}
ERRORS = {
    "400": {"description": "A parameter is invalid", "content": PROBLEM},
    "404": {"description": "Not found", "content": PROBLEM},
    "503": {"description": "The query took too long", "content": PROBLEM},
}


def query_param(name: str, schema: dict[str, Any], description: str, **extra: Any) -> dict:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
        **extra,
    }


F_PARAM = query_param("f", {"type": "string", "enum": list(FORMATS)}, "response format")
CRS_ENUM = {"type": "string", "enum": list(SUPPORTED), "default": CRS84}


def history_parameters(collection: Collection) -> list[dict[str, Any]]:
    """``valid_at`` and ``known_at``: the features as they were (docs/history.md)."""
    if collection.id == "coverage-gaps":
        return []
    return [
        query_param(
            "valid_at",
            {"type": "string"},
            "the features as valid at this date (its end) or date-time (ISO 8601)",
        ),
        query_param(
            "known_at",
            {"type": "string"},
            "only what the register had recorded by this date-time (ISO 8601)",
        ),
    ]


def items_parameters(collection: Collection) -> list[dict[str, Any]]:
    params = [
        query_param(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
            "features per page; a larger value is served as the maximum",
            style="form",
            explode=False,
        ),
        query_param(
            "bbox",
            {"type": "array", "minItems": 4, "maxItems": 6, "items": {"type": "number"}},
            "minimum and maximum corners, in bbox-crs axis order",
            style="form",
            explode=False,
        ),
        query_param("bbox-crs", CRS_ENUM, "CRS of bbox"),
        query_param("crs", CRS_ENUM, "CRS of the response geometries (Content-Crs)"),
        query_param(
            "datetime",
            {"type": "string"},
            "instant or interval (RFC 3339, `..` open); buildings: verified_at",
        ),
        query_param("after", {"type": "string"}, "keyset cursor: features with a larger id"),
        query_param("filter", {"type": "string"}, "CQL2-text filter over the queryables"),
        query_param(
            "filter-lang", {"type": "string", "enum": list(FILTER_LANGS)}, "filter language"
        ),
        query_param("filter-crs", CRS_ENUM, "CRS of geometries in filter"),
        *history_parameters(collection),
        F_PARAM,
    ]
    for prop in collection.properties:
        if not prop.filterable:
            continue
        schema: dict[str, Any] = {"type": prop.type if prop.type in JSON_TYPES else "string"}
        if prop.enum:
            schema["enum"] = list(prop.enum)
        params.append(
            query_param(prop.name, schema, f"only features whose {prop.name} equals this")
        )
    return params


def ogc_paths() -> dict[str, Any]:
    json_doc = {"application/json": {"schema": {"type": "object"}}, "text/html": {}}
    collection_id = {
        "name": "collectionId",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": list(COLLECTIONS)},
    }
    paths: dict[str, Any] = {
        "/": {
            "get": {
                "tags": ["Capabilities"],
                "summary": "Landing page",
                "operationId": "getLandingPage",
                "parameters": [F_PARAM],
                "responses": {"200": response("Links to the API", json_doc), **ERRORS},
            }
        },
        "/conformance": {
            "get": {
                "tags": ["Capabilities"],
                "summary": "Conformance classes",
                "operationId": "getConformance",
                "parameters": [F_PARAM],
                "responses": {"200": response("Conformance classes", json_doc), **ERRORS},
            }
        },
        "/collections": {
            "get": {
                "tags": ["Data"],
                "summary": "The feature collections",
                "operationId": "getCollections",
                "parameters": [F_PARAM],
                "responses": {"200": response("Collections", json_doc), **ERRORS},
            }
        },
        "/collections/{collectionId}": {
            "get": {
                "tags": ["Data"],
                "summary": "A feature collection",
                "operationId": "describeCollection",
                "parameters": [collection_id, F_PARAM],
                "responses": {"200": response("The collection", json_doc), **ERRORS},
            }
        },
        "/collections/{collectionId}/queryables": {
            "get": {
                "tags": ["Data"],
                "summary": "Queryable properties (JSON Schema)",
                "operationId": "getQueryables",
                "parameters": [collection_id, F_PARAM],
                "responses": {
                    "200": response(
                        "Queryables",
                        {
                            "application/schema+json": {"schema": {"type": "object"}},
                            "text/html": {},
                        },
                    ),
                    **ERRORS,
                },
            }
        },
    }
    geojson = {"application/geo+json": {"schema": ref("FeatureCollection")}, "text/html": {}}
    feature = {"application/geo+json": {"schema": ref("Feature")}, "text/html": {}}
    for collection in COLLECTIONS.values():
        path = f"/collections/{collection.id}/items"
        paths[path] = {
            "get": {
                "tags": ["Data"],
                "summary": f"{collection.title}: features",
                "description": collection.description,
                "operationId": f"getFeatures_{collection.id.replace('-', '_')}",
                "parameters": items_parameters(collection),
                "responses": {"200": response("A page of features", geojson), **ERRORS},
            }
        }
        paths[path + "/{featureId}"] = {
            "get": {
                "tags": ["Data"],
                "summary": f"{collection.title}: one feature",
                "operationId": f"getFeature_{collection.id.replace('-', '_')}",
                "parameters": [
                    {
                        "name": "featureId",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    query_param("crs", CRS_ENUM, "CRS of the response geometry"),
                    *history_parameters(collection),
                    F_PARAM,
                ],
                "responses": {"200": response("The feature", feature), **ERRORS},
            }
        }
    return paths


SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details",
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
        },
    },
    "Link": {
        "type": "object",
        "required": ["href", "rel"],
        "properties": {
            "href": {"type": "string"},
            "rel": {"type": "string"},
            "type": {"type": "string"},
            "title": {"type": "string"},
        },
    },
    "Feature": {
        "type": "object",
        "required": ["type", "geometry", "properties"],
        "properties": {
            "type": {"type": "string", "enum": ["Feature"]},
            "id": {"type": "string"},
            "geometry": {"type": "object", "nullable": True},
            "properties": {"type": "object", "nullable": True},
            "links": {"type": "array", "items": ref("Link")},
        },
    },
    "FeatureCollection": {
        "type": "object",
        "required": ["type", "features"],
        "properties": {
            "type": {"type": "string", "enum": ["FeatureCollection"]},
            "features": {"type": "array", "items": ref("Feature")},
            "links": {"type": "array", "items": ref("Link")},
            "timeStamp": {"type": "string", "format": "date-time"},
            "numberMatched": {"type": "integer", "minimum": 0},
            "numberReturned": {"type": "integer", "minimum": 0},
        },
    },
}


def to_openapi30(node: Any) -> Any:
    """Rewrite the JSON Schema 2020-12 forms FastAPI emits into their OpenAPI 3.0 forms."""
    if isinstance(node, list):
        return [to_openapi30(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: to_openapi30(v) for k, v in node.items()}
    for key in ("anyOf", "oneOf"):
        options = node.get(key)
        if isinstance(options, list) and {"type": "null"} in options:
            rest = [o for o in options if o != {"type": "null"}]
            node.pop(key)
            if len(rest) == 1:
                node.update(rest[0])
            else:
                node[key] = rest
            node["nullable"] = True
    if isinstance(node.get("type"), list):
        types = [t for t in node["type"] if t != "null"]
        if len(types) < len(node["type"]):
            node["nullable"] = True
        node["type"] = types[0] if len(types) == 1 else "string"
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if isinstance(node.get("examples"), list) and "in" not in node:
        examples = node.pop("examples")
        if examples:
            node["example"] = examples[0]
    for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), int | float) and not isinstance(node[bound], bool):
            node[flag] = node.pop(bound)
            node[bound] = True
    node.pop("contentMediaType", None)
    return node


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """The whole document, generated once and cached on the app."""
    if app.openapi_schema:
        return app.openapi_schema
    generated = get_openapi(title=app.title, version=app.version, routes=app.routes)
    document = to_openapi30(copy.deepcopy(generated))
    document["openapi"] = "3.0.3"
    document["info"]["description"] = (
        "OGC API – Features (Parts 1, 2 and 3), vector and GeoJSON tiles, coverage reports "
        "and exports of the 一标三实 registry."
    )
    paths = {p: v for p, v in document.get("paths", {}).items() if p not in OGC_PATHS}
    document["paths"] = {**ogc_paths(), **paths}
    components = document.setdefault("components", {})
    components.setdefault("schemas", {}).update(SCHEMAS)
    declare_security(document)
    app.openapi_schema = document
    return document


ANONYMOUS_PATHS = frozenset({"/", "/conformance", "/api", "/api.html"})
UNAUTHORIZED = {
    "description": "Not signed in: send Authorization: Bearer <token> (docs/security.md).",
    "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def declare_security(document: dict[str, Any]) -> None:
    """Bearer tokens everywhere but the anonymous paths, each of which says it is open."""
    document["components"]["securitySchemes"] = {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from `registry token create NAME` (docs/security.md).",
        }
    }
    document["security"] = [{"bearerAuth": []}]
    for path, operations in document["paths"].items():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            if path in ANONYMOUS_PATHS:
                operation["security"] = []
            else:
                operation["responses"].setdefault("401", UNAUTHORIZED)


router = APIRouter(include_in_schema=False)
OPENAPI_JSON = "application/vnd.oai.openapi+json;version=3.0"


@router.get("/api")
async def openapi_document(request: Request) -> JSONResponse:
    return JSONResponse(build_openapi(request.app), media_type=OPENAPI_JSON)


@router.get("/api.html")
async def openapi_page(request: Request) -> HTMLResponse:
    """The API definition as a plain page: every path, its parameters and responses."""
    document = build_openapi(request.app)
    rows = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            parameters = ", ".join(p["name"] for p in operation.get("parameters", []))
            rows.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": operation.get("summary"),
                    "parameters": parameters,
                    "responses": ", ".join(operation.get("responses", {})),
                }
            )
    body = '<p>Machine-readable: <a href="api">OpenAPI 3.0 document</a>.</p>' + html.table(
        rows, ["method", "path", "summary", "parameters", "responses"]
    )
    return HTMLResponse(html.page(document["info"]["title"] + " API", body))
