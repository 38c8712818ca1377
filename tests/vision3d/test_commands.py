"""``python -m vision3d render | fit | eval``, run as a user would, on a tiny dataset."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from vision3d.__main__ import main
from vision3d.dataset import ExportConfig, export_dataset
from vision3d.nerf import evaluate_nerf


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def torus_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "torus"
    config = ExportConfig(views=3, size=16, val_views=1, test_views=1, n_uniform=20_000, n_surface=20_000,
                          n_points=5_000)
    return export_dataset("torus", out, config=config)


def test_render_writes_a_blender_dataset(capsys, tmp_path):
    summary = run_json(capsys, ["render", "--shape", "sphere", "--views", "4", "--size", "16", "--out",
                                str(tmp_path / "sphere"), "--json"])
    assert summary["shape"] == "sphere"
    frames = json.loads((tmp_path / "sphere" / "transforms_train.json").read_text())["frames"]
    assert len(frames) == 4
    for name in ("mesh.ply", "points.ply", "samples.npz", "transforms_val.json", "transforms_test.json"):
        assert name in summary["files"]


def test_render_phong_records_the_shading(capsys, tmp_path):
    summary = run_json(capsys, ["render", "--shape", "wire_knot", "--views", "2", "--size", "16", "--shading", "phong",
                                "--out", str(tmp_path / "wire"), "--json"])
    info = json.loads((tmp_path / "wire" / "dataset.json").read_text())
    assert summary["shading"] == info["shading"] == "phong" and info["k_s"] > 0 and info["shininess"] > 0
    assert info["shape"] == "wire_knot" and info["watertight"] is True


@pytest.fixture(scope="module")
def images_only(tmp_path_factory):
    """A Blender-layout folder with images and poses only, like a NeRF synthetic scene."""
    out = tmp_path_factory.mktemp("user") / "scene"
    export_dataset("sphere", out, config=ExportConfig(views=4, size=16, val_views=1, test_views=2, n_uniform=500,
                                                      n_surface=500, n_points=500))
    for name in ("mesh.ply", "points.ply", "samples.npz"):
        (out / name).unlink()
    return out


def test_fit_dvr_on_images_without_ground_truth_geometry(capsys, tmp_path, images_only):
    run = tmp_path / "dvr"
    summary = run_json(capsys, ["fit", "dvr", "--data", str(images_only), "--out", str(run), "--steps", "5",
                                "--resolution", "16", "--no-video", "--json", "--config.fit.no-progress",
                                "--config.size", "16", "--config.rays", "64", "--config.n-steps", "16"])
    assert summary == json.loads((run / "metrics.json").read_text())
    for key in ("iou", "chamfer_l1", "normal_consistency", "fscore", "fscore_threshold"):
        assert key in summary and summary[key] is None, key
    assert summary["dvr"]["views"] == 2 and 0.0 <= summary["dvr"]["silhouette_iou"] <= 1.0
    assert summary["dvr"]["psnr"] > 0.0
    assert (run / "mesh.ply").stat().st_size > 0


NERF_TINY = ["--resolution", "16", "--json", "--config.fit.no-progress", "--config.fit.lr", "5e-3", "--config.size", "16",
             "--config.rays", "256", "--config.depth", "3", "--config.width", "32", "--config.skip", "1",
             "--config.levels", "4", "--config.dir-levels", "2", "--config.n-coarse", "16", "--config.n-fine", "16",
             "--config.surface-density", "5"]
"""A NeRF small enough for seconds; after 100 steps its density crosses 5 (not yet the default 50), so a mesh exists."""


@pytest.fixture(scope="module")
def sphere_images(tmp_path_factory):
    out = tmp_path_factory.mktemp("nerf") / "sphere"
    return export_dataset("sphere", out, config=ExportConfig(views=4, size=16, val_views=1, test_views=2, n_uniform=500,
                                                             n_surface=500, n_points=500))


def dataset_test_images(data):
    """The test split's images composited on white, read with imageio and numpy alone (no vision3d code)."""
    frames = json.loads((data / "transforms_test.json").read_text())["frames"]
    rgba = [iio.imread(data / (frame["file_path"] + ".png")).astype(np.float64) / 255.0 for frame in frames]
    return [im[..., :3] * im[..., 3:] + (1.0 - im[..., 3:]) for im in rgba]


def test_fit_nerf_writes_appearance_geometry_renders_and_videos(capsys, tmp_path, sphere_images):
    run = tmp_path / "nerf"
    summary = run_json(capsys, ["fit", "nerf", "--data", str(sphere_images), "--out", str(run), "--steps", "100",
                                *NERF_TINY])
    assert summary == json.loads((run / "metrics.json").read_text())
    for name in ("mesh.ply", "orbit.mp4", "orbit_depth.mp4", "checkpoint.pt", "metrics.csv", "nerf_config.json"):
        assert (run / name).stat().st_size > 0, name
    assert summary["method"] == "nerf" and summary["density_threshold"] == 5.0 and summary["fit_seconds"] > 0
    assert 0.0 <= summary["iou"] <= 1.0 and summary["chamfer_l1"] > 0.0
    appearance = summary["appearance"]
    assert appearance["views"] == 2 and appearance["size"] == [16, 16] and appearance["fps"] > 0
    assert 0.0 < appearance["ssim"] < 1.0 and len(appearance["per_view"]) == 2
    # metrics.json's PSNR is that of the saved 8-bit renders against the dataset's images, recomputed here.
    truths = dataset_test_images(sphere_images)
    renders = []
    for i, truth in enumerate(truths):
        saved = iio.imread(run / "test_renders" / f"{i}.png").astype(np.float64) / 255.0
        assert saved.shape == (16, 32, 3)
        np.testing.assert_allclose(saved[:, 16:], truth, atol=0.5 / 255 + 1e-9)  # the right half: the truth, 8-bit
        renders.append(saved[:, :16])
        mse_i = np.mean((renders[-1] - truth) ** 2)
        assert appearance["per_view"][i]["psnr"] == pytest.approx(-10 * np.log10(mse_i), abs=1e-4)
    mse = np.mean((np.stack(renders) - np.stack(truths)) ** 2)
    assert appearance["psnr"] == pytest.approx(-10 * np.log10(mse), abs=1e-4)  # float32 vs float64 truth only
    # ... and within 8-bit quantisation of nerf.py's own evaluation of the float renders.
    assert appearance["psnr"] == pytest.approx(evaluate_nerf(run, sphere_images).psnr, abs=0.05)
    # The learnt field beats a blank white image of the background.
    assert appearance["psnr"] > -10 * np.log10(np.mean((1.0 - np.stack(truths)) ** 2))


def test_fit_nerf_without_ground_truth_geometry_and_resume(capsys, tmp_path, images_only):
    run = tmp_path / "nerf"
    argv = ["fit", "nerf", "--data", str(images_only), "--out", str(run), "--steps", "100", "--no-video", *NERF_TINY]
    summary = run_json(capsys, argv)
    for key in ("iou", "chamfer_l1", "normal_consistency", "fscore", "fscore_threshold"):
        assert key in summary and summary[key] is None, key
    assert summary["appearance"]["views"] == 2 and summary["appearance"]["psnr"] > 0.0
    assert sorted(p.name for p in (run / "test_renders").iterdir()) == ["0.png", "1.png"]
    assert (run / "mesh.ply").stat().st_size > 0 and not (run / "orbit.mp4").exists()
    resumed = run_json(capsys, [*argv[:7], "110", *argv[8:], "--resume"])
    steps = [float(row.split(",")[0]) for row in (run / "metrics.csv").read_text().strip().splitlines()[1:]]
    assert resumed["method"] == "nerf" and steps[-1] >= 109
    assert steps == sorted(set(steps))  # continued from step 100, not restarted from step 0


def test_fit_nerf_preset_starts_from_the_cpu_fast_path_and_options_change_it(capsys, tmp_path, sphere_images):
    from vision3d.nerf import cpu_preset

    run = tmp_path / "ngp"
    summary = run_json(capsys, ["fit", "nerf", "--data", str(sphere_images), "--out", str(run), "--preset", "ngp",
                                "--steps", "20", "--resolution", "16", "--no-video", "--json", "--config.fit.no-progress",
                                "--config.size", "16", "--config.hash-max-res", "32"])
    stored = json.loads((run / "config.json").read_text())
    preset = cpu_preset("ngp")
    assert stored["preset"] == "ngp" and stored["config"]["network"] == "hash" and stored["config"]["occupancy_grid"]
    assert stored["config"]["fit"]["lr"] == preset.fit.lr and stored["config"]["hash_levels"] == preset.hash_levels
    assert stored["config"]["size"] == 16 and stored["config"]["hash_max_res"] == 32  # given options change the preset
    assert stored["config"]["fit"]["steps"] == 20 and summary["appearance"]["size"] == [16, 16]
    # Without --preset, fit nerf is the paper's network with hierarchical sampling.
    from envs.io.cli import parse
    from vision3d.commands import Eval, FitCommand

    args = parse({"fit": FitCommand, "eval": Eval}, ["fit", "nerf", "--data", "d", "--out", "o"], "p", "")
    assert args.method.preset == "paper" and args.method.config.network == "mlp" and not args.method.config.occupancy_grid


def test_fit_gaussians_writes_the_standard_ply_and_scores_its_test_renders(capsys, tmp_path, sphere_images):
    from plyfile import PlyData

    from vision3d.splat_ply import splat_property_names

    run = tmp_path / "gaussians"
    summary = run_json(capsys, ["fit", "gaussians", "--data", str(sphere_images), "--out", str(run), "--steps", "60",
                                "--json", "--no-video", "--config.fit.no-progress", "--config.size", "16",
                                "--config.n-init", "300", "--config.densify-from", "20",
                                "--config.densify-interval", "20"])
    assert summary == json.loads((run / "metrics.json").read_text())
    vertex = PlyData.read(str(run / "point_cloud.ply"))["vertex"]
    assert [prop.name for prop in vertex.properties] == splat_property_names(16)
    assert summary["n_gaussians"] == vertex.count and vertex.count != 300  # densified and pruned
    assert summary["iou"] is None and summary["chamfer_l1"] is None  # no implicit surface to compare
    truths = dataset_test_images(sphere_images)
    renders = [iio.imread(run / "test_renders" / f"{i}.png").astype(np.float64)[:, :16] / 255.0
               for i in range(len(truths))]
    mse = np.mean((np.stack(renders) - np.stack(truths)) ** 2)
    assert summary["appearance"]["psnr"] == pytest.approx(-10 * np.log10(mse), abs=1e-4)
    # ... and within 8-bit quantisation of splat_training's own evaluation, which renders as training does
    # (same rasteriser settings, e.g. the 2D dilation).
    from vision3d.splat_training import SplatConfig, evaluate_gaussians

    own = evaluate_gaussians(run, sphere_images, SplatConfig(size=16)).psnr
    assert summary["appearance"]["psnr"] == pytest.approx(own, abs=0.05)


def test_a_field_without_a_surface_keeps_its_run_and_reports_null_geometry(capsys, tmp_path, sphere_images):
    """A radiance field whose density never reaches the threshold has no mesh; the fit is not lost."""
    run = tmp_path / "nerf"
    argv = ["fit", "nerf", "--data", str(sphere_images), "--out", str(run), "--steps", "5", "--no-video",
            *NERF_TINY[:-1], "1e6"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    summary = json.loads(out.strip().splitlines()[-1])
    assert "no surface at level" in err and "geometry metrics are null" in err
    assert summary["iou"] is None and summary["chamfer_l1"] is None and summary["appearance"]["views"] == 2
    assert (run / "metrics.json").exists() and not (run / "mesh.ply").exists()


@pytest.mark.parametrize(("method", "missing"), [("occupancy", "samples.npz"), ("deepsdf", "samples.npz"),
                                                 ("igr", "points.ply"), ("gaussians", "points.ply")])
def test_fit_from_3d_supervision_names_the_missing_file(tmp_path, images_only, method, missing):
    with pytest.raises(ValueError) as info:
        main(["fit", method, "--data", str(images_only), "--out", str(tmp_path / "r"), "--steps", "5"])
    message = str(info.value)
    assert "\n" not in message and f"{images_only} has no {missing}, which fit {method} needs" in message
    assert not (tmp_path / "r").exists()  # refused before a run folder was made


def independent_chamfer(mesh_a: trimesh.Trimesh, mesh_b: trimesh.Trimesh, n: int, seed: int) -> float:
    """Chamfer-L1 written out again with trimesh's sampler and scipy alone (no vision3d code)."""
    a, _ = trimesh.sample.sample_surface(mesh_a, n, seed=seed)
    b, _ = trimesh.sample.sample_surface(mesh_b, n, seed=seed + 1)
    return 0.5 * (cKDTree(b).query(a)[0].mean() + cKDTree(a).query(b)[0].mean())


def test_fit_writes_mesh_metrics_video_and_resumes(capsys, tmp_path, torus_data):
    run = tmp_path / "occ"
    argv = ["fit", "occupancy", "--data", str(torus_data), "--out", str(run), "--steps", "150",
            "--resolution", "48", "--json", "--config.fit.no-progress", "--config.batch-size", "1024"]
    summary = run_json(capsys, argv)
    for name in ("mesh.ply", "metrics.json", "orbit.mp4", "checkpoint.pt", "metrics.csv"):
        assert (run / name).stat().st_size > 0, name
    assert summary == json.loads((run / "metrics.json").read_text())
    assert summary["method"] == "occupancy" and 0.0 <= summary["iou"] <= 1.0
    # metrics.json agrees with an independent Chamfer computation on the saved mesh.
    saved, truth = trimesh.load(run / "mesh.ply"), trimesh.load(torus_data / "mesh.ply")
    assert summary["chamfer_l1"] == pytest.approx(independent_chamfer(saved, truth, 100_000, 7), rel=0.05, abs=5e-4)
    # Resuming to more steps continues from the checkpoint rather than starting over.
    resumed = run_json(capsys, argv[:7] + ["170"] + argv[8:] + ["--resume", "--no-video"])
    rows = (run / "metrics.csv").read_text().strip().splitlines()
    assert resumed["method"] == "occupancy" and float(rows[-1].split(",")[0]) >= 169


def test_eval_compares_two_meshes(capsys, tmp_path, torus_data):
    truth = trimesh.load(torus_data / "mesh.ply")
    shifted = truth.copy()
    shifted.apply_translation([0.02, 0.0, 0.0])
    shifted.export(tmp_path / "shifted.ply")
    same = run_json(capsys, ["eval", "--mesh", str(torus_data / "mesh.ply"), "--reference",
                             str(torus_data / "mesh.ply"), "--points", "20000", "--json"])
    moved = run_json(capsys, ["eval", "--mesh", str(tmp_path / "shifted.ply"), "--reference",
                              str(torus_data / "mesh.ply"), "--points", "20000", "--json"])
    assert same["chamfer_l1"] == 0.0 and same["iou"] == 1.0 and same["fscore"] == 1.0
    assert 0.005 < moved["chamfer_l1"] < 0.02 and moved["iou"] < 0.95


def test_bad_input_is_one_clear_line(tmp_path, torus_data):
    with pytest.raises(ValueError, match="neither a known shape"):
        main(["render", "--shape", "no-such-shape", "--out", str(tmp_path / "x")])
    with pytest.raises(ValueError, match="different names"):
        main(["fit", "deepsdf", "--data", str(torus_data), str(torus_data), "--out", str(tmp_path / "r")])
    other = tmp_path / "other"
    other.mkdir()
    (other / "mesh.ply").write_bytes((torus_data / "mesh.ply").read_bytes())
    with pytest.raises(ValueError, match="igr fits one dataset"):
        main(["fit", "igr", "--data", str(torus_data), str(other), "--out", str(tmp_path / "r")])
    with pytest.raises(ValueError, match="has no samples.npz, which fit occupancy needs"):
        main(["fit", "occupancy", "--data", str(tmp_path), "--out", str(tmp_path / "r")])


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_resume_refuses_a_malicious_checkpoint_and_a_folder_without_one(tmp_path, torus_data):
    import torch

    run = tmp_path / "occ"
    argv = ["fit", "occupancy", "--data", str(torus_data), "--out", str(run), "--steps", "150", "--resolution", "24",
            "--no-video", "--config.fit.no-progress", "--config.batch-size", "512"]
    assert main(argv) == 0
    marker = tmp_path / "pwned"
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    torch.save(dict(state, rng=_Payload(marker)), run / "checkpoint.pt")
    with pytest.raises(ValueError, match="checkpoint.pt was refused"):
        main([*argv, "--resume", "--steps", "160"])
    assert not marker.exists()
    with pytest.raises(ValueError, match="already holds a run"):
        main(argv)  # a fresh run never overwrites a folder that holds one
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no config.json"):
        main([*argv[:5], str(tmp_path / "empty"), *argv[6:], "--resume"])


def test_resume_reads_the_stored_options_and_says_which_it_ignores(tmp_path, torus_data, capsys):
    run = tmp_path / "occ"
    argv = ["fit", "occupancy", "--data", str(torus_data), "--out", str(run), "--steps", "150", "--resolution", "24",
            "--no-video", "--config.fit.no-progress", "--config.batch-size", "512", "--json"]
    assert main(argv) == 0
    capsys.readouterr()
    changed = [a if a != "512" else "256" for a in argv]
    assert main([*changed, "--resume", "--steps", "160"]) == 0
    captured = capsys.readouterr()
    assert "config.batch_size (stored 512, here 256)" in captured.err
    stored = json.loads((run / "config.json").read_text())
    assert stored["config"]["batch_size"] == 512
    assert (run / "metrics.csv").read_text().strip().splitlines()[-1].split(",")[0] == "160"
