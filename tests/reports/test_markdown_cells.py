"""Markdown tables: what was not measured is an empty cell (as in the HTML), never "nan"."""

from __future__ import annotations

import pandas as pd

from twopath.reports.html import md_table


def test_missing_values_are_empty_cells_not_nan():
    frame = pd.DataFrame([{"method": "ig", "spearman": 0.25}, {"method": "lime", "spearman": None}])
    text = md_table(frame)
    assert "nan" not in text.lower()
    assert text.splitlines()[2] == "| ig | 0.250 |" and text.splitlines()[3] == "| lime |  |"
