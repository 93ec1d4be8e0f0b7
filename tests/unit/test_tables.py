"""Plain-text tables: columns padded to the widest cell, headers alone when there are no rows."""

from meshlab.tables import text_table


def test_columns_line_up():
    lines = text_table(["POD", "READY"], [["frontend-v1-abc", True], ["a", False]])
    assert lines == ["POD              READY", "frontend-v1-abc  True ", "a                False"]


def test_no_rows_gives_the_header_only():
    assert text_table(["caller", "callee"], []) == ["caller  callee"]
