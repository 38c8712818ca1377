"""``python -m generative table``: trains the listed models, measures them, writes one table, and continues a
killed table without training again what it already measured."""

from __future__ import annotations

import json
import math

import pytest

from generative.__main__ import main
from generative.table import TABLE_MODELS, Row, TableCommand, markdown, ordering, run_table


def test_table_trains_measures_and_resumes(tmp_path, capsys) -> None:
    args = TableCommand(out=tmp_path / "table", models=["independent", "fvsbn"], scale=0.02, progress=False)
    rows = run_table(args)
    assert [r.model for r in rows] == ["independent", "fvsbn"]
    independent, fvsbn = rows
    assert fvsbn.test_nll < independent.test_nll  # even a short FVSBN beats independent pixels
    for row in rows:
        assert row.bits_per_dim == pytest.approx(row.test_nll / (64 * math.log(2)))
        assert row.fdd > 0 and row.sample_seconds > 0 and row.parameters > 0
        assert row.steps == max(1, round({"independent": 2000, "fvsbn": 8000}[row.model] * 0.02))
        assert (tmp_path / "table" / "samples" / f"{row.model}.png").is_file()
    assert fvsbn.parameters == 64 * 65 // 2
    text = (tmp_path / "table" / "table.md").read_text()
    assert "| fvsbn | **" in text and "| independent |" in text
    stored = json.loads((tmp_path / "table" / "table.json").read_text())
    assert [r["model"] for r in stored["rows"]] == ["independent", "fvsbn"]
    # a second run reads the measured rows instead of training again
    before = (tmp_path / "table" / "runs" / "fvsbn" / "checkpoint.pt").stat().st_mtime_ns
    no_nan = lambda table: [r._replace(elbo_nll=0.0) for r in table]  # NaN != NaN
    assert no_nan(run_table(args)) == no_nan(rows)
    assert (tmp_path / "table" / "runs" / "fvsbn" / "checkpoint.pt").stat().st_mtime_ns == before
    assert main(["table", "--out", str(tmp_path / "table"), "--models", "independent", "fvsbn", "--json",
                 "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["ordering"] == ["fvsbn", "independent"] and summary["best"] == "fvsbn"


def test_markdown_marks_the_best_and_leaves_bounds_blank_for_exact_models() -> None:
    rows = [Row("a", 20.0, 0.45, math.nan, 10, 5, 5, 1.0, 0.1, 3.0, 2.0, 2.5),
            Row("b", 18.0, 0.41, 19.0, 10, 5, 5, 1.0, 0.1, 3.0, 2.0, 2.5)]
    text = markdown(rows, "digits")
    assert "| b | **18.00** |" in text and "| a | 20.00 | 0.4500 |  |" in text
    assert ordering(rows) == ["b", "a"]


def test_min_steps_lifts_a_reduced_budget_but_never_above_the_default(tmp_path) -> None:
    from generative.table import train_row

    args = TableCommand(out=tmp_path, models=["independent"], scale=0.001, min_steps=30, progress=False)
    assert train_row("independent", args, tmp_path / "runs" / "independent", args.data)["steps"] == 30
    args = TableCommand(out=tmp_path, models=["independent"], scale=0.001, min_steps=10**6, progress=False)
    assert train_row("independent", args, tmp_path / "runs2" / "independent", args.data)["steps"] == 2000


def test_table_options_fail_in_one_line() -> None:
    with pytest.raises(ValueError, match="--models: mlp not in the table"):
        TableCommand(models=["mlp"])
    with pytest.raises(ValueError, match="--scale"):
        TableCommand(scale=0)
    assert set(TABLE_MODELS) >= {"fvsbn", "nade", "made", "vae", "pixelcnn", "gated-pixelcnn", "transformer"}
