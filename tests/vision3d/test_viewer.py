"""``python -m vision3d view``: the scene it builds (without a browser), its poses and renders, its errors, and the
page in headless Chromium (``browser`` tests)."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request

import numpy as np
import pytest
import torch
import trimesh
import viser
import viser.transforms as tf
from scipy.spatial.transform import Rotation

from vision3d.__main__ import main
from vision3d.camera import Intrinsics, sphere_poses
from vision3d.dataset import ExportConfig, export_dataset
from vision3d.nerf import NeRFModel, cpu_preset, render_image
from vision3d.splat_ply import SplatArrays, write_splat_ply
from vision3d.viewer import (
    GROUND_TRUTH,
    BrowserCamera,
    LatestOnly,
    NeRFLayer,
    View,
    browser_c2w,
    browser_intrinsics,
    build_scene,
    frustum_rotation,
    frustum_shape,
    load_content,
    serve,
    splat_inputs,
)

MAGENTA = (255, 0, 255)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("view") / "torus"
    return export_dataset("torus", out, config=ExportConfig(views=5, size=16, val_views=1, test_views=2, n_uniform=500,
                                                            n_surface=500, n_points=500))


def random_splats(n: int, seed: int = 0) -> SplatArrays:
    rng = np.random.default_rng(seed)
    return SplatArrays(means=rng.uniform(-0.5, 0.5, (n, 3)), log_scales=rng.uniform(-4.0, -2.0, (n, 3)),
                       quaternions=rng.normal(size=(n, 4)), opacity_logits=rng.normal(size=n),
                       sh=rng.normal(0.0, 0.5, (n, 4, 3)))


@pytest.fixture(scope="module")
def splat_run(dataset, tmp_path_factory):
    """A run folder as `fit gaussians` leaves it (config.json naming the data, point_cloud.ply) plus a mesh.ply."""
    run = tmp_path_factory.mktemp("view") / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": [str(dataset)], "out": str(run)}))
    write_splat_ply(run / "point_cloud.ply", random_splats(30))
    trimesh.creation.icosphere(subdivisions=2, radius=0.4).export(run / "mesh.ply")
    return run


def test_a_dataset_folder_shows_one_frustum_per_view_and_its_ground_truth_mesh(dataset, server):
    content = load_content(View(dataset, mesh_color=MAGENTA))
    scene = build_scene(server, content, View(dataset, mesh_color=MAGENTA))
    frames = json.loads((dataset / "transforms_train.json").read_text())["frames"]
    assert len(scene.frustums) == len(frames) == 5
    poses = np.array([frame["transform_matrix"] for frame in frames])
    np.testing.assert_allclose([f.position for f in scene.frustums], poses[:, :3, 3], atol=1e-5)
    np.testing.assert_allclose([f.image.shape for f in scene.frustums], [(64, 64, 3)] * 5)
    assert list(scene.layers) == [GROUND_TRUTH] and scene.layer.value == GROUND_TRUTH
    (mesh,) = scene.layers[GROUND_TRUTH]
    reference = trimesh.load(dataset / "mesh.ply", process=False)
    np.testing.assert_allclose(mesh.vertices, reference.vertices, atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, reference.faces)
    assert tuple(mesh.color) == MAGENTA and mesh.visible


def test_a_run_folder_lists_its_layers_and_the_gui_switches_them(splat_run, server):
    args = View(splat_run)
    scene = build_scene(server, load_content(args), args)
    assert list(scene.layer.options) == ["gaussians", "mesh", GROUND_TRUTH]
    assert scene.layer.value == "gaussians"  # a run shows its own result first

    def visible():
        return {name: [handle.visible for handle in handles] for name, handles in scene.layers.items()}

    assert visible() == {"gaussians": [True], "mesh": [False], GROUND_TRUTH: [False]}
    scene.layer.value = "mesh"
    assert visible() == {"gaussians": [False], "mesh": [True], GROUND_TRUTH: [False]}
    assert len(scene.layers["mesh"][0].vertices) == len(trimesh.load(splat_run / "mesh.ply").vertices)
    scene.show_cameras.value = False
    assert not any(f.visible for f in scene.frustums)
    scene.show_cameras.value = True
    assert all(f.visible for f in scene.frustums)


def test_the_layer_shown_first_can_be_chosen(splat_run, server):
    args = View(splat_run, layer="ground-truth")
    assert build_scene(server, load_content(args), args).layer.value == GROUND_TRUTH


def test_splat_inputs_are_the_activated_parameters():
    splats = random_splats(20, seed=1)
    out = splat_inputs(splats)
    q = splats.quaternions
    R = Rotation.from_quat(np.concatenate([q[:, 1:], q[:, :1]], axis=1)).as_matrix()  # scipy wants (x, y, z, w)
    expected = R @ (np.exp(2 * splats.log_scales)[:, :, None] * R.transpose(0, 2, 1))  # R S^2 R^T
    np.testing.assert_allclose(out["covariances"], expected, rtol=1e-4, atol=1e-9)
    np.testing.assert_allclose(out["rgbs"], np.clip(0.5 + 0.28209479177387814 * splats.sh[:, 0, :], 0, 1), atol=1e-6)
    np.testing.assert_allclose(out["opacities"][:, 0], 1 / (1 + np.exp(-splats.opacity_logits)), rtol=1e-6)
    assert out["opacities"].shape == (20, 1) and out["centers"].shape == (20, 3)


def test_frustums_look_at_what_the_camera_looks_at_and_browser_poses_invert_them():
    for c2w in sphere_poses(12, radius=2.5, mode="random", seed=3):
        wxyz = frustum_rotation(c2w)
        forward = tf.SO3(wxyz).as_matrix()[:, 2]  # viser's cameras look down their +z (OpenCV)
        np.testing.assert_allclose(forward, -c2w[:3, 3] / np.linalg.norm(c2w[:3, 3]), atol=1e-9)
        np.testing.assert_allclose(browser_c2w(wxyz, c2w[:3, 3]), c2w, atol=1e-9)


def test_browser_intrinsics_have_the_browser_field_of_view_and_aspect():
    for fov, aspect in [(0.8, 1.5), (1.2, 0.75), (0.3, 2.0)]:
        intrinsics = browser_intrinsics(fov, aspect, 64)
        assert intrinsics.height == 64 and intrinsics.width == round(64 * aspect)
        np.testing.assert_allclose(frustum_shape(intrinsics), (fov, aspect), rtol=1e-9)
    with pytest.raises(ValueError, match="fov"):
        browser_intrinsics(0.0, 1.0, 64)


def test_the_nerf_layer_renders_the_field_from_the_browser_camera():
    torch.manual_seed(0)
    model = NeRFModel(cpu_preset("nerf")).eval()
    c2w = sphere_poses(1, radius=2.0, mode="random", seed=5)[0]
    fov = 0.7
    camera = BrowserCamera(frustum_rotation(c2w), c2w[:3, 3], fov, 1.0)
    image = NeRFLayer(model, 12).render(camera)
    expected = render_image(model, c2w, Intrinsics.from_fov(12, 12, fov)).rgb
    assert image.shape == (12, 12, 3) and image.dtype == np.uint8
    np.testing.assert_allclose(image, np.round(255 * np.clip(expected, 0, 1)), atol=1)


def test_latest_only_skips_what_a_newer_submission_replaced():
    started, release, done = threading.Event(), threading.Event(), []

    def work(item):
        started.set()
        release.wait(10)
        done.append(item)

    renderer = LatestOnly(work)
    worker = threading.Thread(target=renderer.submit, args=(0,))
    worker.start()
    assert started.wait(10)
    for item in range(1, 20):  # each returns at once: the worker is busy
        renderer.submit(item)
    release.set()
    worker.join(10)
    assert done == [0, 19]


@pytest.mark.parametrize("case", ["missing", "empty", "no-data", "moved-data", "layer", "port"])
def test_bad_input_is_one_line_before_any_server_starts(case, tmp_path, dataset, monkeypatch):
    def no_server(*args, **kwargs):
        raise AssertionError("a server started before the input was checked")

    monkeypatch.setattr(viser, "ViserServer", no_server)
    run = tmp_path / "run"
    run.mkdir()
    args, words = {
        "missing": (View(tmp_path / "nothing"), "not a folder"),
        "empty": (View(run), "neither a run"),
        "no-data": (View(run), "names no dataset"),
        "moved-data": (View(run), "does not exist here"),
        "layer": (View(dataset, layer="gaussians"), "has only ground-truth"),
        "port": (View(dataset, port=70000), "--port"),
    }[case]
    if case == "no-data":
        (run / "config.json").write_text(json.dumps({"out": str(run)}))
    if case == "moved-data":
        (run / "config.json").write_text(json.dumps({"data": [str(tmp_path / "gone")]}))
    with pytest.raises(ValueError, match=re.escape(words)) as error:
        serve(args)
    assert "\n" not in str(error.value)


def test_the_command_line_reports_a_bad_folder():
    with pytest.raises(ValueError, match="not a folder"):
        main(["view", "/nonexistent/folder", "--port", "0"])


def test_serve_prints_the_url_serves_the_page_and_returns_when_stopped(dataset):
    lines, stop, result = [], threading.Event(), []
    thread = threading.Thread(target=lambda: result.append(serve(View(dataset, port=0), stop, lines.append)))
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not lines and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(lines) == 1 and re.fullmatch(r"viewer at http://127\.0\.0\.1:\d+", lines[0]), lines
        with urllib.request.urlopen(lines[0].removeprefix("viewer at "), timeout=30) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        stop.set()
        thread.join(30)
    assert result == [0]



@pytest.mark.browser
def test_the_page_draws_the_mesh_in_chromium(dataset, screenshot, viewer_process, measured, magenta):
    url, stop = viewer_process(["vision3d", "view", str(dataset), "--port", "0", "--mesh-color", "255", "0", "255"])
    image, console = screenshot(url, ready=lambda image: magenta(image).mean() > 0.005)
    status, stderr = stop()
    measured(f"canvas std {image.std():.1f}, mesh colour on {magenta(image).mean():.2%} of it")
    assert image.std() > 10, f"the canvas is blank (std {image.std():.1f}); console: {console[-5:]}"
    assert magenta(image).mean() > 0.005, f"the mesh colour covers {magenta(image).mean():.2%}; console: {console[-5:]}"
    assert status == 0 and "Traceback" not in stderr, stderr[-2000:]
