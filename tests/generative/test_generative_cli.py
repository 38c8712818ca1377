"""``python -m generative train <model> | demo``, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from generative.__main__ import main

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_mlp_writes_a_run_folder_and_resumes_from_its_config(capsys, tmp_path):
    out = tmp_path / "mlp"
    argv = ["train", "mlp", "--out", str(out), "--steps", "60", "--json", "--config.fit.no-progress",
            "--config.fit.log-every", "20", "--config.fit.schedule", "constant"]
    first = run_json(capsys, argv)
    assert first["model"] == "mlp" and 0.3 < first["test_accuracy"] <= 1.0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "metrics.csv", "model.json",
                                                     "tensorboard"]
    assert json.loads((out / "config.json").read_text())["config"]["fit"]["steps"] == 60
    resumed = run_json(capsys, [*argv[:5], "80", *argv[6:], "--resume"])
    assert resumed["steps"] == 80
    straight = run_json(capsys, [*argv[:2], "--out", str(tmp_path / "straight"), "--steps", "80", *argv[6:]])
    assert resumed["test_accuracy"] == straight["test_accuracy"]  # resume = an uninterrupted run (constant rate)


def test_every_model_of_the_registry_has_a_subcommand(capsys):
    from generative.commands import MODELS

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in MODELS)


def test_a_malicious_checkpoint_is_refused_on_resume(tmp_path, capsys):
    out = tmp_path / "cnn"
    run_json(capsys, ["train", "cnn", "--out", str(out), "--steps", "2", "--json", "--config.fit.no-progress"])
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    state = torch.load(out / "checkpoint.pt", weights_only=True)
    torch.save(dict(state, objective=Payload()), out / "checkpoint.pt")
    with pytest.raises(ValueError, match="was refused"):
        main(["train", "cnn", "--out", str(out), "--steps", "4", "--resume"])
    assert not marker.exists()


def test_torchrun_with_two_processes_writes_one_run_folder(tmp_path):
    torchrun = str(Path(sys.executable).parent / "torchrun")
    out = tmp_path / "ddp"
    proc = subprocess.run([torchrun, "--standalone", "--nproc_per_node=2", "-m", "generative", "train", "mlp", "--out",
                           str(out), "--steps", "20", "--json", "--config.fit.no-progress"], env=ENV, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[:2500] + proc.stderr[-1500:]
    reports = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 1 and json.loads(reports[0])["steps"] == 20  # rank 0 reports, once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddp"]
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "config.json", "metrics.csv", "model.json",
                                                     "tensorboard"]


def test_demo_writes_the_sections_of_every_chapter(tmp_path, monkeypatch):
    import dataclasses
    import shlex

    import generative.demo
    from generative.demo import Demo, run_demo

    args = Demo(out=tmp_path, unet_steps=10, sequence_steps=10, table_scale=0.005, table_min_steps=0, wavenet_steps=2,
                stroke_steps=2, autoencoder_steps=5, flow_steps=5, gan_steps=3, diffusion_toy_steps=3,
                compare_scale=1e-4, compare_min_steps=2, compare_fdd_samples=66, progress=False)
    index = run_demo(args)
    text = index.read_text()
    parts = {"autoencoders": "models", "autoregressive": "models"}
    for folder, section, count in (("foundations", "1", 6), ("autoencoders", "6", 9), ("autoregressive", "7", 5),
                                   ("flows", "8", 2), ("gans", "9", 1), ("diffusion", "10", 2), ("compare", "10.6", 2)):
        manifest = json.loads((tmp_path / folder / "section.json").read_text())
        assert manifest["section"] == section and len(manifest["items"]) >= count
        # The page's command reproduces the section: this demo's budgets, that part only.
        command = shlex.split(manifest["command"])
        assert command[:4] == ["python", "-m", "generative", "demo"]
        with monkeypatch.context() as patch:
            parsed = []
            patch.setattr(generative.demo, "run_demo", parsed.append)
            assert main(command[3:]) == 0
        assert parsed == [dataclasses.replace(args, only=(parts.get(folder, folder),), progress=True)], folder
        for item in manifest["items"]:
            assert (tmp_path / folder / item["file"]).stat().st_size > 0
            assert f"{folder}/{item['file']}" in text
    table = json.loads((tmp_path / "autoregressive" / "table" / "table.json").read_text())
    assert len(table["rows"]) == 10 and "<audio" in text
    compare = json.loads((tmp_path / "compare" / "table" / "compare.json").read_text())
    assert [r["name"] for r in compare["rows"]] == ["test-images", "gmm-50", "train+noise", "glow", "dcgan", "ddim-50"]
    assert "<video" in text and "moons.mp4" in text
    # --only reruns one part (what a section's command does) and keeps the other sections on the page.
    stamp = lambda: {f: (tmp_path / f / "section.json").stat().st_mtime_ns for f in ("foundations", "flows", "gans")}
    before = stamp()
    run_demo(dataclasses.replace(args, only=("gans",)))
    after = stamp()
    assert after["gans"] > before["gans"] and {f: after[f] for f in ("foundations", "flows")} == {
        f: before[f] for f in ("foundations", "flows")}
    assert index.read_text().count("<section ") == 7
