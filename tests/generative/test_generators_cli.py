"""``python -m generative train <model> ... --json`` and ``sample RUN`` for the flows, GANs and diffusion models of
notes §8-10, run as a user would (in-process, tiny budgets), and their one-line data errors."""

from __future__ import annotations

import json

import pytest

from generative.__main__ import main

FAST = ["--steps", "2", "--json", "--config.fit.no-progress"]
CASES = {
    "nice": ["--config.fit.eval-every", "1"],
    "realnvp": ["--config.fit.eval-every", "1"],
    "glow": ["--config.fit.eval-every", "1"],
    "gan": ["--config.eval-samples", "100"],
    "ns-gan": ["--data", "25gaussians", "--config.eval-samples", "100"],
    "unrolled-gan": ["--config.eval-samples", "100"],
    "wgan-gp": ["--config.eval-samples", "100"],
    "r1-gan": ["--data", "moons", "--config.eval-samples", "100"],
    "dcgan": [],
    "ddpm": ["--config.fdd-samples", "0", "--config.T", "20"],
    "ddpm-cfg": ["--config.fdd-samples", "0", "--config.T", "20"],
    "latent-ddpm": ["--config.fdd-samples", "0", "--config.T", "20", "--config.vae-fit.steps", "2",
                    "--config.vae-fit.no-progress"],
}


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.parametrize("name", CASES)
def test_train_then_sample_every_flow_gan_and_diffusion_model(name, capsys, tmp_path) -> None:
    out = tmp_path / name
    summary = run_json(capsys, ["train", name, "--out", str(out), *FAST, *CASES[name]])
    assert summary["model"] == name and summary["steps"] == 2 and summary["parameters"] > 0
    samples = run_json(capsys, ["sample", str(out), "--n", "3", "--seed", "1", "--json"])
    assert samples["model"] == name and samples["n"] == 3 and (tmp_path / name / "samples.png").is_file()


def test_flows_report_the_bits_of_the_grey_digits(capsys, tmp_path) -> None:
    summary = run_json(capsys, ["train", "realnvp", "--out", str(tmp_path / "run"), *FAST, *CASES["realnvp"]])
    assert summary["test_bits_per_dim"] == pytest.approx(summary["test_nll"] / (64 * 0.6931471805599453))
    assert json.loads((tmp_path / "run" / "config.json").read_text())["config"]["data"] == "digits-grey"


def test_a_toy_diffusion_samples_its_toy(capsys, tmp_path) -> None:
    summary = run_json(capsys, ["train", "ddpm", "--data", "moons", "--out", str(tmp_path / "toy"), *FAST,
                                "--config.T", "50"])
    assert summary["toy_log_density"] is not None and summary["fdd_ddim50"] is None
    assert run_json(capsys, ["sample", str(tmp_path / "toy"), "--n", "50", "--json"])["n"] == 50


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "realnvp", "--data", "digits"], "flows model grey levels, not binary pixels"),
    (["train", "ddpm", "--data", "digits-grey"], "data must be digits, latent or one of"),
    (["train", "gan", "--data", "digits-grey"], "data must be one of moons"),
    (["train", "dcgan", "--mnist", "somewhere"], "--mnist: model 'dcgan' trains on its own data"),
])
def test_data_errors_are_one_line(argv, message, tmp_path) -> None:
    with pytest.raises(ValueError, match=message) as error:  # run_main prints it as one line
        main([*argv, "--out", str(tmp_path / "x")])
    assert "\n" not in str(error.value)
