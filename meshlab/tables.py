"""Plain-text tables for terminals and notebook text output."""

from __future__ import annotations


def text_table(headers, rows) -> list[str]:
    """Lines of a table whose columns are padded to their widest cell, two spaces apart."""
    rows = [[str(cell) for cell in row] for row in rows]
    widths = [max([len(str(h))] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    return ["  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)) for row in [list(headers)] + rows]
