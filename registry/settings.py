"""Where the registry keeps its state and which database it talks to."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import make_url


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
    api_database_url: str | None = Field(
        default=None,
        description="The API's own connection, as a role that owns nothing (registry_api); "
        "default: the database URL with user registry_api and the API password.",
    )
    notebook_dir: Path | None = Field(
        default=None,
        description="Where `registry report` finds its notebooks; default: the clone's "
        "notebooks/ (an installed image sets it)",
    )
    api_password: str | None = Field(
        default=None, description="registry_api's password; default: $REGISTRY_HOME/api-password"
    )

    @property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def key_path(self) -> Path:
        return (self.key_file or self.home_dir / "keys.json").expanduser().resolve()

    @property
    def api_password_path(self) -> Path:
        return self.home_dir / "api-password"


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


API_ROLE = "registry_api"


def api_password(settings: Settings, create: bool = False) -> str:
    """The API role's password: from the settings, else the file in the home directory
    (created with a random password, mode 600, when ``create``)."""
    if settings.api_password:
        return settings.api_password
    path = settings.api_password_path
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24))
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        raise RegistryError(
            f"no API password: {path} does not exist. Run `registry db up` or "
            "`registry db migrate`, or set REGISTRY_API_DATABASE_URL / REGISTRY_API_PASSWORD"
        ) from None


def resolve_api_database_url(settings: Settings) -> str:
    """Where the API connects: its own URL if set, else the registry's database as
    ``registry_api`` — never as the owner, so row-level security applies to it."""
    if settings.api_database_url:
        return sqlalchemy_url(settings.api_database_url)
    owner = make_url(resolve_database_url(settings))
    url = owner.set(username=API_ROLE, password=api_password(settings))
    return url.render_as_string(hide_password=False)
