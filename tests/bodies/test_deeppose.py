"""DeepPose (notes §13.1): the crop <-> image coordinate maps against the sampler itself, the simulated
displacements, and a cascade whose second stage refines the first on synthetic stick figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bodies.deeppose import (
    DeepPose,
    DeepPoseConfig,
    crop_images,
    crop_to_image,
    denormalise,
    displacement_statistics,
    image_to_crop,
    normalise,
    pose_extent,
    predict,
    train_deeppose,
)
from bodies.heatmaps import stick_figures
from bodies.metrics import pck
from bodies.skeleton import NUM_KEYPOINTS
from generative.training import FitConfig


def quiet_fit(steps: int, seed: int = 0) -> FitConfig:
    return FitConfig(steps=steps, lr=2e-3, warmup_steps=20, seed=seed, progress=False, log_every=50,
                     checkpoint_every=10**6)


def test_crop_maps_are_inverse_and_the_centre_is_the_estimate():
    g = torch.Generator().manual_seed(0)
    centre, side = 64 * torch.rand(7, 2, generator=g), 5 + 30 * torch.rand(7, generator=g)
    points = 64 * torch.rand(7, 2, generator=g)
    crop = image_to_crop(points, centre, side, 24)
    assert torch.allclose(crop_to_image(crop, centre, side, 24), points, atol=1e-5)
    middle = torch.full((7, 2), 12.0)
    assert torch.equal(crop_to_image(middle, centre, side, 24), centre)  # the crop's centre is the estimate
    assert torch.equal(image_to_crop(centre, centre, side, 24), middle)
    corners = crop_to_image(torch.tensor([[0.0, 0.0], [24.0, 24.0]]), centre[:1], side[:1], 24)
    assert torch.allclose(corners[1] - corners[0], side[0].expand(2))  # the crop spans L image pixels


def test_crops_sample_the_image_where_the_maps_say():
    # bilinear sampling reproduces a linear image exactly, so each crop pixel must read the value of the
    # image point that crop_to_image gives for its centre
    size, crop = 48, 16
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    image = torch.stack([xs / size, ys / size, 0.5 + 0 * xs])[None]  # [1, 3, 48, 48]: channels x/W, y/W
    centre = torch.tensor([[[20.3, 25.7], [24.0, 24.0], [14.8, 30.1]]])  # boxes inside the image
    side = torch.tensor([13.7])
    crops = crop_images(image, centre, side, crop)  # [1, 3, 3, 16, 16]
    assert crops.shape == (1, 3, 3, crop, crop)
    v, u = torch.meshgrid(torch.arange(crop) + 0.5, torch.arange(crop) + 0.5, indexing="ij")
    for k in range(3):
        where = crop_to_image(torch.stack([u, v], -1), centre[0, k], side[0], crop)  # [16, 16, 2]
        assert torch.allclose(crops[0, k, 0] * size, where[..., 0], atol=1e-4)
        assert torch.allclose(crops[0, k, 1] * size, where[..., 1], atol=1e-4)


def test_normalised_coordinates_and_extent():
    points = torch.tensor([[[0.0, 64.0], [32.0, 32.0], [10.0, 20.0]]])
    assert torch.equal(normalise(points, 64)[0, 1], torch.zeros(2))
    assert torch.equal(denormalise(normalise(points, 64), 64), points)
    assert pose_extent(points).tolist() == [44.0]  # x spans 32, y spans 44


def test_displacement_statistics_by_hand():
    truth = torch.zeros(3, 2, 2)
    previous = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[3.0, 2.0], [5.0, 5.0]], [[100.0, 0.0], [1.0, 1.0]]])
    visible = torch.tensor([[True, True], [True, True], [False, True]])
    mean, std = displacement_statistics(previous, truth, visible, torch.tensor([1.0, 2.0, 1.0]))
    # keypoint 0 uses images 0, 1: displacements (1, 0) and (1.5, 1); keypoint 1: (0, 0), (2.5, 2.5), (1, 1)
    assert mean.flatten().tolist() == pytest.approx([1.25, 0.5, 7 / 6, 7 / 6])
    assert std[0].tolist() == pytest.approx([0.25, 0.5])


def test_cascade_shapes():
    model = DeepPose(DeepPoseConfig(stages=3, channels=4, hidden=8, crop_size=16), image_size=32)
    out = model(torch.rand(2, 3, 32, 32))
    assert out.shape == (3, 2, NUM_KEYPOINTS, 2)
    images = (255 * np.random.default_rng(0).random((5, 32, 32, 3))).astype(np.uint8)
    prediction = predict(model, images, chunk=2)
    assert prediction.stage_keypoints.shape == (3, 5, NUM_KEYPOINTS, 2)
    model.eval()
    with torch.no_grad():
        full = model(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    assert np.allclose(prediction.stage_keypoints, full.numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="images"):
        predict(model, images[:, :16])


def test_second_stage_refines_the_first(tmp_path, measured):
    (images, points, visible), held_out = stick_figures(400, 64, seed=0), stick_figures(150, 64, seed=1)
    config = DeepPoseConfig(fit=quiet_fit(150), refine_fit=quiet_fit(100), stages=2, batch_size=16, crop_size=16)
    result = train_deeppose(images, points, visible, config, tmp_path / "deeppose", held_out=held_out)
    stages = predict(result.model, held_out[0]).stage_keypoints
    error = [float(np.linalg.norm(s - held_out[1], axis=-1)[held_out[2]].mean()) for s in stages]
    baseline = pck(np.broadcast_to(points.mean(0), held_out[1].shape), held_out[1], held_out[2]).overall
    measured(f"deeppose 64px PCK@0.2 per stage {np.round(result.stage_pck, 3).tolist()}, mean error (px) "
             f"{np.round(error, 2).tolist()}, mean pose PCK {baseline:.3f}, {result.seconds:.1f} s")
    assert error[1] < 0.7 * error[0]
    assert result.stage_pck[1] > result.stage_pck[0] and result.stage_pck[1] >= baseline + 0.4
    assert [f.steps for f in result.fits] == [150, 100]


def test_same_seed_same_numbers(tmp_path):
    images, points, visible = stick_figures(32, 32, seed=2)

    def run(seed: int, name: str) -> np.ndarray:
        config = DeepPoseConfig(fit=quiet_fit(4, seed), refine_fit=quiet_fit(3, seed), channels=4, hidden=8,
                                batch_size=4, crop_size=8)
        return predict(train_deeppose(images, points, visible, config, tmp_path / name).model, images).stage_keypoints

    first, second, other = run(5, "a"), run(5, "b"), run(6, "c")
    assert np.array_equal(first, second)
    assert not np.allclose(first, other)
