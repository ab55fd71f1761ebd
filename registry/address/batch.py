"""Matching a CSV file of free-text addresses: the work behind ``registry match``.

The output keeps every input column and adds ``address_code``, ``room_id``, ``score``,
``method`` and ``status``; rows are matched in batches so the rooms of a batch's
candidate buildings are read together.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from sqlalchemy.orm import Session

from registry.address.match import Matcher
from registry.address.review import queue
from registry.bundle.problems import BundleError
from registry.bundle.read import decode_text
from registry.settings import RegistryError

ADDED_COLUMNS = ("address_code", "room_id", "score", "method", "status")
BATCH = 2_000


def read_rows(path: Path, column: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of a CSV in UTF-8 (with or without BOM) or GB18030."""
    try:
        text, _ = decode_text(path)
    except BundleError as exc:
        raise RegistryError(str(exc.problem)) from None
    except OSError as exc:
        raise RegistryError(f"cannot read {path}: {exc.strerror}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = [name.strip() for name in reader.fieldnames or []]
    if not header:
        raise RegistryError(f"{path.name}: has no header row")
    reader.fieldnames = header
    if column not in header:
        raise RegistryError(f"{path.name}: no column {column!r}; columns: {', '.join(header)}")
    clashes = [c for c in ADDED_COLUMNS if c in header]
    if clashes:
        raise RegistryError(
            f"{path.name}: already has column {clashes[0]!r}, which the output adds"
        )
    rows = [{k: v or "" for k, v in row.items() if k is not None} for row in reader]
    return header, rows


def match_csv(
    session: Session,
    source: Path,
    column: str,
    out: Path,
    *,
    queue_source: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> Counter[str]:
    """Match every row's ``column``; write ``out`` (UTF-8 with BOM, for Excel); return the
    count of each status. With ``queue_source``, rows not placed join the review queue."""
    header, rows = read_rows(source, column)
    matcher = Matcher.load(session)
    counts: Counter[str] = Counter()
    partial = out.with_name(out.name + ".partial")
    try:
        write_matches(
            session, matcher, rows, header, column, partial, queue_source, progress, counts
        )
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(out)
    return counts


def write_matches(
    session: Session,
    matcher: Matcher,
    rows: list[dict[str, str]],
    header: list[str],
    column: str,
    partial: Path,
    queue_source: str | None,
    progress: Callable[[int], None] | None,
    counts: Counter[str],
) -> None:
    with partial.open("w", newline="", encoding="utf-8-sig") as handle:
        writer = csv.DictWriter(handle, [*header, *ADDED_COLUMNS], lineterminator="\n")
        writer.writeheader()
        for start in range(0, len(rows), BATCH):
            batch = rows[start : start + BATCH]
            for row, result in zip(
                batch, matcher.match_many([r[column] for r in batch]), strict=True
            ):
                counts[result.status] += 1
                row.update(
                    address_code=result.address_code or "",
                    room_id=result.room_id or "",
                    score=f"{result.score:.3f}",
                    method=result.method,
                    status=result.status,
                )
                writer.writerow(row)
                if queue_source and result.status != "matched":
                    queue(session, result, queue_source)
            if progress:
                progress(len(batch))
