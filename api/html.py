"""Plain HTML views of the JSON resources, for people browsing the API: no scripts, no CDN."""

from __future__ import annotations

import html
import json
from typing import Any

STYLE = (
    "body{font-family:system-ui,'Noto Sans CJK SC',sans-serif;margin:2em;max-width:80em}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .5em;"
    "text-align:left;vertical-align:top}th{background:#f3f3f3}"
)


def escape(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, dict | list):
        return html.escape(json.dumps(value, ensure_ascii=False))
    return html.escape(str(value))


def page(title: str, body: str) -> str:
    return (
        f'<!doctype html><html lang="zh"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        # no icon: browsers would otherwise ask for /favicon.ico and log its 404
        f'<link rel="icon" href="data:,"><title>{escape(title)}'
        f"</title><style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>"
    )


def links_list(links: list[dict[str, Any]]) -> str:
    items = "".join(
        f'<li><a href="{escape(link["href"])}">{escape(link.get("title") or link["rel"])}</a>'
        f" <small>({escape(link['rel'])}, {escape(link.get('type', ''))})</small></li>"
        for link in links
    )
    return f"<ul>{items}</ul>"


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{escape(row.get(c))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def resource(title: str, document: dict[str, Any]) -> str:
    """A landing page, conformance, collection or collections document."""
    parts = []
    if document.get("description"):
        parts.append(f"<p>{escape(document['description'])}</p>")
    if "conformsTo" in document:
        parts.append(
            "<ul>" + "".join(f"<li>{escape(c)}</li>" for c in document["conformsTo"]) + "</ul>"
        )
    for collection in document.get("collections", []):
        parts.append(
            f"<h2>{escape(collection['title'])}</h2><p>{escape(collection['description'])}</p>"
        )
        parts.append(links_list(collection["links"]))
    parts.append(links_list(document.get("links", [])))
    return page(title, "".join(parts))


def features(title: str, collection: dict[str, Any], links: list[dict[str, Any]]) -> str:
    """A page of features as a table of ids and properties."""
    rows = [{"id": f.get("id"), **(f.get("properties") or {})} for f in collection["features"]]
    columns = list(dict.fromkeys(c for row in rows for c in row))
    return page(title, table(rows, columns) + links_list(links))
