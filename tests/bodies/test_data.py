"""Rendered data sets: labels agree with the pictures and with the notes' weak-perspective camera; the folder
round-trips; bad folders are one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bodies.data import RenderConfig, load_renders, render_dataset
from bodies.fitting import LAYOUT, normalise, project
from bodies.model import BodyModel


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    out = tmp_path_factory.mktemp("renders") / "set"
    summary = render_dataset(out, RenderConfig(count=12, size=96, seed=3))
    assert summary["count"] == 12
    return out, load_renders(out)


def test_keypoints_fall_on_the_rendered_body(renders):
    _, r = renders
    assert r.images.shape == (12, 96, 96, 3) and r.masks.shape == (12, 96, 96)
    inside = r.visible & ~r.occluded
    u, v = np.floor(r.keypoints2d[..., 0]).astype(int), np.floor(r.keypoints2d[..., 1]).astype(int)
    n, k = np.nonzero(inside)
    on_body = r.masks[n, v[n, k], u[n, k]]
    assert on_body.mean() > 0.9  # joints lie inside the limbs (the head top and ankles may graze the outline)
    # and the body covers a plausible part of the image
    assert 0.03 < r.masks.mean() < 0.4


def test_labels_follow_the_weak_perspective_camera(renders):
    """x ~ s Pi(R X) + t within the perspective error of a 30-degree camera 4-5 m away."""
    _, r = renders
    model = BodyModel.from_file()
    rot = torch.as_tensor(np.stack([_rotvec(np.diag([1.0, -1.0, -1.0]) @ R) for R in r.R]), dtype=torch.float32)
    theta = torch.zeros(12, LAYOUT.size)
    theta[:, LAYOUT.pose], theta[:, LAYOUT.betas] = torch.as_tensor(r.body_pose), torch.as_tensor(r.betas)
    theta[:, LAYOUT.rot], theta[:, LAYOUT.scale] = rot, torch.as_tensor(r.s[:, None] / 96)
    theta[:, LAYOUT.offset] = torch.as_tensor(normalise(r.t, 96))
    with torch.no_grad():
        x = project(model, theta).numpy() * 96 + 48
    error = np.linalg.norm(x - r.keypoints2d, axis=-1)
    assert np.median(error) < 1.5 and error.max() < 8.0  # limbs reaching 0.5 m towards the camera: ~5 px


def _rotvec(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(R).as_rotvec()


def test_coco_json_and_meta(renders):
    out, r = renders
    coco = json.loads((out / "coco.json").read_text())
    assert len(coco["images"]) == 12 and coco["categories"][0]["keypoints"][0] == "head_top"
    first = np.array(coco["annotations"][0]["keypoints"]).reshape(14, 3)
    np.testing.assert_allclose(first[:, :2], r.keypoints2d[0], atol=1e-3)
    assert set(first[:, 2]) <= {0, 1, 2} and (first[:, 2] == 1).sum() == r.occluded[0].sum()
    meta = json.loads((out / "meta.json").read_text())
    assert meta["size"] == 96 and len(meta["skeleton"]) == 13


def test_rendering_is_seeded(tmp_path):
    for name in ("a", "b"):
        render_dataset(tmp_path / name, RenderConfig(count=2, size=48, seed=5))
    a, b = load_renders(tmp_path / "a"), load_renders(tmp_path / "b")
    np.testing.assert_array_equal(a.keypoints2d, b.keypoints2d)
    np.testing.assert_array_equal(a.images, b.images)


def test_bad_folders_are_one_line_errors(renders, tmp_path):
    out, _ = renders
    with pytest.raises(ValueError, match="is not empty"):
        render_dataset(out, RenderConfig(count=1, size=32))
    with pytest.raises(ValueError, match="no meta.json"):
        load_renders(tmp_path)
    with pytest.raises(ValueError, match="count must be >= 1"):
        RenderConfig(count=0)
