"""``python -m bodies``: render, train and fit as documented, with --json; bad input is one line."""

from __future__ import annotations

import json

import pytest

from bodies.__main__ import main


def run(capsys, *argv):
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_render_train_and_fit_from_the_command_line(tmp_path, capsys):
    data = tmp_path / "data"
    rendered = run(capsys, "render", "--poses", "6", "--size", "64", "--out", str(data), "--json")
    assert rendered["count"] == 6 and (data / "coco.json").exists()
    trained = run(capsys, "train", "lgd", "--out", str(tmp_path / "lgd"), "--data", str(data), "--steps", "3",
                  "--json")
    assert trained["steps"] == 3 and "held_out_pa_mpjpe" in trained
    fitted = run(capsys, "fit", "lgd", "--lgd", str(tmp_path / "lgd"), "--data", str(data), "--out",
                 str(tmp_path / "fit"), "--json")
    assert fitted["samples"] == 6 and len(fitted["loss_per_step"]) == 5 and fitted["pa_mpjpe_mm"] > 0
    adam = run(capsys, "fit", "adam", "--data", str(data), "--out", str(tmp_path / "adam"), "--steps", "5",
               "--count", "2", "--json")
    assert adam["samples"] == 2 and adam["seconds_per_sample"] > 0
    assert json.loads((tmp_path / "adam" / "metrics.json").read_text())["pa_mpjpe_mm"] == adam["pa_mpjpe_mm"]
    exported = run(capsys, "export-smpl", "--out", str(tmp_path / "SMPL_NEUTRAL.pkl"), "--json")
    assert exported["vertices"] == 5000 and exported["joints"] == 24


@pytest.mark.parametrize(("argv", "message"), [
    (["fit", "lgd", "--data", "D", "--out", "O"], "fit lgd needs --lgd RUN"),
    (["train", "cpm", "--out", "O"], "train cpm needs --data"),
    (["fit", "adam", "--data", "missing", "--out", "O"], "--data missing: no meta.json"),
])
def test_bad_input_is_one_line(tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=message) as info:
        main(argv)
    assert "\n" not in str(info.value)
