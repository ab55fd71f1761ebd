"""``registry keys``: the identity-number keys (rotation).

Mounted by registry/cli.py as ``app.add_typer(keys_app, name="keys")``; the helpers of
registry.cli are imported inside the command, since registry.cli imports this module.
Nothing here prints an identity number, a key or a look-up HMAC.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

keys_app = typer.Typer(
    help="The identity-number keys: rotate them without downtime.", no_args_is_help=True
)

PROGRESS_SECONDS = 5.0  # at most one progress line this often


@keys_app.command("rotate")
def rotate_command(
    batch_size: Annotated[
        int, typer.Option(min=1, help="Persons re-encrypted per transaction.")
    ] = 1000,
    retire: Annotated[
        bool,
        typer.Option(
            "--retire/--keep-old",
            help="When every person is under the new key, remove the old keys from the "
            "key file (the previous file is kept as a backup).",
        ),
    ] = False,
) -> None:
    """Re-encrypt every identity number under new keys, in batches, while the registry
    stays in use; run it again to resume after an interruption."""
    from registry.cli import reports_errors

    reports_errors(run_rotation)(batch_size, retire)


def run_rotation(batch_size: int, retire: bool) -> None:
    from registry.cli import console, err, migrated_engine
    from registry.keys import rotate
    from registry.settings import Settings

    settings = Settings()
    engine = migrated_engine(settings)
    last = time.monotonic()

    def progress(done: int, total: int) -> None:
        nonlocal last
        if done == 0 or time.monotonic() - last >= PROGRESS_SECONDS:
            last = time.monotonic()
            err.print(f"re-encrypted {done} of {total} persons", highlight=False)

    try:
        result = rotate(engine, settings.key_path, batch_size, progress, retire=retire)
    finally:
        engine.dispose()
    for backup in result.backups:
        err.print(f"previous key file kept as {backup} (mode 600)", highlight=False)
    action = "resumed rotation" if result.resumed else "rotated"
    console.print(
        f"{action} key version {result.from_version} -> {result.to_version}: "
        f"{result.rows} persons re-encrypted now, {result.total_rows} in all",
        highlight=False,
    )
    if result.retired:
        retired = ", ".join(map(str, result.retired))
        console.print(f"retired key versions {retired} from {settings.key_path}", highlight=False)
    if not result.finished:
        err.print(
            f"{result.remaining} persons are still under older keys: run "
            "`registry keys rotate` again",
            highlight=False,
        )
        raise typer.Exit(1)
