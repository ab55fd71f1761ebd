"""HTTP API over the registry: OGC API Features, tiles, coverage reports and exports.

``create_app(settings)`` builds the FastAPI application; ``registry serve`` runs it
with uvicorn. Handlers are async over one pooled engine (:mod:`api.database`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Response
from fastapi.staticfiles import StaticFiles

from api import (
    addresses,
    auth,
    checks,
    exports,
    features,
    fieldwork,
    history,
    lineage,
    openapi,
    organizations,
    persons,
    reports,
    security,
    tiles,
    webmap,
)
from api.auth import SIGNED_IN, CredentialCache
from api.database import Database
from api.disconnect import CancelOnDisconnect
from api.problems import install_problem_handlers
from api.settings import ApiSettings

STATIC_DIR = Path(__file__).parent / "static"


def create_app(settings: ApiSettings | None = None) -> FastAPI:
    """The application for ``settings`` (default: from the environment).

    The database is resolved when the app starts (DATABASE_URL, else the running
    embedded cluster), exactly as the CLI resolves it.
    """
    settings = settings or ApiSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.database = Database.from_settings(settings)
        await app.state.database.check_role()
        try:
            yield
        finally:
            await app.state.database.dispose()

    app = FastAPI(
        title="一标三实 registry",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,  # served by api.openapi: OpenAPI 3.0, self-contained
    )
    app.state.settings = settings
    app.state.credentials = CredentialCache(settings.auth_cache_seconds)
    install_problem_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    modules = (
        features,
        openapi,
        tiles,
        reports,
        checks,
        exports,
        addresses,
        persons,
        organizations,
        fieldwork,
        lineage,
        history,
        webmap,
    )
    # anonymous: the landing page, conformance, the API document, sign-in (features and
    # openapi mark their own routes); everything else needs a token or a session
    app.include_router(auth.router)
    for module in modules:
        signed = module not in (features, openapi)
        app.include_router(module.router, dependencies=SIGNED_IN if signed else None)
    # other routers add links to the landing page and collections, and conformance classes
    app.state.landing_links = lambda root: [
        link for m in modules if hasattr(m, "landing_links") for link in m.landing_links(root)
    ]
    app.state.collection_links = lambda root, collection: [
        link
        for m in modules
        if hasattr(m, "collection_links")
        for link in m.collection_links(root, collection)
    ]
    app.state.conformance = [c for m in modules for c in getattr(m, "CONFORMANCE", [])]

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        """No icon, and no 404 for browsers that ask for one anyway."""
        return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(CancelOnDisconnect)
    # a verification may carry a photo: its route takes the photo limit plus the fields
    uploads = {security.VERIFICATION_UPLOAD: settings.photo_max_kb + 64}
    security.install(app, settings.max_body_kb, settings.basemap_url, uploads)
    return app
