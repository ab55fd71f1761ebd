"""What every ``registry`` command shares: the consoles, error reporting, the engine."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from registry.bundle.problems import BundleError
from registry.db import check_schema, make_engine
from registry.settings import RegistryError, Settings, resolve_database_url

console = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn expected failures into a message and exit code 1 instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except BundleError as exc:
            err.print(f"[red]error:[/red] {exc.problem}", markup=True, highlight=False)
        except RegistryError as exc:
            err.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        except OperationalError as exc:
            err.print(f"[red]error:[/red] database unavailable: {exc.orig}", highlight=False)
        raise typer.Exit(1)

    return wrapper


def migrated_engine(settings: Settings) -> Engine:
    engine = make_engine(resolve_database_url(settings))
    check_schema(engine)
    return engine
