"""The Columns section of a train report on a table: every raw column with its type and treatment, ordered by its
permutation importance on the validation rows (importance.json), as the page shows them to a reader."""

from __future__ import annotations

import contextlib
import io
import json
from html.parser import HTMLParser

import numpy as np
import palmerpenguins
import pytest

from nnopt.cli import main
from nnopt.report import build_report


class _Sections(HTMLParser):
    """Each <section>'s heading, note text and table rows (cell texts, and whether a cell holds a bar)."""

    def __init__(self):
        super().__init__()
        self.sections, self._cell, self._tag = {}, None, None

    def handle_starttag(self, tag, attrs):
        self._tag = tag
        if tag == "section":
            self._current = {"heading": "", "note": "", "rows": []}
        elif tag == "tr":
            self._current["rows"].append([])
        elif tag in ("td", "th"):
            self._cell = {"text": "", "bar": False}
            self._current["rows"][-1].append(self._cell)
        elif tag == "span" and self._cell is not None and "width:" in (dict(attrs).get("style") or ""):
            self._cell["bar"] = True

    def handle_endtag(self, tag):
        if tag == "section":
            self.sections[self._current["heading"]] = self._current
        elif tag in ("td", "th"):
            self._cell = None
        self._tag = None

    def handle_data(self, data):
        if self._tag == "h2":
            self._current["heading"] += data
        elif self._cell is not None:
            self._cell["text"] += data
        elif self._tag in ("p", "code") and hasattr(self, "_current"):
            self._current["note"] += data


def _sections(page: str) -> dict:
    parser = _Sections()
    parser.feed(page)
    return parser.sections


def _train(*args) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["train", *map(str, args)])
    assert code == 0, err.getvalue()


@pytest.fixture(scope="module")
def penguins_csv(tmp_path_factory):
    table = palmerpenguins.load_penguins()
    table.insert(0, "penguin_id", np.arange(len(table)))  # an ID: typed, dropped, listed without importance
    table["noise"] = np.random.default_rng(3).normal(size=len(table))
    path = tmp_path_factory.mktemp("data") / "penguins.csv"
    table.to_csv(path, index=False)
    return path


def test_a_table_runs_report_lists_its_columns_by_importance(penguins_csv, tmp_path):
    run = tmp_path / "run"
    _train("--data", penguins_csv, "--target", "species", "--epochs", "15", "--val-fraction", "0.3", "--out", run,
           "--json")
    importance = json.loads((run / "importance.json").read_text())
    described = json.loads((run / "config.json").read_text())["data_info"]["columns"]
    section = _sections((run / "report.html").read_text())["Columns"]
    header, *rows = [[c["text"] for c in row] for row in section["rows"]]
    assert header == ["column", "type", "treatment", "", "importance: drop in val accuracy (points)"]
    assert "Permutation importance on 103 validation rows (val accuracy " in section["note"]
    assert "over 5 shuffles" in section["note"]
    # scored columns first, in importance.json's order, then the dropped ID column
    assert [r[0] for r in rows] == [e["column"] for e in importance["columns"]] + ["penguin_id"]
    assert len(rows) == len(described) == 9
    by_name = {c["column"]: c for c in described}
    for row, entry in zip(rows, importance["columns"]):
        assert row[1:3] == [by_name[row[0]]["type"], by_name[row[0]]["treatment"]]
        assert row[4] == f"{100 * entry['importance_mean']:.1f} ± {100 * entry['importance_std']:.1f}"
    assert rows[-1][1:] == ["id", "dropped", "", "—"]
    bars = [cell["bar"] for cell in (row[3] for row in section["rows"][1:])]
    positive = [e["importance_mean"] > 0 for e in importance["columns"]] + [False]
    assert bars == positive and bars[0]  # a bar for each column the model relies on, none for the others
    assert by_name["island"]["treatment"].startswith("one-hot, 3 levels")

    # the same directory trained again without validation rows: the old importance.json goes, the page says why
    _train("--data", penguins_csv, "--target", "species", "--epochs", "2", "--val-fraction", "0", "--out", run,
           "--json")
    assert not (run / "importance.json").exists()
    section = _sections((run / "report.html").read_text())["Columns"]
    assert [[c["text"] for c in row] for row in section["rows"]][0] == ["column", "type", "treatment"]
    assert "No permutation importance was computed" in section["note"]
    assert "nnopt evaluate RUN_DIR --importance" in section["note"]


def test_a_run_without_a_table_has_no_columns_section(tmp_path):
    run = tmp_path / "run"
    _train("--data", "iris", "--model", "mlp:8", "--epochs", "2", "--out", run, "--json")
    assert not (run / "importance.json").exists()
    assert "Columns" not in _sections(build_report(run).read_text())


def test_rows_without_a_target_are_counted_in_the_report(tmp_path):
    import palmerpenguins

    import nnopt

    frame = palmerpenguins.load_penguins()
    frame.loc[frame.index[:4], "species"] = None
    nnopt.fit("mlp:16", frame, target="species", epochs=2, out=tmp_path / "run")
    page = (tmp_path / "run" / "report.html").read_text()
    assert "4 rows without a target value left out before the split" in page
