"""HTTP API over the registry. The OGC API Features, tiles and reports arrive with the API issue."""

from __future__ import annotations

from fastapi import FastAPI

from registry.settings import Settings


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI application for ``settings`` (default: from the environment)."""
    app = FastAPI(title="一标三实 registry", version="0.1.0")
    app.state.settings = settings or Settings()

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
