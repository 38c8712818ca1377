"""``python -m generative train <model> ... --json`` and ``sample RUN`` for every generative model of notes §6-7,
run as a user would (in-process, tiny budgets), and the one-line errors of the data options."""

from __future__ import annotations

import json

import numpy as np
import pytest

from generative.__main__ import main
from generative.data.mnist import FILES, write_idx

GENERATIVE = ("vae", "beta-vae", "ae", "linear-ae", "fvsbn", "nade", "made", "pixel-rnn", "pixelcnn", "gated-pixelcnn",
              "wavenet", "vrnn", "stroke-rnn", "transformer", "independent")
"""Every generative model of the issue's command line (and the independent-pixel baseline)."""
FAST = ["--steps", "2", "--json", "--config.fit.no-progress", "--config.fit.eval-every", "1"]


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def small(name: str) -> list[str]:
    """Options that keep a smoke run of ``name`` small (the VAE's IWAE bound, the audio and stroke data)."""
    return {
        "vae": ["--config.iwae-k", "4"], "beta-vae": ["--config.iwae-k", "4"],
        "wavenet": ["--config.n-train", "8", "--config.n-test", "4", "--config.clip-length", "64"],
        "vrnn": ["--config.data.n-train", "16", "--config.data.n-test", "8", "--config.iwae-k", "2"],
        "stroke-rnn": ["--config.data.n-train", "16", "--config.data.n-test", "8"],
        "ae": [], "linear-ae": [],
    }.get(name, [])


@pytest.mark.parametrize("name", GENERATIVE)
def test_train_then_sample_every_generative_model(name, capsys, tmp_path) -> None:
    out = tmp_path / name
    fast = FAST if name not in ("ae", "linear-ae", "wavenet", "vrnn", "stroke-rnn") else FAST[:4]
    summary = run_json(capsys, ["train", name, "--out", str(out), *fast, *small(name)])
    assert summary["model"] == name and summary["steps"] == 2
    assert (out / "model.json").is_file() and (out / "config.json").is_file()
    samples = run_json(capsys, ["sample", str(out), "--n", "3", "--seed", "1", "--json"])
    assert samples["model"] == name and samples["n"] == 3 and samples["seconds_per_sample"] >= 0
    again = run_json(capsys, ["sample", str(out), "--n", "3", "--seed", "1", "--out", str(tmp_path / "again"), "--json"])
    assert again["n"] == 3


def test_density_models_read_grey_digits_and_report_bits_per_dim(capsys, tmp_path) -> None:
    summary = run_json(capsys, ["train", "pixelcnn", "--data", "digits-grey", "--out", str(tmp_path / "run"), *FAST])
    assert summary["test_bits_per_dim"] == pytest.approx(summary["test_nll"] / (64 * np.log(2)))
    assert summary["test_nll"] > 64 * np.log(2)  # 17 levels: far more nats than binary pixels
    assert summary["test_elbo_nll"] is None  # exact model: no bound (null in JSON, not NaN)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["config"]["data"] == "digits-grey"


def write_mnist(folder, n_train: int = 60, n_test: int = 20, size: int = 8) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir()
    for part, n in (("train", n_train), ("test", n_test)):
        write_idx(folder / FILES[f"{part}_images"], rng.integers(0, 256, (n, size, size), dtype=np.uint8))
        write_idx(folder / FILES[f"{part}_labels"], np.arange(n, dtype=np.uint8) % 10)


@pytest.mark.parametrize("name", ["fvsbn", "ae"])
def test_one_flag_trains_on_mnist_files(name, capsys, tmp_path) -> None:
    write_mnist(tmp_path / "mnist")
    out = tmp_path / name
    extra = ["--config.val-size", "20"] if name == "fvsbn" else ["--config.data.val-size", "20"]
    run_json(capsys, ["train", name, "--mnist", str(tmp_path / "mnist"), "--out", str(out), *FAST[:4], *extra])
    stored = json.loads((out / "config.json").read_text())["config"]
    assert (stored["mnist_dir"] if name == "fvsbn" else stored["data"]["mnist_dir"]) == str(tmp_path / "mnist")


def test_data_options_and_sample_fail_in_one_line(capsys, tmp_path) -> None:
    with pytest.raises(ValueError, match="--data: model 'vrnn' trains on its own data"):
        main(["train", "vrnn", "--data", "digits", "--out", str(tmp_path / "v")])
    with pytest.raises(ValueError, match="data must be one of digits, digits-grey"):
        main(["train", "nade", "--data", "moons", "--out", str(tmp_path / "n")])
    with pytest.raises(ValueError, match="not a finished run"):
        main(["sample", str(tmp_path)])
    run_json(capsys, ["train", "mlp", "--out", str(tmp_path / "mlp"), *FAST[:4]])
    with pytest.raises(ValueError, match="model 'mlp' does not generate samples"):
        main(["sample", str(tmp_path / "mlp")])
    (tmp_path / "mlp" / "model.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        main(["sample", str(tmp_path / "mlp")])
