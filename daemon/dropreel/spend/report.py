"""`dropreel spend`: what generations cost, summed per day, model and provider. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# (created at, provider, model, cost or None, is an estimate) of one generation.
SpendRow = tuple[float, str, object, float | None, bool]


@dataclass(slots=True)
class SpendLine:
    day: str
    provider: str
    model: str
    generations: int = 0
    usd: float = 0.0
    estimated: int = 0  # generations whose cost is an estimate
    unknown: int = 0  # generations whose cost nobody could tell

    def record(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "provider": self.provider,
            "model": self.model,
            "generations": self.generations,
            "cost_usd": round(self.usd, 6),
            "estimated": self.estimated,
            "unknown": self.unknown,
        }


def spend_lines(rows: Sequence[SpendRow]) -> list[SpendLine]:
    """One line per local day, provider and model, oldest day first."""
    lines: dict[tuple[str, str, str], SpendLine] = {}
    for at, provider, model, cost, estimate in rows:
        day = datetime.fromtimestamp(at).date().isoformat()
        name = model if isinstance(model, str) and model else "-"
        line = lines.setdefault((day, provider, name), SpendLine(day, provider, name))
        line.generations += 1
        if cost is None:
            line.unknown += 1
            continue
        line.usd += cost
        line.estimated += int(estimate)
    return [lines[key] for key in sorted(lines)]


def spend_table(lines: Sequence[SpendLine]) -> str:
    """The lines as a table for people, with a total."""
    if not lines:
        return "no generations in this period"
    rows = [["DAY", "PROVIDER", "MODEL", "GENERATIONS", "COST"]]
    for line in lines:
        rows.append([line.day, line.provider, line.model, str(line.generations), _cost(line)])
    total = SpendLine("total", "", "")
    for line in lines:
        total.generations += line.generations
        total.usd += line.usd
        total.estimated += line.estimated
        total.unknown += line.unknown
    rows.append(["total", "", "", str(total.generations), _cost(total)])
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[4]]).rstrip()
        for row in rows
    )


def _cost(line: SpendLine) -> str:
    known = line.generations - line.unknown
    if not known:
        return "unknown"
    text = f"${line.usd:.2f}"
    if line.estimated:
        text += " (estimate)" if line.estimated == known else f" ({line.estimated} estimated)"
    if line.unknown:
        text += f" + {line.unknown} of unknown cost"
    return text
