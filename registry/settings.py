"""Where the registry keeps its state and which database it talks to."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class RegistryError(Exception):
    """An expected failure with a message meant for the user: printed, never a traceback."""


class Settings(BaseSettings):
    """Settings from the environment.

    ``REGISTRY_HOME`` holds the embedded cluster and the key file; ``DATABASE_URL``
    points at an external PostGIS instead (for example a docker compose service).
    """

    model_config = SettingsConfigDict(env_prefix="REGISTRY_", extra="ignore")

    home: Path = Field(default=Path(".registry"))
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "REGISTRY_DATABASE_URL")
    )
    key_file: Path | None = None

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def key_path(self) -> Path:
        return (self.key_file or self.home_dir / "keys.json").expanduser().resolve()


def sqlalchemy_url(url: str) -> str:
    """Normalise a libpq-style URL to SQLAlchemy's psycopg 3 dialect."""
    for prefix in ("postgresql+psycopg2://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def resolve_database_url(settings: Settings) -> str:
    """``DATABASE_URL`` if set, else the running embedded cluster, else a clear error."""
    if settings.database_url:
        return sqlalchemy_url(settings.database_url)
    from registry.embedded import EmbeddedCluster

    url = EmbeddedCluster(settings.home_dir).running_url()
    if url is None:
        raise RegistryError(
            f"no database: DATABASE_URL is not set and no embedded cluster is running in "
            f"{settings.home_dir}. Run `registry db up` first."
        )
    return url
