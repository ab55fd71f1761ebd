"""Problems found in a bundle, each naming its file, row or feature, field and reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding. ``row`` is the 1-based feature number of a geometric layer or the
    spreadsheet row of a CSV file (the header is row 1, so data starts at row 2)."""

    file: str
    row: int | None
    field: str | None
    reason: str
    severity: Severity = "error"
    unit: str = "row"

    @property
    def where(self) -> str:
        parts = [self.file]
        if self.row is not None:
            parts.append(f"{self.unit} {self.row}")
        if self.field:
            parts.append(f"field {self.field}")
        return ", ".join(parts)

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"

    def as_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "row": self.row,
            "field": self.field,
            "reason": self.reason,
            "severity": self.severity,
        }


class BundleError(Exception):
    """A bundle that cannot be read at all (missing directory, unreadable bundle.json)."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem
