"""``python -m generative compare``: one table for every family, measured the same way, resumable."""

from __future__ import annotations

import json

import pytest
import torch

from generative.compare import ENTRIES, CompareCommand, available_rows, references, run_compare
from generative.metrics import frechet_digit_distance


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    args = CompareCommand(out=out, rows=["test-images", "gmm-50", "train+noise", "made"], scale=0.001, min_steps=20,
                          fdd_samples=300, progress=False)
    return args, run_compare(args)


def test_rows_are_measured_against_the_same_training_digits(compared) -> None:
    args, rows = compared
    by = {r.name: r for r in rows}
    refs = references()
    assert by["test-images"].fdd == pytest.approx(frechet_digit_distance(refs.test, refs.train), rel=1e-9)
    # the noisy training set copies training digits: far closer to them than real test digits are, a good FDD,
    # and a poor likelihood (notes §9: high-quality samples, low likelihood)
    assert by["train+noise"].nn_distance < 0.6 * by["test-images"].nn_distance
    assert by["train+noise"].bits_per_dim > by["gmm-50"].bits_per_dim + 1
    assert by["train+noise"].fdd < by["gmm-50"].fdd
    assert by["made"].steps == 20 and by["made"].parameters > 0 and by["made"].bits_per_dim > 0
    for name in ("gmm-50", "train+noise", "made"):
        assert (args.out / "samples" / f"{name}.png").is_file()
    text = (args.out / "compare.md").read_text()
    assert "| gmm-50 | baseline |" in text and "| made | autoregressive |" in text
    assert (args.out / "index.html").is_file()
    assert json.loads((args.out / "compare" / "section.json").read_text())["section"] == "10.6"


def test_a_finished_comparison_is_read_back_not_measured_again(compared) -> None:
    args, rows = compared
    stored = json.loads((args.out / "rows" / "gmm-50.json").read_text())
    stored["fdd"] = 123.0  # a measured row is never recomputed
    (args.out / "rows" / "gmm-50.json").write_text(json.dumps(stored))
    again = {r.name: r for r in run_compare(args)}
    assert again["gmm-50"].fdd == 123.0 and again["made"] == {r.name: r for r in rows}["made"]


def test_every_row_names_a_model_that_draws_digits() -> None:
    from generative.commands import MODELS

    for name in available_rows():
        entry = ENTRIES[name]
        assert entry.model is None or MODELS[entry.model].images is not None
    with pytest.raises(ValueError, match="--rows: nope unknown"):
        CompareCommand(rows=["nope"])
    with pytest.raises(ValueError, match="--scale must lie in"):
        CompareCommand(scale=0)


def test_baseline_samples_are_seeded(compared) -> None:
    from generative.models.baselines import GaussianMixtureBaseline, MixtureConfig

    refs = references()
    model = GaussianMixtureBaseline(refs.train_dequantised, MixtureConfig(components=5))
    a, b = (model.sample(8, torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(a, b) and a.shape == (8, 1, 8, 8) and 0 <= float(a.min()) and float(a.max()) <= 1


def test_train_seconds_add_up_across_resumes_and_sub_runs(tmp_path) -> None:
    from generative.compare import run_seconds

    (tmp_path / "vae").mkdir()
    (tmp_path / "metrics.csv").write_text("step,seconds,loss\n50,10.5,1\n100,30.25,1\n")  # a resumed run: cumulative
    (tmp_path / "vae" / "metrics.csv").write_text("step,seconds\n10,4.0\n")
    assert run_seconds(tmp_path) == pytest.approx(34.25)
    assert run_seconds(tmp_path / "vae") == pytest.approx(4.0)
