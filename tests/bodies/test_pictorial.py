"""Pictorial structures (notes §13.1): the distance transform equals dense maximisation exactly, the dynamic
programme equals exhaustive search (single-type and mixture), and the learned model finds stick figures."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from bodies.appearance2d import (
    PictorialConfig,
    PictorialStructures,
    _gather_windows,
    cell_features,
    filter_responses,
    fit_softmax,
    hard_negatives,
    window_features,
)
from bodies.metrics import pck
from bodies.pictorial import (
    brute_force_map,
    configuration_score,
    dense_transform,
    distance_transform,
    distance_transform_1d,
    pictorial_map,
    tree_levels,
)
from bodies.skeleton import KEYPOINT_NAMES, KEYPOINT_PARENTS, NUM_KEYPOINTS

torch.set_num_threads(1)  # the fits are small: extra threads only contend


def random_springs(rng, shape, scale):  # [..., 4] with w_x, w_y >= 0 and signed linear terms
    w = rng.uniform(0, scale, (*shape, 4))
    w[..., [1, 3]] = rng.normal(0, scale, (*shape, 2))
    return w


def test_distance_transform_1d_equals_brute_force():
    rng = np.random.default_rng(0)
    R, n = 300, 23
    f = 3 * rng.normal(size=(R, n))
    a = rng.uniform(0, 2, R) ** 3  # from nearly flat to very stiff
    a[:20] = 0.0  # no quadratic term: one maximiser for every p
    b, mu = rng.normal(size=R), 6 * rng.normal(size=R)
    values, argmax = distance_transform_1d(f, a, b, mu)
    d = np.arange(n)[None, None, :] - (np.arange(n)[None, :, None] + mu[:, None, None])  # [R, p, q]
    total = f[:, None, :] - d * (a[:, None, None] * d + b[:, None, None])
    np.testing.assert_array_equal(argmax, total.argmax(2))
    np.testing.assert_array_equal(values, total.max(2))


def test_spring_of_a_single_peak():
    # a child that can only sit at (6, 2): the message at parent cell (x, y) is -psi's cost of that offset
    score = np.full((1, 5, 8), -1e6)
    score[0, 2, 6] = 0.0
    weights = np.array([[0.5, 0.25, 2.0, -1.0]])
    offsets = np.array([[1.0, -1.0]])
    values, argmax = distance_transform(score, weights, offsets)
    assert (argmax[0, ..., 0] == 6).all() and (argmax[0, ..., 1] == 2).all()
    # parent (3, 4): dx = 6 - 3 - 1 = 2, dy = 2 - 4 + 1 = -1 -> -(0.5 * 4 + 0.25 * 2 + 2 * 1 - 1 * -1) = -5.5
    assert values[0, 4, 3] == -5.5
    # parent (5, 3): dx = 0, dy = 0 -> 0
    assert values[0, 3, 5] == 0.0


@pytest.mark.parametrize("scale", [0.0, 0.02, 0.3, 4.0])
def test_distance_transform_2d_equals_dense(scale):
    rng = np.random.default_rng(1)
    score = rng.normal(size=(6, 12, 10))
    weights = random_springs(rng, (6,), scale)
    offsets = rng.normal(0, 3, (6, 2))
    v_fast, a_fast = distance_transform(score, weights, offsets)
    v_dense, a_dense = dense_transform(score, weights, offsets)
    np.testing.assert_array_equal(a_fast, a_dense)
    np.testing.assert_array_equal(v_fast, v_dense)


def test_distance_transform_equals_dense_on_one_64x64_edge():
    rng = np.random.default_rng(2)
    score = rng.normal(size=(1, 64, 64))
    weights, offsets = np.array([[0.01, 0.05, 0.02, -0.03]]), np.array([[4.5, -7.25]])
    v_fast, a_fast = distance_transform(score, weights, offsets)
    v_dense, a_dense = dense_transform(score, weights, offsets)
    np.testing.assert_array_equal(a_fast, a_dense)
    np.testing.assert_array_equal(v_fast, v_dense)


def test_tree_levels_of_the_keypoint_tree():
    levels = [level.tolist() for level in tree_levels(KEYPOINT_PARENTS)]
    assert levels == [[1], [0, 2, 5, 8, 11], [3, 6, 9, 12], [4, 7, 10, 13]]
    assert KEYPOINT_NAMES[levels[0][0]] == "neck"
    with pytest.raises(ValueError, match="forest"):
        tree_levels([1, 2, 0])


@pytest.mark.parametrize("scale", [0.0, 0.05, 1.0])
def test_map_equals_brute_force_on_the_keypoint_tree(scale):
    rng = np.random.default_rng(3)
    unaries = rng.normal(size=(NUM_KEYPOINTS, 12, 10))
    weights = random_springs(rng, (NUM_KEYPOINTS,), scale)
    offsets = rng.normal(0, 2, (NUM_KEYPOINTS, 2))
    fast = pictorial_map(unaries, weights, offsets)
    slow = brute_force_map(unaries, weights, offsets)
    np.testing.assert_array_equal(fast.locations, slow.locations)
    assert fast.score == slow.score


def all_configurations(K, T, H, W):  # locations [C, K, 2], types [C, K]
    cells = [(x, y, m) for m in range(T) for y in range(H) for x in range(W)]
    combos = np.array(list(itertools.product(cells, repeat=K)))  # [C, K, 3]
    return combos[..., :2], combos[..., 2]


def test_dynamic_programming_is_the_global_maximum():
    rng = np.random.default_rng(4)
    parents, K, H, W = (-1, 0, 1), 3, 4, 5  # a chain of 3 parts on a 5 x 4 grid: 8,000 configurations
    for scale in (0.1, 1.0):
        unaries = rng.normal(size=(K, H, W))
        weights, offsets = random_springs(rng, (K,), scale), rng.normal(0, 1.5, (K, 2))
        locations, _ = all_configurations(K, 1, H, W)
        scores = configuration_score(np.broadcast_to(unaries, (len(locations), K, H, W)), weights, offsets,
                                     locations, parents)
        best = pictorial_map(unaries, weights, offsets, parents)
        assert best.score == pytest.approx(scores.max(), abs=1e-12)
        np.testing.assert_array_equal(best.locations, locations[np.argmax(scores)])
        assert (scores < best.score - 1e-9).sum() == len(scores) - 1  # the maximum is unique


def test_mixture_of_parts_is_the_global_maximum():
    rng = np.random.default_rng(5)
    parents, K, T, H, W = (1, -1, 1), 3, 2, 3, 4  # a star; 24 (cell, type) states per part
    unaries = rng.normal(size=(K, T, H, W))
    weights = random_springs(rng, (K, T, T), 0.5)
    offsets = rng.normal(0, 1.0, (K, T, T, 2))
    bias = rng.normal(0, 1.0, (K, T, T))
    locations, types = all_configurations(K, T, H, W)
    scores = configuration_score(np.broadcast_to(unaries, (len(locations), K, T, H, W)), weights, offsets,
                                 locations, parents, types, bias)
    best = pictorial_map(unaries, weights, offsets, parents, bias)
    i = np.argmax(scores)
    assert best.score == pytest.approx(scores[i], abs=1e-12)
    np.testing.assert_array_equal(best.locations, locations[i])
    np.testing.assert_array_equal(best.types, types[i])
    slow = brute_force_map(unaries, weights, offsets, parents, bias)
    assert slow.score == best.score and (slow.types == best.types).all()
    # the co-occurrence bias matters: without it the optimum moves
    assert pictorial_map(unaries, weights, offsets, parents).score != best.score


# --------------------------------------------------------------------------------------------------------------
# the learned model on synthetic stick people


def test_features_of_a_vertical_edge():
    image = np.zeros((1, 16, 16, 3), dtype=np.uint8)
    image[:, :, 8:] = [255, 128, 0]  # an edge between columns 7 and 8: gradients along +x, orientation 0
    features = cell_features(image, cell_size=4, stride=4, orientations=6)  # [1, 4, 4, 6 + 4]
    assert features.shape == (1, 4, 4, 10)
    at_edge = features[0, :, 1:3]  # the cells whose boxes meet the edge: all energy in bin 0
    np.testing.assert_allclose(at_edge[..., 0], 1.0, rtol=1e-5)  # up to the normalisation's epsilon
    np.testing.assert_allclose(at_edge[..., 1:6], 0.0)
    assert (features[0, :, [0, 3], 6] == 0).all()  # flat cells: no energy
    np.testing.assert_allclose(features[0, :, 3, 7:], [[1.0, 128 / 255, 0.0]] * 4)  # mean colour of the cell


@pytest.mark.parametrize("cell_size, stride", [(4, 2), (5, 3), (8, 4)])
def test_cell_colour_is_the_mean_over_the_clipped_box(cell_size, stride):
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (2, 18, 18, 3), dtype=np.uint8)
    features = cell_features(images, cell_size, stride, orientations=4)  # [2, Hg, Wg, 4 + 4]
    start = int(np.floor((stride - cell_size) / 2 + 0.5))
    for y in range(18 // stride):
        for x in range(18 // stride):
            y0, x0 = max(y * stride + start, 0), max(x * stride + start, 0)
            y1, x1 = y * stride + start + cell_size, x * stride + start + cell_size
            box = images[:, y0:y1, x0:x1] / 255.0
            np.testing.assert_allclose(features[:, y, x, 5:], box.mean((1, 2)), atol=1e-5)


def test_gathered_windows_equal_window_features():
    rng = np.random.default_rng(8)
    features = rng.normal(size=(3, 5, 6, 2)).astype(np.float32)
    cells = np.array([[0, 0, 0], [2, 5, 4], [1, 3, 1], [2, 1, 4]])
    np.testing.assert_array_equal(_gather_windows(features, cells, 5), window_features(features, cells, 5))


def test_hard_negatives_are_the_best_cells_away_from_the_keypoints():
    scores = np.zeros((2, 2, 6, 7))  # [N, P, Hg, Wg]
    scores[0, 0, 2, 3] = 9.0  # on keypoint 0 of image 0: a right answer, not a negative
    scores[0, 0, 3, 4] = 8.0  # one cell from it: still the keypoint
    scores[0, 0, 5, 6] = 7.0  # far away: the hard negative
    scores[0, 1, 0, 0] = 1.0
    scores[1, :, 1, 1] = 5.0  # image 1's keypoint is not visible: its cell may be a negative
    cells = np.array([[[3, 2]], [[1, 1]]])  # [N, K = 1, 2] (x, y)
    inside = np.array([[True], [False]])
    rows = hard_negatives(scores, cells, inside)
    np.testing.assert_array_equal(rows, [[0, 6, 5], [0, 0, 0], [1, 1, 1], [1, 1, 1]])


def test_negatives_avoid_the_keypoints_and_near_ones_surround_them():
    rng = np.random.default_rng(10)
    cells = rng.integers(0, 16, (50, NUM_KEYPOINTS, 2))  # [N, K, 2] (x, y)
    inside = rng.random((50, NUM_KEYPOINTS)) < 0.9
    config = PictorialConfig(negatives_per_image=0, near_negatives_per_image=30, near_distance=(2, 3))
    negatives = PictorialStructures(config)._sample_negatives(rng, cells, inside, 16, 16)  # [M, 3]
    assert len(negatives) > 50 * 30 // 2
    d = np.abs(cells[negatives[:, 0]] - negatives[:, None, 1:]).max(-1)  # [M, K] Chebyshev distances
    d = np.where(inside[negatives[:, 0]], d, 99)
    assert (d.min(1) >= 2).all() and (d.min(1) <= 3).all()
    assert ((negatives[:, 1:] >= 0) & (negatives[:, 1:] < 16)).all()


def test_softmax_fit_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(9)
    X = rng.normal(size=(300, 4)) * [1.0, 3.0, 0.5, 2.0] + [0.0, 1.0, -2.0, 5.0]
    y = np.argmax(X @ rng.normal(size=(4, 3)) + rng.normal(size=(300, 3)), 1)
    coef, intercept = fit_softmax(X.astype(np.float32), y, 3, C=0.5, max_iter=100)
    reference = LogisticRegression(C=0.5, tol=1e-10, max_iter=5000).fit((X - X.mean(0)) / X.std(0), y)
    # the same objective on standardised features: equal probabilities
    expected = reference.predict_proba((X - X.mean(0)) / X.std(0))
    logits = X @ coef.T + intercept
    ours = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(ours / ours.sum(1, keepdims=True), expected, atol=2e-4)


def test_filter_responses_equal_window_features_times_the_filter():
    rng = np.random.default_rng(6)
    features = rng.normal(size=(2, 6, 7, 3))
    filters, bias = rng.normal(size=(4, 5, 5, 3)), rng.normal(size=4)
    responses = filter_responses(features, filters, bias)  # [2, 4, 6, 7]
    cells = np.array([[0, 0, 0], [1, 6, 5], [1, 3, 2], [0, 2, 4]])  # (image, x, y), corners included
    expected = window_features(features, cells, 5) @ filters.reshape(4, -1).T + bias  # [4 cells, 4 filters]
    np.testing.assert_allclose(responses[cells[:, 0], :, cells[:, 2], cells[:, 1]], expected, rtol=1e-5, atol=1e-4)  # float32

# bone i -> parents[i]: (length as a fraction of the figure's height, mean angle in degrees with y down, spread)
BONES = {0: (0.16, -90, 12), 2: (0.12, 180, 10), 3: (0.15, 110, 60), 4: (0.14, 100, 70), 5: (0.12, 0, 10),
         6: (0.15, 70, 60), 7: (0.14, 80, 70), 8: (0.33, 105, 5), 9: (0.2, 95, 20), 10: (0.2, 90, 20),
         11: (0.33, 75, 5), 12: (0.2, 85, 20), 13: (0.2, 90, 20)}


def stick_people(n: int, seed: int, size: int = 64):
    """Stick figures on the 14-keypoint tree, one colour per limb (so left and right differ), a disc for the head,
    on a noisy background of random colour; no marks at the keypoints themselves."""
    rng = np.random.default_rng(seed)
    height = size * rng.uniform(0.7, 0.9, n)
    points = np.zeros((n, NUM_KEYPOINTS, 2))
    points[:, 1] = np.stack([size * rng.uniform(0.4, 0.6, n), size * rng.uniform(0.22, 0.3, n)], -1)
    for k, (length, mean, spread) in BONES.items():  # parents come first in this order
        angle = np.deg2rad(mean + spread * rng.uniform(-1, 1, n))
        step = (length * height)[:, None] * np.stack([np.cos(angle), np.sin(angle)], -1)
        points[:, k] = points[:, KEYPOINT_PARENTS[k]] + step
    ys, xs = np.mgrid[0:size, 0:size] + 0.5
    pixels = np.stack([xs, ys], -1)[None]  # [1, size, size, 2]
    images = rng.uniform(0, 80, (n, 1, 1, 3)) + rng.normal(0, 10, (n, size, size, 3))
    hues = np.arange(NUM_KEYPOINTS) / NUM_KEYPOINTS
    palette = 255 * np.clip(np.abs((hues[:, None] * 6 + [0, 4, 2]) % 6 - 3) - 1, 0, 1)  # [14, 3] a hue wheel
    for k in (8, 11, 9, 12, 10, 13, 2, 5, 3, 6, 4, 7):  # torso and legs first, arms over them
        a, b = points[:, None, None, KEYPOINT_PARENTS[k]], points[:, None, None, k]  # [n, 1, 1, 2]
        t = np.clip(((pixels - a) * (b - a)).sum(-1) / np.maximum(((b - a) ** 2).sum(-1), 1e-9), 0, 1)
        images[np.linalg.norm(pixels - (a + t[..., None] * (b - a)), axis=-1) < 1.6] = 0.5 * palette[k] + 100
    centre = 0.5 * (points[:, None, None, 0] + points[:, None, None, 1])
    radius = 0.45 * np.linalg.norm(points[:, 0] - points[:, 1], axis=-1)[:, None, None]
    images[np.linalg.norm(pixels - centre, axis=-1) < radius] = palette[0]
    visible = ((points >= 0) & (points < size)).all(-1)
    return np.clip(images, 0, 255).astype(np.uint8), points.astype(np.float32), visible


@pytest.fixture(scope="module")
def people():
    return stick_people(200, seed=0), stick_people(50, seed=1)


@pytest.fixture(scope="module")
def model(people):
    return PictorialStructures(PictorialConfig(cell_size=4, stride=2, window=5, n_types=1)).fit(*people[0])


def mean_pose_pck(train, test) -> float:
    mean = np.nanmean(np.where(train[2][..., None], train[1], np.nan), axis=0)  # [14, 2]
    return pck(np.broadcast_to(mean, test[1].shape), test[1], test[2]).overall


def test_learned_model_beats_the_mean_pose_and_the_part_detectors_alone(model, people, measured):
    train, test = people
    baseline = mean_pose_pck(train, test)
    predicted = model.predict(test[0])
    assert predicted.shape == test[1].shape
    ours = pck(predicted, test[1], test[2]).overall
    # the filters alone: each part at its own best cell, no springs
    unaries = model.unaries(test[0])[:, :, 0]  # [N, K, Hg, Wg]
    N, K, _, Wg = unaries.shape
    best = unaries.reshape(N, K, -1).argmax(-1)
    alone = pck((np.stack([best % Wg, best // Wg], -1) + 0.5) * 2, test[1], test[2]).overall
    measured(f"PCK@0.2 pictorial structures {ours:.3f}, part filters alone {alone:.3f}, mean pose {baseline:.3f}")
    assert baseline < 0.6
    assert ours > 0.95
    assert ours > alone + 0.03


def test_mixture_of_parts_model(people, measured):
    train, test = people
    config = PictorialConfig(cell_size=4, stride=2, window=5, n_types=2, hard_negative_rounds=0)
    mixture = PictorialStructures(config).fit(*train)
    assert mixture.filters_.shape[:2] == (NUM_KEYPOINTS, 2)
    poses = mixture.map_poses(test[0])
    ours = pck((poses.locations + 0.5) * 2, test[1], test[2]).overall
    measured(f"PCK@0.2 mixture of parts (2 types) {ours:.3f}")
    assert ours > 0.95
    assert len(np.unique(poses.types[:, KEYPOINT_NAMES.index("left_wrist")])) == 2  # both types get used
    np.testing.assert_array_equal(mixture.predict(test[0][:5]), (poses.locations[:5] + 0.5) * 2)


def test_heatmaps_as_unaries_reject_a_distractor(model, people):
    _, test = people
    truth = test[1][:8].astype(np.float64)  # [8, 14, 2]
    size, h = 64, 32
    cells = (np.mgrid[0:h, 0:h][::-1].transpose(1, 2, 0) + 0.5) * (size / h)  # [h, h, 2] cell centres (x, y)
    d2 = ((cells[None, None] - truth[:, :, None, None]) ** 2).sum(-1)  # [8, 14, h, h]
    heatmaps = -d2 / (2 * 1.5**2)  # log of a Gaussian bump at each keypoint
    wrist = KEYPOINT_NAMES.index("left_wrist")
    decoy = truth[:, wrist] + [0.0, -30.0]  # far above the hand: where no arm can reach
    decoy[:, 1] = np.clip(decoy[:, 1], 2, 62)
    heatmaps[:, wrist] = np.maximum(heatmaps[:, wrist], 2.0 - ((cells[None] - decoy[:, None, None]) ** 2).sum(-1) / 4.5)
    flat = heatmaps[:, wrist].reshape(len(truth), -1).argmax(-1)
    argmax_only = (np.stack([flat % h, flat // h], -1) + 0.5) * (size / h)
    assert (np.linalg.norm(argmax_only - truth[:, wrist], axis=-1) > 10).all()  # the decoy wins alone
    predicted = model.predict_from_heatmaps(heatmaps)
    assert (np.linalg.norm(predicted[:, wrist] - truth[:, wrist], axis=-1) < 2.5).all()  # the springs reject it
    assert np.linalg.norm(predicted - truth, axis=-1).max() < 4.0  # the rest within two cells (springs pull a little)


def test_shape_errors_name_the_argument():
    with pytest.raises(ValueError, match="weights"):
        pictorial_map(np.zeros((14, 4, 4)), np.zeros((13, 4)), np.zeros((14, 2)))
    with pytest.raises(ValueError, match="bias"):
        pictorial_map(np.zeros((3, 2, 4, 4)), np.zeros((3, 2, 2, 4)), np.zeros((3, 2, 2, 2)), (-1, 0, 0),
                      np.zeros((3, 2)))
    with pytest.raises(ValueError, match=">= 0"):
        distance_transform(np.zeros((1, 4, 4)), np.array([[-1.0, 0, 0, 0]]), np.zeros((1, 2)))
    images, keypoints, visible = stick_people(4, seed=2)
    visible[:, KEYPOINT_NAMES.index("left_wrist")] = False
    with pytest.raises(ValueError, match=r"keypoints \[7\]"):
        PictorialStructures().fit(images, keypoints, visible)
    with pytest.raises(ValueError, match="images"):
        PictorialStructures().fit(np.zeros((2, 8, 8)), np.zeros((2, 14, 2)), np.ones((2, 14), bool))
