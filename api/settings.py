"""Settings of the HTTP API: the registry's own, plus what only a server needs."""

from __future__ import annotations

from pydantic import Field

from registry.settings import Settings


class ApiSettings(Settings):
    """``REGISTRY_*`` environment variables; the database resolves as for the CLI."""

    statement_timeout_ms: int = Field(default=30_000, ge=100)
    pool_size: int = Field(default=10, ge=1)
    max_overflow: int = Field(default=10, ge=0)
    public_url: str | None = Field(
        default=None,
        description="Base URL clients see (behind a proxy); default: from the request.",
    )
    basemap_url: str | None = Field(
        default=None,
        description="XYZ raster tile URL for report and web maps, e.g. a district tile server; "
        "none by default, so maps work offline with no base layer.",
    )
    basemap_attribution: str | None = Field(
        default=None, description="Attribution shown for the base map tiles."
    )
    tile_cache_size: int = Field(default=2048, ge=0, description="tiles kept per worker")
    tile_cache_mb: int = Field(
        default=128, ge=0, description="megabytes of tile bodies kept per worker"
    )
    session_hours: int = Field(default=12, ge=1, description="lifetime of a sign-in session")
    login_attempts: int = Field(
        default=5, ge=1, description="failed sign-ins per account or address per 15 minutes"
    )
    auth_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="how long a checked token is trusted before it is looked up again "
        "(revocation and expiry take effect within this delay)",
    )
    max_body_kb: int = Field(
        default=1024, ge=1, description="largest request body accepted, in kilobytes"
    )
    verification_cycle_days: int = Field(
        default=90,
        ge=1,
        le=3650,
        description="a building verified longer ago than this is due again (work lists, "
        "verified rate)",
    )
    photo_max_kb: int = Field(
        default=5120, ge=16, description="largest evidence photo accepted, in kilobytes"
    )
