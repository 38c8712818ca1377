"""``python -m vision3d compare``: the table holds each run's own numbers, and bad input stops before training."""

from __future__ import annotations

import json

import pytest
import torch
from expect_errors import one_line_error
from plyfile import PlyData

from generative.training import FitConfig
from vision3d.__main__ import main
from vision3d.compare import COLUMNS, Compare, run_compare
from vision3d.dataset import ExportConfig, export_dataset
from vision3d.fields import ImplicitField
from vision3d.igr import IGRConfig
from vision3d.nerf import NeRFConfig
from vision3d.splat_training import SplatConfig


@pytest.fixture(scope="module")
def torus(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare") / "torus"
    return export_dataset("torus", out, config=ExportConfig(views=4, size=16, val_views=1, test_views=2,
                                                            n_uniform=4000, n_surface=4000, n_points=2000,
                                                            shading="phong"))


def tiny_configs():
    """IGR, NeRF and Gaussians small enough for a few seconds each at 16x16."""
    quiet = {"progress": False}
    return {
        "igr": IGRConfig(fit=FitConfig(steps=40, **quiet)),
        "nerf": NeRFConfig(fit=FitConfig(steps=60, lr=5e-3, **quiet), size=16, rays=256, depth=3, width=32, skip=1,
                           levels=4, dir_levels=2, n_coarse=16, n_fine=16, surface_density=5.0),
        "gaussians": SplatConfig(fit=FitConfig(steps=40, schedule="constant", **quiet), size=16, n_init=300,
                                 densify_from=20, densify_interval=20),
    }


def test_the_table_holds_each_runs_metrics_and_model_size(tmp_path, torus):
    out = tmp_path / "cmp"
    args = Compare(data=torus, out=out, methods=("igr", "nerf", "gaussians"), resolution=24, video=False,
                   progress=False)
    rows = run_compare(args, configs=tiny_configs())
    table = json.loads((out / "comparison.json").read_text())
    assert [row["method"] for row in table["rows"]] == ["igr", "nerf", "gaussians"] == [r.method for r in rows]
    for row in table["rows"]:
        metrics = json.loads((out / row["method"] / "metrics.json").read_text())
        assert row["run"] == str(out / row["method"])
        for key in ("chamfer_l1", "iou", "normal_consistency", "fit_seconds"):
            assert row[key] == metrics[key], (row["method"], key)
        appearance = metrics.get("appearance") or {}
        assert row["psnr"] == appearance.get("psnr") and row["ssim"] == appearance.get("ssim")
        assert row["model_file_bytes"] == (out / row["method"] / row["model_file"]).stat().st_size
        assert row["model_bytes"] == 4 * row["parameters"]
    igr, nerf, gaussians = table["rows"]
    assert igr["chamfer_l1"] > 0.0 and igr["psnr"] is None and igr["steps"] == 40 and igr["input"].startswith("point")
    assert nerf["psnr"] > 0.0 and 0.0 < nerf["ssim"] < 1.0 and nerf["steps"] == 60
    assert gaussians["chamfer_l1"] is None and gaussians["psnr"] > 0.0 and gaussians["input"] == "images + points.ply"
    # Model sizes, counted again without the compare module: IGR's network and 59 floats per Gaussian
    # (mean 3, log-scale 3, quaternion 4, opacity 1, SH 3 x 16 at degree 3).
    assert igr["parameters"] == sum(p.numel() for p in ImplicitField(IGRConfig().network).parameters())
    n_gaussians = json.loads((out / "gaussians" / "metrics.json").read_text())["n_gaussians"]
    assert n_gaussians == PlyData.read(str(out / "gaussians" / "point_cloud.ply"))["vertex"].count
    assert gaussians["parameters"] == 59 * n_gaussians
    state = torch.load(out / "nerf" / "checkpoint.pt", weights_only=True)["modules"]["nerf"]
    assert nerf["parameters"] == sum(t.numel() for t in state.values() if t.is_floating_point())
    # The Markdown: a header, a rule and one row per method, with the numbers of the JSON.
    lines = [line for line in (out / "comparison.md").read_text().splitlines() if line.startswith("|")]
    assert len(lines) == 2 + 3 and lines[0].count("|") == len(COLUMNS) + 1
    cells = [line.strip("|").split(" | ") for line in lines[2:]]
    assert [c[0].strip() for c in cells] == ["igr", "nerf", "gaussians"]
    assert cells[0][2] == f"{igr['chamfer_l1']:.4f}" and cells[0][5].strip() == "—"
    assert cells[1][5] == f"{nerf['psnr']:.2f}" and cells[2][6] == f"{gaussians['ssim']:.3f}"
    assert (out / "comparison.png").stat().st_size > 0


def test_compare_on_the_command_line_prints_its_json(tmp_path, torus, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--data", str(torus), "--out", str(out), "--methods", "deepsdf", "--steps",
                 "deepsdf=25", "--resolution", "16", "--no-video", "--no-progress", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads((out / "comparison.json").read_text())
    (row,) = printed["rows"]
    metrics = json.loads((out / "deepsdf" / "metrics.json").read_text())
    assert row["steps"] == 25 and row["chamfer_l1"] == metrics["chamfer_l1"] and row["ssim"] is None


def test_bad_input_is_one_line_before_any_training(tmp_path, torus):
    out = tmp_path / "cmp"

    def compare(*argv):
        return lambda: main(["compare", "--out", str(out), *argv])

    one_line_error(compare("--data", str(torus), "--methods", "igr", "nerfs"), "--methods", "'nerfs'", "gaussians")
    one_line_error(compare("--data", str(tmp_path / "nowhere")), "--data", "nowhere", "does not exist")
    one_line_error(compare("--data", str(torus), "--steps", "nerf=many"), "--steps", "nerf=many")
    one_line_error(compare("--data", str(torus), "--methods", "igr", "--steps", "nerf=5"), "--steps", "nerf=5")
    images_only = tmp_path / "scene"
    images_only.mkdir()
    for name in ("transforms_train.json", "transforms_test.json"):
        (images_only / name).write_text((torus / name).read_text())
    one_line_error(compare("--data", str(images_only), "--methods", "nerf", "igr"),
                   "--data", "has no points.ply, which fit igr needs")
    assert not out.exists()  # nothing was fitted, not even the methods before the bad one
