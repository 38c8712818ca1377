"""generative.metrics and generative.digit_features: the Frechet distance against closed forms and a direct
sqrtm computation, the Frechet digit distance on real and broken digits, the shipped classifier and its
safe loading, nearest-neighbour memorisation checks, and the likelihood reports and bounds."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import Tensor, nn

from generative.digit_features import (
    DIGITS_LEVELS,
    FORMAT,
    digit_features,
    load_digit_classifier,
    reference_images,
    reference_labels,
    save_digit_classifier,
    train_digit_classifier,
)
from generative.metrics import (
    NLL,
    LatentBounds,
    evaluate_density,
    feature_statistics,
    frechet_digit_distance,
    frechet_distance,
    iwae_bound,
    nearest_neighbour_distance,
    nll_report,
    overfitting_report,
    trace_sqrt_product,
)
from generative.models.base import ImageDensity, LatentDensity, discrete_log_prob
from generative.models.exhaustive import all_images

torch.set_num_threads(1)


def random_spd(F: int, rng: np.random.Generator, rank: int | None = None) -> np.ndarray:
    A = rng.normal(size=(F, rank or F))
    return A @ A.T + (0.0 if rank else 0.1) * np.eye(F)


# ------------------------------------------------------------------------------------- Frechet distance
def test_frechet_distance_of_identical_gaussians_is_zero() -> None:
    rng = np.random.default_rng(0)
    for F, rank in ((1, None), (5, None), (32, None), (32, 8)):  # also a singular (rank-8) covariance
        mu, C = rng.normal(size=F), random_spd(F, rng, rank)
        assert frechet_distance(mu, C, mu, C) == pytest.approx(0.0, abs=1e-8 * max(1.0, np.trace(C)))


def test_frechet_distance_1d_closed_form() -> None:
    for mu1, s1, mu2, s2 in ((0.0, 1.0, 0.0, 2.0), (1.5, 0.3, -2.0, 0.7), (3.0, 2.0, 3.0, 2.0), (0.0, 0.0, 1.0, 1.0)):
        got = frechet_distance([mu1], [[s1**2]], [mu2], [[s2**2]])
        assert got == pytest.approx((mu1 - mu2) ** 2 + (s1 - s2) ** 2, rel=1e-10, abs=1e-12)


def test_frechet_distance_commuting_covariances_closed_form() -> None:
    rng = np.random.default_rng(1)
    F = 6
    d1, d2 = rng.uniform(0.1, 3.0, F), rng.uniform(0.1, 3.0, F)
    mu1, mu2 = rng.normal(size=F), rng.normal(size=F)
    expected = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(d1) - np.sqrt(d2)) ** 2).sum()
    assert frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2)) == pytest.approx(expected, rel=1e-10)
    Q, _ = np.linalg.qr(rng.normal(size=(F, F)))  # same eigenvectors: C1 C2 = C2 C1, sqrt(C1 C2) = Q sqrt(D1 D2) Q^T
    rotated = frechet_distance(Q @ mu1, Q @ np.diag(d1) @ Q.T, Q @ mu2, Q @ np.diag(d2) @ Q.T)
    assert rotated == pytest.approx(expected, rel=1e-9)


def direct_frechet(mu1: np.ndarray, C1: np.ndarray, mu2: np.ndarray, C2: np.ndarray) -> float:
    """The textbook computation: scipy's general matrix square root of the (non-symmetric) product."""
    root = scipy.linalg.sqrtm(C1 @ C2)
    assert np.allclose(root @ root, C1 @ C2, atol=1e-8 * np.abs(C1 @ C2).max())
    return float(((mu1 - mu2) ** 2).sum() + np.trace(C1 + C2 - 2 * np.real(root)))


def test_frechet_distance_matches_direct_sqrtm_and_is_symmetric() -> None:
    rng = np.random.default_rng(2)
    for F in (2, 7, 20):
        mu1, mu2 = rng.normal(size=F), rng.normal(size=F)
        C1, C2 = random_spd(F, rng), random_spd(F, rng)
        got = frechet_distance(mu1, C1, mu2, C2)
        assert got == pytest.approx(direct_frechet(mu1, C1, mu2, C2), rel=1e-8)
        assert frechet_distance(mu2, C2, mu1, C1) == pytest.approx(got, rel=1e-10)
        assert trace_sqrt_product(C1, C2) == pytest.approx(np.real(np.trace(scipy.linalg.sqrtm(C1 @ C2))), rel=1e-8)
        assert frechet_distance(torch.tensor(mu1), torch.tensor(C1), mu2, C2) == pytest.approx(got, rel=1e-12)


def test_frechet_distance_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="mu1, mu2"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="cov1"):
        frechet_distance(np.zeros(3), np.zeros(3), np.zeros(3), np.eye(3))


def test_feature_statistics_match_numpy() -> None:
    f = np.random.default_rng(3).normal(size=(50, 4))
    mu, cov = feature_statistics(f)
    np.testing.assert_allclose(mu.numpy(), f.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov.numpy(), np.cov(f, rowvar=False), rtol=1e-12)
    with pytest.raises(ValueError, match="features"):
        feature_statistics(f[:1])


# ------------------------------------------------------------------------- digit classifier and FDD
def test_shipped_classifier_accuracy_and_features() -> None:
    model = load_digit_classifier()
    x, y = reference_images("float", "test"), reference_labels("test")
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    assert acc >= 0.97, acc
    f = digit_features(x)
    assert f.shape == (360, 128) and (f >= 0).all()  # the hidden ReLU layer
    grey = reference_images("grey", "test")
    assert grey.dtype == torch.int64
    torch.testing.assert_close(digit_features(grey, levels=DIGITS_LEVELS), f)  # grey / 16 is the float form
    with pytest.raises(ValueError, match="levels"):
        digit_features(grey)
    with pytest.raises(ValueError, match="images"):
        digit_features(x * 2)


def test_frechet_digit_distance_real_small_noise_large() -> None:
    g = torch.Generator().manual_seed(0)
    noise = frechet_digit_distance(torch.rand(500, 1, 8, 8, generator=g), reference_images("float"))
    zeros = frechet_digit_distance(torch.zeros(100, 1, 8, 8), reference_images("binary"))
    for form in ("float", "binary"):
        train, test = reference_images(form, "train"), reference_images(form, "test")
        real = frechet_digit_distance(test, train)
        print(f"FDD test vs train ({form}): {real:.3f}; noise vs train {noise:.1f}; zeros vs train {zeros:.1f}")
        assert 0 < real < 0.1 * noise and real < 0.01 * zeros
        assert frechet_digit_distance(train, train) == pytest.approx(0.0, abs=1e-6)
    # A model that draws only one class is far from the data although each of its images is real.
    ones = reference_images("float")[reference_labels() == 1]
    assert frechet_digit_distance(ones, reference_images("float")) > 5 * frechet_digit_distance(
        reference_images("float", "test"), reference_images("float"))


def test_classifier_training_is_deterministic_and_round_trips(tmp_path) -> None:
    a, b = train_digit_classifier(seed=3, steps=15), train_digit_classifier(seed=3, steps=15)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name
    c = train_digit_classifier(seed=4, steps=15)
    assert not torch.equal(a.state_dict()["head.2.weight"], c.state_dict()["head.2.weight"])
    path = save_digit_classifier(a, tmp_path / "classifier.pt", test_accuracy=0.5)
    x = reference_images("binary", "val")
    torch.testing.assert_close(digit_features(x, classifier=load_digit_classifier(path)),
                               digit_features(x, classifier=a), rtol=0, atol=0)


class Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:  # unpickling this would run a shell command
        return (os.system, (f"touch {self.marker}",))


def test_loading_a_pickle_payload_fails_and_runs_nothing(tmp_path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "state_dict": {"w": torch.zeros(1)}, "hook": Payload(str(marker))}, path)
    with pytest.raises(ValueError) as err:
        load_digit_classifier(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()
    for bad in (tmp_path / "missing.pt", tmp_path / "garbage.pt"):
        if bad.name == "garbage.pt":
            bad.write_bytes(b"not a checkpoint at all")
        with pytest.raises(ValueError) as err:
            load_digit_classifier(bad)
        assert str(bad) in str(err.value) and "\n" not in str(err.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"format": "something else", "state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="foreign.pt"):
        load_digit_classifier(foreign)


# ------------------------------------------------------------------------------------ memorisation
def test_nearest_neighbour_distance_constructed_cases() -> None:
    train = reference_images("binary")
    copies = train[torch.tensor([5, 0, 99])]
    assert nearest_neighbour_distance(copies, train).tolist() == [0.0, 0.0, 0.0]
    flipped = copies.clone()
    flipped[0, 0, 0, 0] = 1 - flipped[0, 0, 0, 0]  # one pixel off: Hamming 1 unless another image is nearer (0)
    assert nearest_neighbour_distance(flipped, train)[0] in (0.0, 1.0)
    small = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1.0]])
    queries = torch.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0.0]])
    assert nearest_neighbour_distance(queries, small).tolist() == [1.0, 2.0, 2.0]  # pixels that differ
    assert nearest_neighbour_distance(queries, small, "euclidean").tolist() == pytest.approx([1.0, 2**0.5, 2**0.5])
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(40, 1, 8, 8, generator=g), torch.rand(70, 1, 8, 8, generator=g)
    brute = torch.tensor([min(float((s - t).double().norm()) for t in b) for s in a], dtype=torch.float64)
    torch.testing.assert_close(nearest_neighbour_distance(a, b, chunk=7), brute)
    with pytest.raises(ValueError, match="hamming"):
        nearest_neighbour_distance(a, b, "hamming")


def test_overfitting_report_flags_copies() -> None:
    train, test = reference_images("binary", "train"), reference_images("binary", "test")
    memorised = overfitting_report(train[:200], train, test)
    assert memorised.sample_distance == 0.0 and memorised.ratio == 0.0 and memorised.sample_copies == 1.0
    assert memorised.test_distance > 3  # real unseen binary digits differ from their nearest training digit
    novel = overfitting_report(reference_images("binary", "val"), train, test)  # real unseen digits: ratio ~ 1
    assert 0.8 < novel.ratio < 1.25
    grey = overfitting_report(reference_images("grey", "train")[:50], reference_images("grey"),
                              reference_images("grey", "test"))
    assert grey.sample_distance == 0.0 and grey.test_distance > 0 and grey.test_copies < 0.05


# ------------------------------------------------------------------------------ likelihood reports
def test_nll_report() -> None:
    values = torch.tensor([40.0, 44.0, 42.0, 46.0])
    report = nll_report(values, (1, 8, 8))
    assert isinstance(report, NLL) and report.nats == pytest.approx(43.0)
    assert report.bits_per_dim == pytest.approx(43.0 / (64 * math.log(2)))
    assert report.stderr_nats == pytest.approx(float(np.std([40, 44, 42, 46], ddof=1)) / 2)
    single = nll_report(30.0, 64)
    assert single.nats == 30.0 and math.isnan(single.stderr_nats)
    with pytest.raises(ValueError, match="dims"):
        nll_report(values, 0)


def test_iwae_bound() -> None:
    g = torch.Generator().manual_seed(0)
    log_w = torch.randn(5, 30, generator=g, dtype=torch.float64) * 3 - 500  # far below exp's range: needs logsumexp
    bound = iwae_bound(log_w)
    direct = torch.tensor([math.log(np.mean(np.exp(row.numpy() + 500))) - 500 for row in log_w], dtype=torch.float64)
    torch.testing.assert_close(bound, direct)
    assert (bound >= log_w.mean(1)).all() and (bound <= log_w.max(1).values).all()  # Jensen; a mean of weights
    torch.testing.assert_close(iwae_bound(log_w[:, :1]), log_w[:, 0])  # k = 1: the one-sample ELBO
    torch.testing.assert_close(iwae_bound(torch.full((2, 9), -7.0)), torch.full((2,), -7.0))
    with pytest.raises(ValueError, match="log_weights"):
        iwae_bound(log_w[0])


class Pixels(ImageDensity):
    """Independent Bernoulli pixels: log p(x) in closed form."""

    def __init__(self) -> None:
        super().__init__()
        self.image_shape, self.levels = (1, 2, 2), 2
        self.logits = nn.Parameter(torch.tensor([[[0.5, -1.0], [2.0, 0.0]]]))

    def log_prob(self, x: Tensor) -> Tensor:
        return discrete_log_prob(self.logits.expand_as(x), x, 2)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.bernoulli(torch.sigmoid(self.logits).expand(n, *self.image_shape), generator=generator)


class OneLatent(LatentDensity):
    """z ~ N(0, 1), pixel logits w z + b, and a poor, x-independent q(z | x) = N(m, s^2): log p(x) by quadrature."""

    def __init__(self) -> None:
        super().__init__()
        self.image_shape, self.levels = (1, 2, 2), 2
        self.w = torch.tensor([2.0, -1.5, 1.0, 3.0]).view(1, 2, 2)
        self.b = torch.tensor([0.0, 0.5, -1.0, 0.2]).view(1, 2, 2)
        self.m, self.s = 0.2, 1.3  # wider than the prior: bounded weights, so the IWAE converges
        self.layer = nn.Dropout(0.5)  # evaluate_density must switch it off

    def log_joint_minus_q(self, x: Tensor, z: Tensor) -> Tensor:  # z: [B, k] -> log w [B, k]
        logits = self.layer(self.w * z[..., None, None, None] + self.b)  # [B, k, 1, 2, 2]
        log_px = discrete_log_prob(logits.flatten(0, 1), x[:, None].expand_as(logits).flatten(0, 1), 2)
        log_pz = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
        log_q = -0.5 * ((z - self.m) / self.s) ** 2 - math.log(self.s) - 0.5 * math.log(2 * math.pi)
        return log_px.view_as(z) + log_pz - log_q

    def elbo(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.log_joint_minus_q(x, self.m + self.s * torch.randn(len(x), 1, generator=generator))[:, 0]

    def iwae(self, x: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        return iwae_bound(self.log_joint_minus_q(x, self.m + self.s * torch.randn(len(x), k, generator=generator)))

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return -self.elbo(x, generator)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        z = torch.randn(n, generator=generator)[:, None, None, None]
        return torch.bernoulli(torch.sigmoid(self.w * z + self.b), generator=generator)

    def log_marginal(self, x: Tensor) -> Tensor:  # [B] log p(x) = log int p(x|z) N(z) dz on a fine grid
        z = torch.linspace(-12, 12, 24001, dtype=torch.float64)
        logits = (self.w.double() * z[:, None, None, None] + self.b.double())  # [Z, 1, 2, 2]
        log_px = torch.stack([discrete_log_prob(logits, xi.double().expand_as(logits), 2) for xi in x])  # [B, Z]
        log_pz = -0.5 * z**2 - 0.5 * math.log(2 * math.pi)
        return torch.logsumexp(log_px + log_pz, dim=1) + math.log(float(z[1] - z[0]))



def test_evaluate_density_exact_model() -> None:
    model, x = Pixels(), all_images((1, 2, 2), 2)
    nll = evaluate_density(model, x, batch_size=5)
    p = torch.sigmoid(model.logits.detach()).flatten()
    expected = -torch.stack([(xi.flatten() * p.log() + (1 - xi.flatten()) * (1 - p).log()).sum() for xi in x])
    torch.testing.assert_close(nll, expected)
    assert torch.logsumexp(-nll, 0).abs() < 1e-5  # a normalised distribution over the 16 images
    assert not nll.requires_grad
    with pytest.raises(ValueError, match="x"):
        evaluate_density(model, x.long(), batch_size=5)


def test_evaluate_density_latent_bounds_approach_log_p() -> None:
    model, x = OneLatent(), all_images((1, 2, 2), 2)
    model.train()
    bounds = evaluate_density(model, x, batch_size=6, k=20000, generator=torch.Generator().manual_seed(0))
    assert isinstance(bounds, LatentBounds) and bounds.elbo.shape == bounds.iwae.shape == (16,)
    assert model.training  # mode restored
    log_p = model.log_marginal(x).float()
    assert torch.logsumexp(log_p, 0).abs() < 1e-4
    torch.testing.assert_close(bounds.iwae, log_p, atol=0.025, rtol=0)  # k large: the bound meets log p(x)
    again = evaluate_density(model, x, batch_size=6, k=20000, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(again.iwae, bounds.iwae, rtol=0, atol=0)  # same generator, same numbers
    # E_q[ELBO] = log p(x) - KL(q || posterior): the poor q leaves a gap of about 2 nats (stderr 0.1 here).
    many = evaluate_density(model, x.repeat(100, 1, 1, 1), batch_size=512, generator=torch.Generator().manual_seed(1))
    assert many.iwae is None
    assert float((many.elbo.view(100, 16) - log_p).mean()) < -1.0
