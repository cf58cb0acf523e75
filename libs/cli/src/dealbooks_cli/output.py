"""What a command prints: JSON for `--json`, otherwise a plain table."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import typer


def emit_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def table(
    rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], width: int = 60
) -> str:
    """Rows as aligned columns (`columns` is (key, heading)); long cells are cut at `width`."""
    cells = [[_cell(row.get(key), width) for key, _ in columns] for row in rows]
    headings = [heading for _, heading in columns]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headings)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headings, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any, width: int) -> str:
    text = "" if value is None else str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"
