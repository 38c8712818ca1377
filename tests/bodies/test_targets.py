"""Issue 10's targets on rendered bodies (slow: `make test-slow`). Each training stays within its budget of
<= 10 minutes on two CPU cores; the numbers are listed at the end of the run."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bodies.data import RenderConfig, load_renders, render_dataset
from bodies.fitting import AdamConfig, fit_adam, fit_errors, keypoint_problems
from bodies.metrics import pck

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def renders(tmp_path_factory):
    """4400 rendered bodies: 4000 to train on, 400 held out (as `python -m bodies render --poses 4400`)."""
    out = tmp_path_factory.mktemp("bodies") / "train"
    render_dataset(out, RenderConfig(count=4400, seed=0))
    r = load_renders(out)
    return r.subset(np.arange(4000)), r.subset(np.arange(4000, 4400))


@pytest.fixture(scope="module")
def cpm(renders, tmp_path_factory):
    from bodies.cpm import CPMConfig, train_cpm

    train, held = renders
    start = time.perf_counter()
    result = train_cpm(train.images, train.keypoints2d, train.visible, CPMConfig(), tmp_path_factory.mktemp("cpm"),
                       held_out=(held.images, held.keypoints2d, held.visible))
    return result, (time.perf_counter() - start) / 60


def test_cpm_reaches_pck_090_and_improves_stage_by_stage(cpm, measured):
    result, minutes = cpm
    measured(f"CPM PCK@0.2 per stage {[round(v, 3) for v in result.stage_pck]}, trained in {minutes:.1f} min")
    assert result.stage_pck[-1] >= 0.90
    assert all(b > a for a, b in zip(result.stage_pck, result.stage_pck[1:], strict=False))


def test_pictorial_structures_reach_pck_080(renders, cpm, measured):
    """With the CPM's belief maps as unaries (the notes' "body modelling and feature learning" combined) the target
    is met; with HOG part filters alone the MAP is measured and must stay well above the mean pose."""
    from bodies.appearance2d import PictorialStructures
    from bodies.cpm import predict

    train, held = renders
    start = time.perf_counter()
    model = PictorialStructures().fit(train.images, train.keypoints2d, train.visible)
    hog = pck(model.predict(held.images), held.keypoints2d, held.visible, 0.2, "torso").overall
    minutes = (time.perf_counter() - start) / 60
    beliefs = predict(cpm[0].model, held.images).heatmaps[-1, :, :-1]
    combined = model.predict_from_heatmaps(np.log(np.clip(beliefs, 1e-3, None)), image_size=held.images.shape[1])
    on_cpm = pck(combined, held.keypoints2d, held.visible, 0.2, "torso").overall
    measured(f"pictorial structures PCK@0.2: HOG part filters {hog:.3f} (fit {minutes:.1f} min), on CPM beliefs "
             f"{on_cpm:.3f}")
    assert on_cpm >= 0.80
    assert hog >= 0.70


def test_deeppose_cascade_refines(renders, tmp_path, measured):
    from bodies.deeppose import DeepPoseConfig, train_deeppose

    train, held = renders
    result = train_deeppose(train.images, train.keypoints2d, train.visible, DeepPoseConfig(), tmp_path / "dp",
                            held_out=(held.images, held.keypoints2d, held.visible))
    measured(f"DeepPose PCK@0.2 per stage {[round(v, 3) for v in result.stage_pck]}")
    assert result.stage_pck[1] > result.stage_pck[0]


def test_learned_gradient_descent_beats_adam(tmp_path, measured):
    from bodies.lgd import LGDConfig, fit_lgd, train_lgd
    from bodies.model import BodyModel

    render_dataset(tmp_path / "test", RenderConfig(count=300, seed=1))
    problems = keypoint_problems(load_renders(tmp_path / "test", images=False))
    x, visible = problems.x, problems.visible
    model = BodyModel.from_file()
    start = time.perf_counter()
    net, _ = train_lgd(model, LGDConfig(), tmp_path / "lgd", progress=False)
    minutes = (time.perf_counter() - start) / 60
    lgd = fit_lgd(net, model, x, visible)
    adam = fit_adam(model, x, visible, AdamConfig(steps=1000))

    def error(out):  # metres
        return fit_errors(model, out.theta, problems)["pa_mpjpe_mm"] / 1000

    ratio, speed = error(lgd) / error(adam), adam.seconds / lgd.seconds
    decreasing = float((lgd.losses[1:] <= lgd.losses[:-1]).all(0).float().mean())
    measured(f"LGD PA-MPJPE {1000 * error(lgd):.1f} mm vs Adam {1000 * error(adam):.1f} mm (ratio {ratio:.2f}), "
             f"{speed:.0f}x less time per body, 2D loss decreasing at every step for {decreasing:.1%}, "
             f"trained in {minutes:.1f} min")
    assert ratio <= 0.9 and speed >= 100 and decreasing >= 0.9
