"""``python -m bodies view``: where it puts a fitted body, the overlay it draws, the scene it builds (without a
browser), its errors, and the page in headless Chromium (``browser`` test)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import viser
from scipy.spatial.transform import Rotation

from bodies.__main__ import main
from bodies.data import RenderConfig, load_renders, render_dataset
from bodies.model import BodyModel
from bodies.viewer import View, build_scene, draw_body, fitted_body, load_content, serve, true_body

MAGENTA = (255, 0, 255)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("bodies-view") / "data"
    render_dataset(out, RenderConfig(count=2, size=64, seed=1))
    return out


def true_theta(renders) -> np.ndarray:  # [N, 85]
    """The fitting's parameters of the data set's own bodies: pose, shape, rotation ``r`` with ``F R(r) = R`` and the
    weak-perspective camera in normalised image coordinates."""
    size = renders.meta["size"]
    rot = Rotation.from_matrix(np.diag([1.0, -1.0, -1.0]) @ renders.R.astype(np.float64)).as_rotvec()
    return np.concatenate([renders.body_pose, renders.betas, rot, renders.s[:, None] / size,
                           (renders.t - 0.5 * size) / size], axis=1)


@pytest.fixture(scope="module")
def true_run(data, tmp_path_factory):
    """A run folder holding what `fit` writes, with the true parameters as the fit."""
    run = tmp_path_factory.mktemp("bodies-view") / "run"
    run.mkdir()
    np.savez(run / "fits.npz", theta=true_theta(load_renders(data, images=False)).astype(np.float32),
             losses=np.zeros((1, 2), np.float32))
    return run


@pytest.fixture(scope="module")
def model():
    return BodyModel.from_file()


def test_the_true_parameters_put_the_body_where_the_data_sets_camera_saw_it(data, model):
    renders = load_renders(data, images=False)
    size, focal = renders.meta["size"], renders.meta["intrinsics"]["fx"]
    for i, theta in enumerate(true_theta(renders)):
        body = fitted_body(model, theta, size, focal)
        np.testing.assert_allclose(body.vertices, true_body(model, renders, i), atol=1e-4)
        # the weak-perspective image is close to the perspective one of the same points
        perspective = focal * body.vertices[:, :2] / body.vertices[:, 2:] + 0.5 * size
        assert np.median(np.linalg.norm(body.uv - perspective, axis=1)) < 0.02 * size


def test_draw_body_paints_the_nearer_face_over_the_farther_one():
    image = np.full((20, 20, 3), 50, np.uint8)
    uv = np.array([[2, 2], [18, 2], [2, 18], [6, 6], [14, 6], [6, 14]], float)
    points = np.array([[0, 0, 5], [1, 0, 5], [0, 1, 5], [0, 0, 1], [1, 0, 1], [0, 1, 1.0]])  # both face the camera
    depth = points[:, 2]
    faces = np.array([[3, 4, 5], [0, 1, 2]])  # the near face first: the painter must reorder
    out = draw_body(image, uv, depth, points, faces, (200, 100, 0), 1.0)
    np.testing.assert_array_equal(out[8, 8], (200, 100, 0))  # inside both
    np.testing.assert_array_equal(out[17, 17], (50, 50, 50))  # outside both
    near = points.copy()
    near[3:, 2] = [1.0, 1.0, 2.0]  # the near face tilted: darker shade, still in front
    tilted = draw_body(image, uv, near[:, 2], near, faces, (200, 100, 0), 1.0)
    assert tilted[8, 8, 0] < 200 and np.array_equal(tilted[3, 10], (200, 100, 0))
    half = draw_body(image, uv, depth, points, faces, (200, 100, 0), 0.5)
    np.testing.assert_array_equal(half[8, 8], (125, 75, 25))
    np.testing.assert_array_equal(draw_body(image, uv, depth, points, faces, (200, 100, 0), 0.0), image)


def test_the_drawn_body_covers_the_rendered_silhouette(data, model):
    renders = load_renders(data)
    size, focal = renders.meta["size"], renders.meta["intrinsics"]["fx"]
    faces = model.faces.numpy()
    for i in range(len(renders.images)):
        vertices = true_body(model, renders, i)
        uv = focal * vertices[:, :2] / vertices[:, 2:] + 0.5 * size  # the data set's pinhole camera
        white = np.full_like(renders.images[i], 255)
        coverage = 1.0 - draw_body(white, uv, vertices[:, 2], vertices, faces, (0, 0, 0), 1.0)[..., 0] / 255.0
        drawn, mask = coverage > 0.5, renders.masks[i]
        assert (drawn & mask).sum() / (drawn | mask).sum() > 0.85


def test_the_scene_overlays_the_fitted_body_on_its_image_and_the_slider_switches_samples(true_run, data, model,
                                                                                          server):
    args = View(true_run, data=data, body_color=MAGENTA)
    content = load_content(args)
    scene = build_scene(server, content, args, model)
    renders, faces = content.renders, model.faces.numpy()
    cv_to_world = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    for i in (0, 1):
        if i:
            scene.sample.value = 1
        body = fitted_body(model, content.theta[i], renders.meta["size"], content.focal)
        expected = draw_body(renders.images[i], body.uv, body.vertices[:, 2], body.vertices, faces, MAGENTA, 0.6)
        np.testing.assert_array_equal(scene.overlay, expected)
        np.testing.assert_array_equal(scene.handles["image"].image, expected)
        np.testing.assert_allclose(scene.handles["body"].vertices, body.vertices @ cv_to_world.T, atol=1e-5)
        np.testing.assert_allclose(scene.handles["truth"].vertices, true_body(model, renders, i) @ cv_to_world.T,
                                   atol=1e-4)
    assert not scene.handles["truth"].visible
    scene.show_truth.value = True
    assert scene.handles["truth"].visible


@pytest.mark.parametrize("case", ["no-run", "bad-theta", "no-data", "index"])
def test_bad_input_is_one_line_before_any_server_starts(case, tmp_path, data, true_run, monkeypatch):
    def no_server(*args, **kwargs):
        raise AssertionError("a server started before the input was checked")

    monkeypatch.setattr(viser, "ViserServer", no_server)
    bad = tmp_path / "run"
    bad.mkdir()
    if case == "bad-theta":
        np.savez(bad / "fits.npz", theta=np.zeros((2, 80), np.float32))
    args, words = {
        "no-run": (View(bad, data=data), "holds no fits.npz"),
        "bad-theta": (View(bad, data=data), "expected theta [B, 85]"),
        "no-data": (View(true_run), "pass --data"),
        "index": (View(true_run, data=data, index=5), "--index"),
    }[case]
    with pytest.raises(ValueError, match=re.escape(words)) as error:
        serve(args)
    assert "\n" not in str(error.value)


def test_the_command_line_reports_a_missing_run(tmp_path):
    with pytest.raises(ValueError, match="holds no fits.npz"):
        main(["view", str(tmp_path), "--port", "0"])


@pytest.mark.browser
def test_the_page_shows_a_fit_run_in_chromium(data, tmp_path, screenshot, viewer_process, capsys, measured, magenta):
    run = tmp_path / "fit"
    assert main(["fit", "adam", "--data", str(data), "--out", str(run), "--steps", "30", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["samples"] == 2
    url, stop = viewer_process(["bodies", "view", str(run), "--data", str(data), "--port", "0", "--body-color", "255",
                                "0", "255"])

    image, console = screenshot(url, ready=lambda image: magenta(image).mean() > 0.003)
    status, stderr = stop()
    measured(f"canvas std {image.std():.1f}, body colour on {magenta(image).mean():.2%} of it")
    assert image.std() > 10, f"the canvas is blank (std {image.std():.1f}); console: {console[-5:]}"
    assert magenta(image).mean() > 0.003, f"the body colour covers {magenta(image).mean():.2%}; console: {console[-5:]}"
    assert status == 0 and "Traceback" not in stderr, stderr[-2000:]
