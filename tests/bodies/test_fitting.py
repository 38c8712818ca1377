"""Notes §13.3: the weak-perspective projection, the reprojection loss, the Adam baseline and learned gradient
descent (Algorithm 7's iteration, training through the unrolled steps, resume)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bodies.fitting import LAYOUT, AdamConfig, camera_keypoints, fit_adam, project, reprojection_loss, root_relative
from bodies.lbs import batch_rodrigues
from bodies.lgd import LGDConfig, LGDNet, fit_lgd, sample_problems, train_lgd, unroll
from bodies.metrics import pa_mpjpe
from bodies.model import BodyModel
from generative.training import FitConfig


@pytest.fixture(scope="module")
def model():
    return BodyModel.from_file()


def test_projection_is_s_pi_rx_plus_t(model):
    g = torch.Generator().manual_seed(0)
    theta = 0.3 * torch.randn(3, LAYOUT.size, generator=g)
    X = model.keypoints(model.joints(theta[:, LAYOUT.betas], theta[:, LAYOUT.pose]))
    R = torch.diag(torch.tensor([1.0, -1.0, -1.0])) @ batch_rodrigues(theta[:, LAYOUT.rot])
    expected = theta[:, 82, None, None] * torch.einsum("bij,bkj->bki", R, X)[..., :2] + theta[:, None, 83:85]
    torch.testing.assert_close(project(model, theta), expected)
    # Theta = 0: a rest body, upright (head above the feet: smaller image y) and facing the camera
    rest = camera_keypoints(model, torch.zeros(1, LAYOUT.size))[0]
    assert rest[0, 1] < rest[10, 1] and rest[2, 0] < rest[5, 0]  # head top above the ankle; right shoulder left


def test_reprojection_loss_counts_visible_keypoints_only():
    x = torch.zeros(1, 14, 2)
    x_n = torch.zeros(1, 14, 2)
    x_n[0, 0] = torch.tensor([3.0, 4.0])  # 25 on a visible keypoint
    x_n[0, 1] = torch.tensor([100.0, 0.0])  # ignored: not visible
    visible = torch.ones(1, 14)
    visible[0, 1] = 0
    assert reprojection_loss(x_n, x, visible).item() == pytest.approx(25.0 / 13)


def test_adam_baseline_fits_the_keypoints(model):
    problems = sample_problems(4, np.random.default_rng(0), LGDConfig(noise=0.0), model)
    out = fit_adam(model, problems["x"], problems["visible"], AdamConfig(steps=300, turns=2))
    assert out.losses.shape == (301, 4) and out.theta.shape == (4, LAYOUT.size)
    assert (out.loss < 0.05 * out.losses[0]).all()  # the reprojection error drops by far
    assert out.loss.mean() < 2e-4  # about 1.8 px at 128 px


def test_learned_gradient_descent_iterates_algorithm_7(model):
    """With N_w(g, Theta, x) = -eta g the unrolled steps are plain gradient descent from Theta_0 = 0."""
    problems = sample_problems(3, np.random.default_rng(1), LGDConfig(), model)
    net = LGDNet(steps=3, hidden=8)
    eta = 0.5
    net.forward = lambda n, grad, theta, x, visible: -eta * grad
    thetas, losses = unroll(net, model, problems["x"], problems["visible"])
    theta = torch.zeros(3, LAYOUT.size, requires_grad=True)
    assert thetas[0].abs().max() == 0
    for n in range(3):
        loss = reprojection_loss(project(model, theta), problems["x"], problems["visible"])
        torch.testing.assert_close(losses[n], loss.detach())
        (grad,) = torch.autograd.grad(loss.sum(), theta)
        theta = (theta - eta * grad).detach().requires_grad_(True)
        torch.testing.assert_close(thetas[n + 1], theta.detach())


def test_training_through_the_unrolled_steps_learns_and_resumes(model, tmp_path):
    config = LGDConfig(steps=3, hidden=64, batch=32,
                       fit=FitConfig(steps=60, lr=2e-3, schedule="constant", log_every=10, checkpoint_every=30,
                                     progress=False))
    test = sample_problems(64, np.random.default_rng(9), config, model)
    untrained = LGDNet(3, 64)
    net, result = train_lgd(model, config, tmp_path / "run", progress=False)
    assert np.mean(result.losses[-10:]) < 0.8 * np.mean(result.losses[:10])

    def error(n):
        out = fit_lgd(n, model, test["x"], test["visible"])
        return pa_mpjpe(root_relative(camera_keypoints(model, out.theta)).numpy(), test["X"].numpy()), out

    trained_error, out = error(net)
    untrained_error, before = error(untrained)
    assert out.losses.shape == (4, 64)
    assert out.losses[-1].mean() < 0.4 * before.losses[-1].mean()  # it has learned to fit the keypoints
    assert np.isfinite(trained_error) and np.isfinite(untrained_error)
    # stopped at step 30 and resumed: the same numbers as the uninterrupted run (a constant schedule does not
    # depend on the total)
    short = FitConfig(**{**config.fit.__dict__, "steps": 30})
    train_lgd(model, LGDConfig(**{**config.__dict__, "fit": short}), tmp_path / "split", progress=False)
    _, resumed = train_lgd(model, config, tmp_path / "split", resume=True, progress=False)
    assert resumed.losses == result.losses
