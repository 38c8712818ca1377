import math

import numpy as np
import pytest
import scipy.special
import torch

from vision3d.camera import Intrinsics, look_at, project, unproject
from vision3d.gaussians import (
    ALPHA_MIN,
    SH_C0,
    Gaussians,
    Projection,
    conics,
    covariance_3d,
    eval_sh,
    opacity_at,
    perspective_jacobian,
    project_gaussians,
    quaternion_to_rotation,
    rasterize_reference,
    render_reference,
    rgb_to_sh0,
    sh0_to_rgb,
    sh_basis,
    support_radius,
)

D = torch.float64


def _camera():
    # Off-centre principal point and unequal focal lengths, so no symmetry hides a convention error.
    return Intrinsics(width=40, height=30, fx=50.0, fy=45.0, cx=21.3, cy=14.2), look_at(np.array([1.5, -2.0, 1.0]))


def _random_gaussians(n: int, generator: torch.Generator, spread: float = 0.3, degree: int = 1) -> Gaussians:
    return Gaussians(
        means=spread * (2 * torch.rand(n, 3, generator=generator, dtype=D) - 1),
        log_scales=math.log(0.08) + 0.3 * torch.randn(n, 3, generator=generator, dtype=D),
        quaternions=torch.randn(n, 4, generator=generator, dtype=D),
        opacity_logits=torch.randn(n, generator=generator, dtype=D),
        sh=0.3 * torch.randn(n, (degree + 1) ** 2, 3, generator=generator, dtype=D),
    )


# --- rotations and covariances -----------------------------------------------------------------------


def test_rotations_are_proper_orthonormal_and_sign_invariant():
    q = torch.randn(100, 4, generator=torch.Generator().manual_seed(0), dtype=D)
    R = quaternion_to_rotation(q)
    torch.testing.assert_close(R @ R.transpose(-1, -2), torch.eye(3, dtype=D).expand(100, 3, 3))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(100, dtype=D))
    torch.testing.assert_close(quaternion_to_rotation(-3.0 * q), R)
    # (w, x, y, z) order: a quarter turn about +z maps x to y
    quarter = torch.tensor([[math.cos(math.pi / 4), 0.0, 0.0, math.sin(math.pi / 4)]], dtype=D)
    torch.testing.assert_close(quaternion_to_rotation(quarter)[0] @ torch.tensor([1.0, 0, 0], dtype=D),
                               torch.tensor([0.0, 1.0, 0.0], dtype=D))


def test_covariance_is_R_S_S_R_and_positive_definite():
    g = torch.Generator().manual_seed(1)
    log_scales, q = torch.randn(50, 3, generator=g, dtype=D), torch.randn(50, 4, generator=g, dtype=D)
    sigma = covariance_3d(log_scales, q)
    R, S = quaternion_to_rotation(q), torch.diag_embed(log_scales.exp())
    torch.testing.assert_close(sigma, R @ S @ S.transpose(-1, -2) @ R.transpose(-1, -2))
    torch.testing.assert_close(sigma, sigma.transpose(-1, -2))
    eigenvalues = torch.linalg.eigvalsh(sigma)
    assert (eigenvalues > 0).all()
    torch.testing.assert_close(eigenvalues.sort(-1).values, (2 * log_scales).exp().sort(-1).values)
    identity = torch.tensor([[1.0, 0, 0, 0]], dtype=D)
    scales = torch.tensor([[0.1, 0.2, 0.3]], dtype=D)
    torch.testing.assert_close(covariance_3d(scales.log(), identity)[0], torch.diag(scales[0] ** 2))


# --- spherical harmonics -----------------------------------------------------------------------------


def test_degree_zero_colour_is_half_plus_C0_f_dc():
    f_dc = torch.randn(10, 1, 3, generator=torch.Generator().manual_seed(2), dtype=D)
    dirs = torch.randn(10, 3, generator=torch.Generator().manual_seed(3), dtype=D)
    torch.testing.assert_close(eval_sh(0, f_dc, dirs), (SH_C0 * f_dc[:, 0] + 0.5).clamp_min(0))
    rgb = torch.rand(10, 3, dtype=D)
    torch.testing.assert_close(eval_sh(0, rgb_to_sh0(rgb)[:, None], dirs), rgb)
    torch.testing.assert_close(sh0_to_rgb(rgb_to_sh0(rgb)), rgb)


def test_sh_basis_is_orthonormal_on_the_sphere():
    # Gauss-Legendre in cos(theta) x uniform azimuth integrates products of bands <= 3 exactly.
    nodes, weights = np.polynomial.legendre.leggauss(8)
    phi = 2 * np.pi * np.arange(16) / 16
    z, p = np.meshgrid(nodes, phi, indexing="ij")
    w = np.repeat(weights, 16) * (2 * np.pi / 16)
    r = np.sqrt(1 - z**2)
    dirs = torch.tensor(np.stack([r * np.cos(p), r * np.sin(p), z], -1).reshape(-1, 3))
    Y = sh_basis(3, dirs)  # [M, 16]
    gram = Y.T @ (torch.tensor(w)[:, None] * Y)
    torch.testing.assert_close(gram, torch.eye(16, dtype=D), atol=1e-12, rtol=0)


def test_sh_basis_matches_complex_harmonics_with_condon_shortley_phase():
    """Y_{l,m} = sqrt2 Re Y_l^m (m > 0), Y_l^0, sqrt2 Im Y_l^|m| (m < 0), with scipy's Y_l^m (which has (-1)^m)."""
    rng = np.random.default_rng(4)
    theta, phi = rng.uniform(0, np.pi, 20), rng.uniform(0, 2 * np.pi, 20)
    dirs = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)
    expected = []
    for l in range(4):
        for m in range(-l, l + 1):
            y = scipy.special.sph_harm_y(l, abs(m), theta, phi)
            expected.append(y.real if m == 0 else math.sqrt(2) * (y.real if m > 0 else y.imag))
    np.testing.assert_allclose(sh_basis(3, torch.tensor(dirs)).numpy(), np.stack(expected, -1), atol=1e-12)


def test_sh_known_values_one_per_band():
    """Textbook formulas at d = (2, 3, 6) / 7, one function per band (odd m with the minus sign of 3DGS)."""
    x, y, z = 2 / 7, 3 / 7, 6 / 7
    pi = math.pi
    Y = sh_basis(3, torch.tensor([[2.0, 3.0, 6.0]], dtype=D))[0]  # also checks that dirs are normalised
    assert Y[0].item() == pytest.approx(0.5 / math.sqrt(pi), abs=1e-14)  # Y_00
    assert Y[1].item() == pytest.approx(-math.sqrt(3 / (4 * pi)) * y, abs=1e-14)  # Y_1,-1
    assert Y[6].item() == pytest.approx(0.25 * math.sqrt(5 / pi) * (3 * z * z - 1), abs=1e-14)  # Y_2,0
    assert Y[4].item() == pytest.approx(0.5 * math.sqrt(15 / pi) * x * y, abs=1e-14)  # Y_2,-2
    assert Y[12].item() == pytest.approx(0.25 * math.sqrt(7 / pi) * (5 * z**3 - 3 * z), abs=1e-14)  # Y_3,0
    assert Y[15].item() == pytest.approx(-0.25 * math.sqrt(35 / (2 * pi)) * x * (x * x - 3 * y * y), abs=1e-14)


def test_eval_sh_uses_the_first_coefficients_and_clamps_at_zero():
    g = torch.Generator().manual_seed(5)
    sh, dirs = torch.randn(6, 16, 3, generator=g, dtype=D), torch.randn(6, 3, generator=g, dtype=D)
    torch.testing.assert_close(eval_sh(1, sh, dirs), eval_sh(1, sh[:, :4], dirs))
    raw = torch.einsum("nk,nkc->nc", sh_basis(2, dirs), sh[:, :9]) + 0.5
    assert (raw < 0).any()
    torch.testing.assert_close(eval_sh(2, sh, dirs), raw.clamp_min(0))
    with pytest.raises(ValueError, match=r"sh must have shape \[N, K >= 16, 3\].*\[6, 9, 3\]"):
        eval_sh(3, sh[:, :9], dirs)


# --- projection --------------------------------------------------------------------------------------


def test_projected_means_and_depths_match_camera_project():
    intr, c2w = _camera()
    means = torch.rand(200, 3, generator=torch.Generator().manual_seed(6), dtype=D) - 0.5
    cov = covariance_3d(torch.full((200, 3), -3.0, dtype=D), torch.tensor([[1.0, 0, 0, 0]], dtype=D).repeat(200, 1))
    proj = project_gaussians(means, cov, torch.tensor(c2w), intr)
    uv, depth = project(means.numpy(), intr, c2w)
    np.testing.assert_allclose(proj.means2d.numpy(), uv, atol=1e-10)
    np.testing.assert_allclose(proj.depths.numpy(), depth, atol=1e-12)
    assert proj.visible.all()


def test_cov2d_matches_monte_carlo_projection_of_samples():
    """Sample a small 3D Gaussian, elongated along the viewing axis near the image corner, and project every
    point exactly with camera.py: all three columns of J, with their signs, shape the pixel covariance."""
    intr, c2w = _camera()
    mean = unproject(np.array([[35.0, 5.0]]), np.array([3.0]), intr, c2w)[0]
    spin = quaternion_to_rotation(torch.tensor([[math.cos(0.3), 0.0, 0.0, math.sin(0.3)]], dtype=D))[0].numpy()
    rot = c2w[:3, :3] @ spin  # the long axis is the camera's z axis (not the ray), the others turned by 0.6 rad
    sigma = rot @ np.diag([0.01, 0.02, 0.1]) ** 2 @ rot.T
    samples = np.random.default_rng(7).multivariate_normal(mean, sigma, size=400_000)
    uv, _ = project(samples, intr, c2w)
    empirical = np.cov(uv.T)
    assert abs(empirical[0, 1]) > 0.3 * np.sqrt(empirical[0, 0] * empirical[1, 1])  # a strongly tilted footprint
    for dilation in (0.0, 0.3):
        proj = project_gaussians(torch.tensor(mean[None]), torch.tensor(sigma[None]), c2w, intr, dilation=dilation)
        predicted = proj.cov2d[0].numpy() - dilation * np.eye(2)
        assert np.linalg.norm(predicted - empirical) / np.linalg.norm(empirical) < 0.05


def test_dilation_adds_exactly_its_multiple_of_the_identity():
    intr, c2w = _camera()
    scene = _random_gaussians(20, torch.Generator().manual_seed(8))
    a = project_gaussians(scene.means, scene.covariances(), c2w, intr, dilation=0.0)
    b = project_gaussians(scene.means, scene.covariances(), c2w, intr)
    torch.testing.assert_close(b.cov2d - a.cov2d, 0.3 * torch.eye(2, dtype=D).expand(20, 2, 2), atol=1e-12, rtol=0)
    torch.testing.assert_close(b.radii, 3 * torch.linalg.eigvalsh(b.cov2d)[:, -1].sqrt())


def test_jacobian_is_exact_inside_and_clamped_at_1_3_times_the_field_of_view():
    intr = Intrinsics(40, 30, 50.0, 45.0, 21.3, 14.2)
    d = 2.0
    # u = 70 lies beyond the clamp (W + 0.15 W = 46), v = 10 inside; camera-space x / d = (70 - 21.3) / 50
    cam = torch.tensor([[(70 - 21.3) / 50 * d, -(10 - 14.2) / 45 * d, -d]], dtype=D)
    exact = torch.tensor([[[50 / d, 0, 50 * cam[0, 0] / d**2], [0, -45 / d, -45 * cam[0, 1] / d**2]]], dtype=D)
    torch.testing.assert_close(perspective_jacobian(cam, intr, fov_clamp=None), exact)
    clamped = exact.clone()
    clamped[0, 0, 2] = 50 * ((46 - 21.3) / 50) / d
    torch.testing.assert_close(perspective_jacobian(cam, intr), clamped)
    inside = torch.tensor([[0.1, 0.2, -d]], dtype=D)
    torch.testing.assert_close(perspective_jacobian(inside, intr), perspective_jacobian(inside, intr, None))


def test_gaussians_behind_the_camera_or_off_image_are_invisible():
    intr = Intrinsics(16, 16, 20.0, 20.0, 8.0, 8.0)
    c2w = look_at(np.array([0.0, -3.0, 0.0]))  # looks along +y, world z up
    means = torch.tensor([[0.0, 0.0, 0.0], [0.0, -4.0, 0.0], [0.0, -3.0, 0.0], [5.0, 0.0, 0.0], [0.0, -2.995, 0.0]],
                         dtype=D)
    cov = covariance_3d(torch.full((5, 3), math.log(0.3), dtype=D), torch.tensor([[1.0, 0, 0, 0]], dtype=D).repeat(5, 1))
    proj = project_gaussians(means, cov, c2w, intr)
    assert proj.visible.tolist() == [True, False, False, False, False]  # front; behind; at; off-image; before near
    assert torch.isfinite(proj.cov2d).all() and torch.isfinite(proj.means2d).all()
    # a big, opaque Gaussian right behind the camera leaves the image blank
    behind = Gaussians(means[1:2], torch.zeros(1, 3, dtype=D), torch.tensor([[1.0, 0, 0, 0]], dtype=D),
                       torch.tensor([5.0], dtype=D), torch.ones(1, 1, 3, dtype=D))
    out = render_reference(behind, c2w, intr, torch.tensor([0.1, 0.2, 0.3], dtype=D))
    torch.testing.assert_close(out.image, torch.tensor([0.1, 0.2, 0.3], dtype=D).expand(16, 16, 3))
    assert (out.alpha == 0).all()


def test_shape_errors_name_the_argument_and_both_shapes():
    with pytest.raises(ValueError, match=r"covariances must have shape \[4, 3, 3\].*got \[4, 3\]"):
        project_gaussians(torch.zeros(4, 3), torch.zeros(4, 3), np.eye(4), Intrinsics(4, 4, 1.0, 1.0, 2.0, 2.0))
    with pytest.raises(ValueError, match=r"quaternions must have shape \[2, 4\].*got \[2, 3\]"):
        covariance_3d(torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"c2w must have shape \[4, 4\].*got \[3, 3\]"):
        project_gaussians(torch.zeros(4, 3), torch.zeros(4, 3, 3), np.eye(3), Intrinsics(4, 4, 1.0, 1.0, 2.0, 2.0))


# --- rasteriser --------------------------------------------------------------------------------------


def _single(mean, scale, opacity, color, dtype=D):
    return Gaussians(
        means=torch.tensor([mean], dtype=dtype),
        log_scales=torch.full((1, 3), math.log(scale), dtype=dtype),
        quaternions=torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=dtype),
        opacity_logits=torch.tensor([math.log(opacity / (1 - opacity))], dtype=dtype),
        sh=rgb_to_sh0(torch.tensor([[color]], dtype=dtype)),
    )


def test_single_isotropic_gaussian_has_the_analytic_alpha_profile():
    """At the image centre J = diag(f/d, -f/d), so Sigma' = ((f s / d)^2 + 0.3) I."""
    f, d, s, o = 20.0, 3.0, 0.6, 0.8
    intr = Intrinsics(16, 16, f, f, 8.0, 8.0)
    c2w = look_at(np.array([0.0, -d, 0.0]))
    background = torch.tensor([0.0, 0.0, 1.0], dtype=D)
    out = render_reference(_single([0.0, 0.0, 0.0], s, o, [1.0, 0.5, 0.0]), c2w, intr, background)
    var = (f * s / d) ** 2 + 0.3
    for i, j in [(8, 8), (7, 8), (10, 5), (13, 8), (2, 2), (15, 0)]:
        r2 = (i + 0.5 - 8) ** 2 + (j + 0.5 - 8) ** 2
        alpha = o * math.exp(-r2 / (2 * var))
        assert alpha > ALPHA_MIN
        assert out.alpha[j, i].item() == pytest.approx(alpha, rel=1e-10)
        assert out.depth[j, i].item() == pytest.approx(d * alpha, rel=1e-10)
        expected = alpha * torch.tensor([1.0, 0.5, 0.0], dtype=D) + (1 - alpha) * background
        torch.testing.assert_close(out.image[j, i], expected)
    # the same Gaussian far off to the side: those pixels see exactly the background
    off = render_reference(_single([0.5, 0.0, 0.0], 0.03, o, [1.0, 0.5, 0.0]), c2w, intr, background)
    assert off.alpha[8, 0].item() == 0.0 and off.depth[8, 0].item() == 0.0
    torch.testing.assert_close(off.image[8, 0], background, atol=0, rtol=0)
    assert off.alpha[8, 11].item() > 0.5  # 0.5 * 20 / 3 = 3.33 px right of the centre
    assert (off.alpha == 0).float().mean() > 0.9


def test_two_gaussians_composite_front_to_back_whatever_their_list_order():
    intr = Intrinsics(16, 16, 20.0, 20.0, 8.0, 8.0)
    c2w = look_at(np.array([0.0, -3.0, 0.0]))
    red, green = _single([0.0, 0.0, 0.0], 0.3, 0.9, [1.0, 0.0, 0.0]), _single([0.0, 1.0, 0.0], 0.4, 0.9, [0.0, 1.0, 0.0])
    both = [Gaussians(*(torch.cat([getattr(a, k), getattr(b, k)]) for k in
                        ("means", "log_scales", "quaternions", "opacity_logits", "sh"))) for a, b in
            [(red, green), (green, red)]]
    background = torch.tensor([0.0, 0.0, 1.0], dtype=D)
    one, two = (render_reference(g, c2w, intr, background) for g in both)
    torch.testing.assert_close(one, two, atol=0, rtol=0)
    # centre pixel by hand: red (depth 3) over green (depth 4) over the background
    def alpha_at_centre(s, d):
        var = (20.0 * s / d) ** 2 + 0.3
        return 0.9 * math.exp(-0.5 / (2 * var))
    a1, a2 = alpha_at_centre(0.3, 3.0), alpha_at_centre(0.4, 4.0)
    expected = [a1, a2 * (1 - a1), (1 - a1) * (1 - a2)]
    torch.testing.assert_close(one.image[8, 8], torch.tensor(expected, dtype=D))
    assert one.image[8, 8, 0] > 5 * one.image[8, 8, 1]
    torch.testing.assert_close(one.depth[8, 8], torch.tensor(3 * a1 + 4 * a2 * (1 - a1), dtype=D))


def test_compositing_stops_before_transmittance_falls_below_1e_4():
    """Three near-opaque Gaussians (alpha 0.99 each): the third would take T to 1e-6, so it is not composited."""
    proj_means = torch.full((3, 2), 0.5, dtype=D)
    cov2d = torch.eye(2, dtype=D).expand(3, 2, 2) * 100.0
    projection = Projection(proj_means, cov2d, torch.tensor([1.0, 2.0, 3.0], dtype=D), torch.full((3,), 30.0, dtype=D),
                            torch.ones(3, dtype=torch.bool))
    colors = torch.eye(3, dtype=D)
    out = rasterize_reference(projection, colors, torch.ones(3, dtype=D), 1, 1, torch.zeros(3, dtype=D))
    a = 0.99 * math.exp(-0.0)
    torch.testing.assert_close(out.image[0, 0], torch.tensor([a, a * (1 - a), 0.0], dtype=D))
    assert out.alpha[0, 0].item() == pytest.approx(1 - (1 - a) ** 2)


def test_reference_is_differentiable_and_matches_finite_differences():
    """float64 gradcheck of the whole pipeline: means, log-scales, quaternions, SH colours, opacity logits."""
    intr = Intrinsics(8, 8, 10.0, 10.0, 4.0, 4.0)
    c2w = torch.tensor(look_at(np.array([0.0, -3.0, 0.5])))
    scene = _random_gaussians(3, torch.Generator().manual_seed(9), spread=0.2)
    scene.log_scales = torch.full((3, 3), math.log(1.2), dtype=D) + 0.2 * scene.log_scales.sin()
    scene.opacity_logits = scene.opacity_logits.clamp(-1.0, 1.0)
    background = torch.tensor([0.2, 0.3, 0.4], dtype=D)
    fields = ("means", "log_scales", "quaternions", "opacity_logits", "sh")

    def render(*params):
        return tuple(render_reference(Gaussians(*params), c2w, intr, background))

    # The function is smooth here: every alpha is well inside (1/255, 0.99), and T stays far above 1e-4.
    proj = project_gaussians(scene.means, scene.covariances(), c2w, intr)
    assert proj.visible.all()
    pixels = torch.stack(torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="xy"), -1).reshape(-1, 2) + 0.5
    alpha = opacity_at(pixels.to(D), proj.means2d, conics(proj.cov2d), scene.opacities())
    assert alpha.min() > 3 * ALPHA_MIN and alpha.max() < 0.9
    inputs = tuple(getattr(scene, k).clone().requires_grad_(True) for k in fields)
    assert torch.autograd.gradcheck(render, inputs, eps=1e-6, atol=1e-7, rtol=1e-5)


def test_support_radius_is_where_alpha_reaches_the_cut_off():
    cov2d = torch.tensor([[[9.0, 2.0], [2.0, 4.0]]], dtype=D)
    opacity = torch.tensor([0.7], dtype=D)
    r = support_radius(cov2d, opacity)
    _, eigenvectors = torch.linalg.eigh(cov2d[0])
    edge = r * eigenvectors[:, -1]  # along the major axis
    alpha = opacity_at(edge[None] * (1 - 1e-9), torch.zeros(1, 2, dtype=D), conics(cov2d), opacity)
    assert alpha.item() == pytest.approx(ALPHA_MIN, rel=1e-6)
    assert opacity_at(edge[None] * 1.001, torch.zeros(1, 2, dtype=D), conics(cov2d), opacity).item() == 0.0
    assert support_radius(cov2d, torch.tensor([0.5 * ALPHA_MIN], dtype=D)).item() == 0.0
