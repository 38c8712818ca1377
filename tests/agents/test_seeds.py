"""``train --seeds``: the bootstrap band over seeds (checked against cases with known answers) and the command."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from agents.__main__ import main
from agents.curves import Curve, align, band, bootstrap_band, read_ours, smoothed


def t_coverage(n: int, confidence: float) -> float:
    """Coverage of the percentile bootstrap interval of a normal mean, to first order: it is the plug-in
    interval mean +- z * s * sqrt((n-1)/n) / sqrt(n), which covers while |t_{n-1}| < z * sqrt((n-1)/n)."""
    from scipy import stats

    z = stats.norm.ppf(0.5 + confidence / 2)
    return float(2 * stats.t.cdf(z * math.sqrt((n - 1) / n), n - 1) - 1)


def test_constant_curves_have_a_band_of_zero_width():
    values = np.tile(np.linspace(-3.0, 7.0, 12), (5, 1))  # five seeds, the same curve
    mean, low, high = bootstrap_band(values, rng=np.random.default_rng(0))
    np.testing.assert_allclose(mean, values[0])
    np.testing.assert_allclose(low, values[0])
    np.testing.assert_allclose(high, values[0])
    one = bootstrap_band(np.array([[1.0, 2.0]]))  # one seed: the curve itself
    np.testing.assert_array_equal(one[1], one[2])


def test_two_seeds_resample_to_three_means_with_known_probabilities():
    """Two seeds a < b: a draw averages (a, a), (a, b) or (b, b) with probabilities 1/4, 1/2, 1/4, so the 20% interval's
    ends (quantiles 0.4 and 0.6) are both the midpoint and the 95% interval's are a and b."""
    values = np.array([[0.0, 10.0], [4.0, 30.0]])
    mean, low, high = bootstrap_band(values, confidence=0.2, resamples=20_000, rng=np.random.default_rng(1))
    np.testing.assert_allclose(mean, [2.0, 20.0])
    np.testing.assert_allclose(low, [2.0, 20.0])
    np.testing.assert_allclose(high, [2.0, 20.0])
    _, low, high = bootstrap_band(values, confidence=0.95, resamples=20_000, rng=np.random.default_rng(1))
    np.testing.assert_allclose(low, [0.0, 10.0])
    np.testing.assert_allclose(high, [4.0, 30.0])


@pytest.mark.parametrize("seeds", [5, 30])
def test_coverage_on_normal_data_is_what_the_percentile_bootstrap_promises(seeds):
    """4000 independent points, each the mean of ``seeds`` normal draws: the 95% band holds the true mean at about
    93.7% of them with 30 seeds and 84.5% with 5 (the percentile method's known shortfall with few seeds)."""
    rng = np.random.default_rng(seeds)
    values = rng.normal(3.0, 2.0, size=(seeds, 4000))
    _, low, high = bootstrap_band(values, 0.95, resamples=2000, rng=np.random.default_rng(0))
    coverage = float(np.mean((low <= 3.0) & (3.0 <= high)))
    assert coverage == pytest.approx(t_coverage(seeds, 0.95), abs=0.02)
    if seeds == 30:
        assert 0.92 < coverage < 0.96


def test_bad_band_arguments_are_one_line_errors():
    for kwargs, message in [({"values": np.zeros(3)}, "values must be"), ({"values": np.zeros((2, 2)), "confidence": 1.0},
                            "confidence"), ({"values": np.zeros((2, 2)), "resamples": 0}, "resamples")]:
        with pytest.raises(ValueError, match=message):
            bootstrap_band(**kwargs)


def test_align_stacks_shared_x_and_interpolates_different_x():
    a = Curve(np.array([0.0, 10.0, 20.0]), np.array([1.0, 2.0, 3.0]))
    x, values = align([a, Curve(a.x, a.y * 2)])
    np.testing.assert_array_equal(x, a.x)
    np.testing.assert_array_equal(values, [[1, 2, 3], [2, 4, 6]])
    lines = [Curve(np.sort(np.random.default_rng(s).uniform(s, 100 - s, 40)), np.zeros(40)) for s in range(3)]
    lines = [Curve(c.x, 2 * c.x + 1) for c in lines]  # straight lines: interpolation is exact
    x, values = align(lines)
    assert x[0] >= max(c.x[0] for c in lines) and x[-1] <= min(c.x[-1] for c in lines)
    np.testing.assert_allclose(values, np.tile(2 * x + 1, (3, 1)))
    with pytest.raises(ValueError, match="share no range"):
        align([Curve(np.array([0.0, 1.0]), np.zeros(2)), Curve(np.array([2.0, 3.0]), np.zeros(2))])
    mean_band = band([a, Curve(a.x, a.y * 3)])
    np.testing.assert_allclose(mean_band.mean, [2, 4, 6])
    assert mean_band.seeds == 2 and np.all(mean_band.low <= mean_band.mean) and np.all(mean_band.mean <= mean_band.high)


def test_smoothed_is_the_trailing_mean():
    y = np.array([1.0, 3.0, 5.0, 7.0, 9.0])
    np.testing.assert_allclose(smoothed(Curve(np.arange(5.0), y), 3).y, [1, 2, 3, 5, 7])


def rows(path):
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def test_train_seeds_writes_a_run_per_seed_the_band_and_the_summary(capsys, tmp_path):
    out = tmp_path / "seeds"
    assert main(["train", "actor-critic", "--env", "CartPole-v1", "--steps", "160", "--eval-every", "80",
                 "--config.n-envs", "2", "--video-episodes", "0", "--no-progress", "--json", "--seeds", "3", "5",
                 "--workers", "1", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["seeds"] == [3, 5] and (out / "curve.png").stat().st_size > 0
    assert json.loads((out / "config.json").read_text())["seeds"] == [3, 5]
    curves = []
    for seed in (3, 5):
        stored = json.loads((out / f"seed{seed}" / "config.json").read_text())
        assert stored["seed"] == seed and stored["seeds"] == [] and stored["hyperparams_file"] == "agents/hyperparams/actor-critic.yml"
        assert stored["config"]["n_envs"] == 2 and stored["command_line_overrides"] == {"n_envs": 2}
        curves.append(read_ours(out / f"seed{seed}")[0])
    assert not np.array_equal(curves[0].y, curves[1].y)  # two seeds, two runs
    saved = json.loads((out / "seeds.json").read_text())
    mean, low, high = bootstrap_band(np.stack([c.y for c in curves]), 0.95)
    np.testing.assert_allclose(saved["band"]["x"], curves[0].x)
    np.testing.assert_allclose(saved["band"]["mean"], mean)
    np.testing.assert_allclose(saved["band"]["low"], low)
    np.testing.assert_allclose(saved["band"]["high"], high)
    table = rows(out / "seeds.csv")
    assert [r["seed"] for r in table] == ["3", "5", "mean", "ci_low", "ci_high"]
    lasts = [float(r["last"]) for r in table[:2]]
    assert lasts == [c.y[-1] for c in curves] and float(table[2]["last"]) == pytest.approx(np.mean(lasts))
    assert float(table[3]["last"]) == min(lasts) and float(table[4]["last"]) == max(lasts)  # two seeds: the ends
    assert summary["last_mean"] == pytest.approx(np.mean(lasts))
    assert float(table[0]["best"]) == max(curves[0].y)


def test_a_seed_folder_that_holds_a_run_is_refused_before_any_work(tmp_path):
    (tmp_path / "seed3").mkdir()
    (tmp_path / "seed3" / "metrics.csv").write_text("step,eval_mean\n")
    with pytest.raises(ValueError, match="seed3 already holds a run"):
        main(["train", "dqn", "--env", "CartPole-v1", "--seeds", "2", "3", "--steps", "10", "--out", str(tmp_path)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed3"]
    with pytest.raises(ValueError, match="--resume continues one run"):
        main(["train", "dqn", "--env", "CartPole-v1", "--seeds", "2", "3", "--resume", str(tmp_path / "seed3")])


def test_seeds_in_worker_processes_match_single_runs(capsys, tmp_path):
    """Two tabular seeds in two spawned processes: each seed's metrics are those of the same seed run alone."""
    argv = ["train", "q-learning", "--env", "mp/CliffWalking-v0", "--episodes", "40", "--video-episodes", "0",
            "--no-progress", "--json"]
    assert main([*argv, "--seeds", "0", "1", "--workers", "2", "--out", str(tmp_path / "seeds")]) == 0
    assert main([*argv, "--seed", "1", "--out", str(tmp_path / "alone")]) == 0
    capsys.readouterr()
    assert (tmp_path / "seeds" / "seed1" / "metrics.csv").read_text() == (tmp_path / "alone" / "metrics.csv").read_text()
    assert (tmp_path / "seeds" / "seed0" / "metrics.csv").read_text() != (tmp_path / "alone" / "metrics.csv").read_text()
    saved = json.loads((tmp_path / "seeds" / "seeds.json").read_text())
    assert saved["metric"] == "training episodes" and saved["xlabel"] == "episodes" and len(saved["band"]["x"]) == 40


@pytest.mark.parametrize(("extra", "message"), [
    (["--seed", "2", "--seeds", "0", "1"], "--seed and --seeds exclude each other"),
    (["--seeds", "0", "0"], "distinct"),
    (["--seeds", "0", "1", "--workers", "0"], "--workers must be at least 1"),
])
def test_bad_seed_options_are_one_line_errors(tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        main(["train", "sarsa", "--env", "mp/GridWorld-v0", "--episodes", "5", "--no-progress", *extra,
              "--out", str(tmp_path / "x")])
    assert not (tmp_path / "x").exists()  # refused before any work
