"""Convolutional pose machines (notes §13.1): heatmap targets and decoding, intermediate supervision, the
receptive field of every stage, and a small end-to-end fit on synthetic stick figures."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bodies.cpm import CPM, CPMConfig, cpm_loss, cpm_targets, predict, receptive_field, train_cpm
from bodies.heatmaps import (
    Batch,
    decode_heatmaps,
    gaussian_heatmaps,
    horizontal_flip,
    scale_translate,
    stick_figures,
    with_background,
)
from bodies.metrics import pck
from bodies.skeleton import FLIP_PERMUTATION, NUM_KEYPOINTS
from generative.training import FitConfig


def quiet_fit(steps: int, seed: int = 0) -> FitConfig:
    return FitConfig(steps=steps, lr=2e-3, warmup_steps=20, seed=seed, progress=False, log_every=50,
                     checkpoint_every=10**6)


@pytest.fixture(scope="module")
def figures():
    """500 training and 150 held-out 64x64 stick figures."""
    return stick_figures(500, 64, seed=0), stick_figures(150, 64, seed=1)


@pytest.mark.parametrize("stride", [1, 4])
def test_decoding_an_exact_target_returns_the_keypoint(stride):
    size = 64 // stride
    g = torch.Generator().manual_seed(0)
    points = 2 * stride + (64 - 4 * stride) * torch.rand(5, NUM_KEYPOINTS, 2, generator=g)  # away from the border
    maps = gaussian_heatmaps(points, size, stride, sigma=1.5)
    decoded, scores = decode_heatmaps(maps, stride)
    assert torch.allclose(decoded, points, atol=1e-3 * stride)
    assert scores.max() <= 1.0 and scores.min() > 0.6  # the peak cell is within half a cell of the point
    # the plain argmax is off by up to half a cell; the parabola removes that
    plain = (maps.flatten(2).argmax(-1)[..., None] // torch.tensor([1, size]) % size)[..., [1, 0]]
    assert ((plain + 0.5) * stride - points).abs().max() > 0.2 * stride


def test_target_maps_and_background():
    points = torch.tensor([[[10.0, 20.0], [40.0, 12.0]]])  # pixels on a 64-pixel image, stride 4
    visible = torch.tensor([[True, False]])
    targets, weights = cpm_targets(points, visible, size=16, stride=4, sigma=1.0)
    assert targets.shape == (1, 3, 16, 16)
    u, v = 10 / 4 - 0.5, 20 / 4 - 0.5  # continuous cell of (10, 20)
    assert targets[0, 0, 4, 2] == pytest.approx(np.exp(-((2 - u) ** 2 + (4 - v) ** 2) / 2), abs=1e-6)
    assert targets[0, 1].abs().max() == 0  # invisible: empty map, and no weight
    assert torch.allclose(targets[0, 2], 1 - targets[0, :2].amax(0))
    assert weights.tolist() == [[1.0, 0.0, 1.0]]


def test_intermediate_supervision_is_the_sum_of_the_stage_losses():
    g = torch.Generator().manual_seed(1)
    beliefs, targets = torch.rand(3, 2, 4, 5, 5, generator=g), torch.rand(2, 4, 5, 5, generator=g)
    weights = torch.tensor([[1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0]])
    total, per_stage = cpm_loss(beliefs, targets, weights)
    b, t = beliefs.double().numpy(), targets.double().numpy()
    by_hand = []
    for s in range(3):  # f_t = mean over images of the weighted sum of squares over maps and cells
        f = 0.0
        for i in range(2):
            for m in range(4):
                f += weights[i, m].item() * sum((b[s, i, m, y, x] - t[i, m, y, x]) ** 2 for y in range(5) for x in range(5))
        by_hand.append(f / 2)
    assert per_stage.tolist() == pytest.approx(by_hand, rel=1e-5)
    assert total.item() == pytest.approx(sum(by_hand), rel=1e-5)


def test_every_stage_has_the_belief_map_shape():
    model = CPM(CPMConfig(stages=4, channels=8))
    out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (4, 2, NUM_KEYPOINTS + 1, 16, 16)
    images = (255 * np.random.default_rng(0).random((3, 64, 64, 3))).astype(np.uint8)
    prediction = predict(model, images, chunk=2)
    assert prediction.keypoints.shape == (3, NUM_KEYPOINTS, 2)
    assert prediction.stage_keypoints.shape == (4, 3, NUM_KEYPOINTS, 2)
    assert prediction.heatmaps.shape == (4, 3, NUM_KEYPOINTS + 1, 16, 16)
    assert np.array_equal(prediction.keypoints, prediction.stage_keypoints[-1])


@pytest.mark.parametrize("trunk_blocks", [0, 2])
def test_receptive_field_matches_the_gradient_and_grows(trunk_blocks):
    torch.manual_seed(0)
    model = CPM(CPMConfig(stages=3, channels=4, trunk_blocks=trunk_blocks)).eval()
    with torch.no_grad():  # positive weights and inputs: every path in the receptive field carries gradient
        for p in model.parameters():
            p.abs_()
    analytic = [receptive_field(model, t) for t in (1, 2, 3)]
    assert analytic[0] < analytic[1] < analytic[2]
    for t, r in enumerate(analytic):
        x = torch.ones(1, 3, 256, 256, requires_grad=True)
        out = model(x)[t, 0, 0]  # stage t, the first map
        out[out.shape[0] // 2, out.shape[1] // 2].backward()
        nonzero = x.grad[0].abs().sum(0) > 0  # [256, 256]
        rows, cols = np.flatnonzero(nonzero.any(1)), np.flatnonzero(nonzero.any(0))
        assert rows[-1] - rows[0] + 1 == r and cols[-1] - cols[0] + 1 == r
        assert int(nonzero.sum()) == r * r  # a full square, no holes from the dilations
    if trunk_blocks:  # each residual block adds two 3x3 convolutions at stride s on the longest path
        plain = CPM(CPMConfig(stages=3, channels=4, trunk_blocks=0))
        assert receptive_field(model, 1) - receptive_field(plain, 1) == trunk_blocks * 2 * 2 * model.stride


def test_flip_and_zoom_move_keypoints_with_the_image():
    images = torch.zeros(1, 3, 32, 32)
    images[0, :, 5, 9] = 1.0  # pixel (x=9, y=5)
    points = torch.zeros(1, NUM_KEYPOINTS, 2)
    points[0, 2] = torch.tensor([9.5, 5.5])  # right shoulder at that pixel's centre
    visible = torch.ones(1, NUM_KEYPOINTS, dtype=torch.bool)
    flipped = horizontal_flip(Batch(images, points, visible), torch.tensor([True]))
    left = FLIP_PERMUTATION[2]
    assert flipped.keypoints[0, left].tolist() == [32 - 9.5, 5.5]
    assert flipped.images[0, 0, 5, 32 - 1 - 9] == 1.0
    moved = scale_translate(Batch(images, points, visible), torch.tensor([1.0]), torch.tensor([[3.0, -2.0]]))
    assert moved.keypoints[0, 2].tolist() == [12.5, 3.5]
    assert moved.images[0, 0, 3, 12] == pytest.approx(1.0)
    zoomed = scale_translate(Batch(images, points, visible), torch.tensor([2.0]), torch.tensor([[0.0, 0.0]]))
    assert zoomed.keypoints[0, 2].tolist() == [3.0, -5.0] and not zoomed.visible[0, 2]


def test_cpm_learns_stick_figures_beyond_the_mean_pose(figures, tmp_path, measured):
    (images, points, visible), held_out = figures
    config = CPMConfig(fit=quiet_fit(300), stages=3, channels=32, batch_size=16)
    result = train_cpm(images, points, visible, config, tmp_path / "cpm", held_out=held_out)
    mean_pose = np.broadcast_to(points.mean(0), held_out[1].shape)
    baseline = pck(mean_pose, held_out[1], held_out[2]).overall
    measured(f"cpm 64px 300 steps PCK@0.2 per stage {np.round(result.stage_pck, 3).tolist()}, mean pose {baseline:.3f}, "
             f"{result.seconds:.1f} s")
    assert len(result.stage_pck) == 3
    assert result.stage_pck[-1] >= 0.8 and result.stage_pck[-1] >= baseline + 0.4
    assert max(result.stage_pck[1:]) > result.stage_pck[0]  # context from the beliefs helps
    assert result.stage_pck[-1] >= result.stage_pck[0]
    again = predict(result.model, held_out[0])
    assert pck(again.keypoints, held_out[1], held_out[2]).overall == pytest.approx(result.stage_pck[-1])


def test_same_seed_same_numbers(figures, tmp_path):
    (images, points, visible), _ = figures
    runs = [train_cpm(images[:64], points[:64], visible[:64],
                      CPMConfig(fit=quiet_fit(6, seed), stages=2, channels=8, batch_size=4), tmp_path / f"run{i}")
            for i, seed in enumerate((3, 3, 4))]
    assert runs[0].fit.losses == runs[1].fit.losses
    assert runs[0].fit.losses != runs[2].fit.losses
    first, second = (predict(r.model, images[:4]).heatmaps for r in runs[:2])
    assert np.array_equal(first, second)


def test_config_and_input_checks():
    with pytest.raises(ValueError, match="stride"):
        CPMConfig(stride=3)
    with pytest.raises(ValueError, match="images"):
        CPM(CPMConfig(channels=4))(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="heatmaps"):
        decode_heatmaps(torch.rand(2, 3, 4), 4)
    with pytest.raises(ValueError, match="keypoints"):
        gaussian_heatmaps(torch.rand(2, 3), 8, 4, 1.0)
    assert with_background(torch.zeros(1, 2, 3, 3))[0, 2].min() == 1.0
