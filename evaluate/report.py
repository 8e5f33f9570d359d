"""Paper-style tables: rows = methods or configurations, columns = mAP@tIoU and Avg (mean ± std).

A row is a results document (``{"tiou", "mean", "std", ...}``, the ``results.json`` layout) or one
``MAPResult.to_dict()`` (``{"tiou", "map", "avg"}``, no std).
"""
from __future__ import annotations

import csv
import io
from typing import Mapping, Sequence

from .pages import render
from .tables import EvaluationError

FORMATS = ("terminal", "markdown", "csv", "html")


def _figures(row: Mapping) -> tuple[list[float], float, list[float] | None, float | None]:
    if "mean" in row:
        std = row.get("std") or {}
        return list(row["mean"]["map"]), row["mean"]["avg"], std.get("map"), std.get("avg")
    return list(row["map"]), row["avg"], None, None


def _columns(rows: Mapping[str, Mapping], tious: Sequence[float] | None) -> list[float]:
    first = list(next(iter(rows.values()))["tiou"])
    for name, row in rows.items():
        if [round(t, 4) for t in row["tiou"]] != [round(t, 4) for t in first]:
            raise EvaluationError(f"row {name!r} has thresholds {row['tiou']}, the first row has {first}")
    return list(tious) if tious else first


def _cell(mean: float, std: float | None, digits: int) -> str:
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _header_body(rows: Mapping[str, Mapping], tious: Sequence[float] | None) -> tuple[list[str], list]:
    """The column names and, per row, its name and (mean, std) figures of the shown columns and Avg."""
    if not rows:
        raise EvaluationError("no rows to tabulate")
    columns = _columns(rows, tious)
    header = ["method"] + [f"mAP@{t:g}" for t in columns] + ["Avg"]
    body = []
    for name, row in rows.items():
        maps, avg, map_std, avg_std = _figures(row)
        index = [[round(t, 4) for t in row["tiou"]].index(round(t, 4)) for t in columns]
        body.append((name, [(maps[i], map_std[i] if map_std else None) for i in index] + [(avg, avg_std)]))
    return header, body


def table_cells(rows: Mapping[str, Mapping], tious: Sequence[float] | None = None, digits: int = 2) -> list[list[str]]:
    """The table of ``rows`` as text cells, header first (what the terminal, Markdown and HTML show)."""
    header, body = _header_body(rows, tious)
    return [header] + [[name] + [_cell(m, s, digits) for m, s in figures] for name, figures in body]


def format_table(rows: Mapping[str, Mapping], fmt: str = "terminal", tious: Sequence[float] | None = None,
                 digits: int = 2) -> str:
    """The table of ``rows`` (name -> row) as aligned text, Markdown, CSV or an HTML ``<table>``.

    ``tious`` picks the threshold columns shown (e.g. 0.5, 0.75, 0.95 for ActivityNet); Avg is
    always the mean over all thresholds of the row. CSV has separate ``_std`` columns.
    """
    if fmt not in FORMATS:
        raise EvaluationError(f"unknown table format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return _csv(*_header_body(rows, tious))
    cells = table_cells(rows, tious, digits)
    if fmt == "html":
        return render("table.html", cells=cells).strip()
    return _markdown(cells) if fmt == "markdown" else _aligned(cells)


def _aligned(cells: list[list[str]]) -> str:
    widths = [max(len(row[c]) for row in cells) for c in range(len(cells[0]))]
    lines = ["  ".join(v.ljust(w) if c == 0 else v.rjust(w) for c, (v, w) in enumerate(zip(row, widths)))
             for row in cells]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def _markdown(cells: list[list[str]]) -> str:
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "|".join(["---"] + ["---:"] * (len(cells[0]) - 1)) + "|")
    return "\n".join(lines)


def _csv(header: list[str], body: list) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([header[0]] + [x for h in header[1:] for x in (h, f"{h}_std")])
    for name, figures in body:
        writer.writerow([name] + [x for m, s in figures for x in (f"{m:.4f}", "" if s is None else f"{s:.4f}")])
    return out.getvalue()
